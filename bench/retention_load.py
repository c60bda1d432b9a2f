"""Growth: with a short `RETENTION_S`, the beat's sweep deletes finished jobs as fast as they
finish, and the tables stop growing.

The Procfile's worker and beat run with `RETENTION_S` of a few seconds; echo jobs are
submitted at a steady rate; every second the bench counts the run's jobs and events still
in Postgres. Deleted/s is the drop of the running total (submitted minus present).
"""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack

from sqlalchemy import func, select

from app import db
from app.config import Settings
from app.models import Event, Job
from bench import orchestra, procs
from bench.sandbox import log

RETENTION_S = 3.0


def _count(batch: str) -> tuple[int, int, int]:
    """The batch's jobs present, of which finished, and their events present."""
    with db.transaction() as conn:
        present, finished = conn.execute(
            select(func.count(), func.count(Job.finished_at)).where(Job.card_id == batch)
        ).one()
        events = conn.execute(
            select(func.count()).where(Event.meta["card_id"].astext == batch)
        ).scalar_one()
    return present, finished, events


def run(settings: Settings, rate: float, seconds: float) -> dict:
    """Submit `rate` jobs/s for `seconds`; sample the tables each second; the figures."""
    settings = settings.with_(retention_s=RETENTION_S)
    env = procs.child_env(settings)
    commands = procs.read_procfile()
    o = orchestra.connect(settings)
    orchestra.remove_jobs(Job.finished_at.isnot(None))  # what earlier sections left finished
    batch = f"retention-{uuid.uuid4().hex[:8]}"
    samples = []
    try:
        with ExitStack() as stack:
            for name, command in (
                ("worker", f"{commands['worker']} -c 2"),
                ("system", commands["system"]),
                ("beat", commands["beat"]),
            ):
                proc = procs.start(f"retention-{name}", command, env)
                stack.callback(procs.stop, proc)
            orchestra.drain(o, 5, proc, 60, "retention-warm-up")
            log(f"retention: {rate:.0f} jobs/s for {seconds:.0f} s, RETENTION_S={RETENTION_S}")
            start, i, next_sample = time.time(), 0, time.time()
            while (now := time.time()) < start + seconds:
                if now >= next_sample:
                    samples.append((now - start, i, *_count(batch)))
                    next_sample += 1.0
                if now >= start + i / rate:
                    orchestra.submit_echo(o, batch, i)
                    i += 1
                else:
                    time.sleep(min(start + i / rate, next_sample) - now)
    finally:
        orchestra.close(o)
    return summarize(samples, RETENTION_S)


def summarize(samples: list[tuple], retention_s: float) -> dict:
    """Finished/s and deleted/s over the second half, and whether the tables levelled off."""
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    (t_a, sub_a, pres_a, fin_a, _), (t_b, sub_b, pres_b, fin_b, _) = half[0], half[-1]
    deleted_a, deleted_b = sub_a - pres_a, sub_b - pres_b
    # Finished = still present and finished, plus every deleted one (only finished are).
    finished_rate = ((fin_b + deleted_b) - (fin_a + deleted_a)) / (t_b - t_a)
    deleted_rate = (deleted_b - deleted_a) / (t_b - t_a)
    return {
        "retention_s": retention_s,
        "finished_per_s": finished_rate,
        "deleted_per_s": deleted_rate,
        "jobs_present_max": max(s[2] for s in samples),
        "jobs_present_end": samples[-1][2],
        "jobs_present_second_half": [s[2] for s in half],
        "events_present_max": max(s[4] for s in samples),
        "submitted": samples[-1][1],
        "samples": samples,
    }
