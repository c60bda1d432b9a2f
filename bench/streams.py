"""Live output: many chat jobs streaming at once through the io worker, the relay and Socket.IO.

The fake OpenAI-compatible server (`tests/support/fake_llm.py`, its own process) holds every
stream until all `n` jobs run (`hold`), then sends `tokens` tokens at `rate` a second on
each, recording when it sent every one. A swarm process has subscribed a Socket.IO client to
each job's room before the streams start. The stack: one relay, one io worker (a gevent pool
of `n` and some), the system worker and beat; the jobs are submitted in this process.

Figures:
- token delivery latency: arrival at the client of the chunk that carries a token, minus
  the time the fake server sent it (one clock: this machine's), over every token;
- beside it the floor: the same server's tokens read by direct SSE clients (aiohttp, no
  Orchestra), the same number at once;
- Postgres writes per job per second of streaming, over the streaming window: the
  `job.output.appended` rows (one per flush of a job), every row written (pg_stat_database)
  and the transactions committed;
- whether each client saw every token once, in order.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import re
import time
import uuid
from datetime import datetime

from sqlalchemy import func, select, text

from app import db, jobs
from app.config import Settings
from app.events import JOB_OUTPUT_APPENDED
from app.models import Event, Job
from bench import orchestra, procs, relay_load, swarm
from bench.measure import latency_stats, wait_until
from bench.sandbox import log
from tests.support.fake_llm import FakeLLM

SPAWN = mp.get_context("spawn")
RATE = 50.0
TOKEN = re.compile(r"tok(\d+) ")
# Backends report their statistics at most every second, and an idle one within 10 s.
STATS_SETTLE_S = 11
_WRITES = text("SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS tuples "
               "FROM pg_stat_database WHERE datname = current_database()")


def _chat(fake: FakeLLM, tokens: int) -> dict:
    return {"kind": "chat", "params": {
        "base_url": fake.base_url, "model": "fake-1", "max_tokens": tokens,
        "messages": [{"role": "user", "content": "Count."}]}}


def _count(*where) -> int:
    with db.transaction() as conn:
        return conn.execute(select(func.count()).select_from(Job).where(*where)).scalar_one()


def _writes() -> dict:
    with db.transaction() as conn:
        return dict(conn.execute(_WRITES).one()._mapping)


def _output_rows(job_ids: list[str]) -> int:
    with db.transaction() as conn:
        return conn.execute(select(func.count()).select_from(Event).where(
            Event.event_type == JOB_OUTPUT_APPENDED,
            Event.subject_id.in_([uuid.UUID(i) for i in job_ids]))).scalar_one()


def _token_latencies(chunks: list, sent: dict) -> list[float]:
    """Per token: its chunk's arrival minus when the server sent it."""
    out = []
    for job_id, _attempt, _offset, chunk_text, _seq, arrived, *_ in chunks:
        for i in TOKEN.findall(chunk_text):
            at = sent.get(f"{job_id}:{i}")
            if at is not None:
                out.append(arrived - at)
    return out


def _stored_latencies(chunks: list, sent: dict) -> tuple[list[float], list[float]]:
    """Per token, the two legs: sent -> its event stored (the worker's clock, the envelope's
    timestamp, taken before the round's commit), and stored -> arrival at the client."""
    to_store, to_client = [], []
    for job_id, _attempt, _offset, chunk_text, _seq, arrived, stored in chunks:
        at_store = datetime.fromisoformat(stored).timestamp()
        for i in TOKEN.findall(chunk_text):
            if (at := sent.get(f"{job_id}:{i}")) is not None:
                to_store.append(at_store - at)
                to_client.append(arrived - at_store)
    return to_store, to_client


def _whole(chunks: list, job_ids: list[str], tokens: int) -> int:
    """How many clients saw their job's text exactly once, in order (offsets without a gap
    or an overlap, seqs rising)."""
    want = "".join(f"tok{i} " for i in range(tokens))
    by_job: dict[str, list] = {}
    for c in chunks:
        by_job.setdefault(c[0], []).append(c)
    whole = 0
    for job_id in job_ids:
        seen, offset, ok = [], 0, True
        for _, _attempt, chunk_offset, chunk_text, *_ in sorted(by_job.get(job_id, []),
                                                                key=lambda c: c[4]):
            ok = ok and chunk_offset == offset
            seen.append(chunk_text)
            offset += len(chunk_text)
        whole += ok and "".join(seen) == want
    return whole


async def _direct_one(session, url: str, key: str, tokens: int, seen: list) -> None:
    body = {"model": "fake-1", "stream": True, "max_tokens": tokens,
            "messages": [{"role": "user", "content": "Count."}]}
    async with session.post(f"{url}/chat/completions", json=body,
                            headers={"Idempotency-Key": key}) as resp:
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            for choice in json.loads(line[6:]).get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    seen.append((key, 1, 0, content, 0, time.time(), None))


async def _direct_all(url: str, n: int, tokens: int) -> list:
    import aiohttp

    seen: list = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(_direct_one(session, url, f"direct-{k}", tokens, seen)
                               for k in range(n)))
    return seen


def _direct(url: str, n: int, tokens: int, out) -> None:
    """The floor's process: `n` direct SSE clients at once; their chunks with arrival times."""
    out.put(asyncio.run(_direct_all(url, n, tokens)))


def run_direct(fake: FakeLLM, n: int, tokens: int) -> dict:
    """The floor: the fake server's tokens read straight off its streams."""
    fake.control(reset=True, rate=RATE, record_sent=True, hold=True)
    out = SPAWN.Queue()
    p = SPAWN.Process(target=_direct, args=(fake.base_url, n, tokens, out))
    p.start()
    try:
        wait_until(lambda: len(fake.stats()["calls"]) >= n, 60, f"{n} direct streams")
        fake.control(hold=False)
        chunks = out.get(timeout=120 + tokens / RATE)
    finally:
        p.join(30)
        if p.is_alive():
            p.terminate()
    sent = fake.stats()["sent"]
    return {"latency": latency_stats(_token_latencies(chunks, sent)), "tokens": len(chunks)}


IO_WORKERS = 2  # a gevent process runs on one core: one per core of this machine


def _stack(settings: Settings, n: int) -> list[procs.Proc]:
    commands, env = procs.read_procfile(), procs.child_env(settings)
    each = {**env, "IO_CONCURRENCY": str(n // IO_WORKERS + 20)}
    started = [procs.start("relay", commands["relay"], env)]
    started += [procs.start(f"io-{k}", commands["io"], each) for k in range(IO_WORKERS)]
    started += [procs.start(name, commands[name], env) for name in ("system", "beat")]
    return started


def run_orchestra(settings: Settings, fake: FakeLLM, n: int, tokens: int) -> dict:
    """`n` chat jobs at once, each watched by a Socket.IO client."""
    o = orchestra.connect(settings)
    running = _stack(settings, n)
    clients, stop, out, ready = [], SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
    try:
        fake.control(reset=True, rate=RATE, record_sent=True, hold=True)
        ids = [str(jobs.submit(o.tenant, _chat(fake, tokens))[0].id) for _ in range(n)]
        mine = Job.id.in_([uuid.UUID(i) for i in ids])
        wait_until(lambda: _count(mine, Job.status == "processing") >= n, 180,
                   f"{n} chat jobs running at once", running[1].check)
        url = f"http://127.0.0.1:{settings.relay_port}"
        w = SPAWN.Process(target=swarm.run,
                          args=(url, o.secret, ids, ready, stop, out, "output"))
        w.start()
        clients.append(w)
        connected, errors = relay_load.next_report(ready, clients, running[0])
        log(f"streams: {connected}/{n} clients subscribed {errors}")
        time.sleep(STATS_SETTLE_S)
        before, started = _writes(), time.time()
        fake.control(hold=False)
        wait_until(lambda: _count(mine, Job.status == "completed") >= n, 120 + 3 * tokens / RATE,
                   f"{n} streams to complete", running[1].check)
        streamed_s = time.time() - started
        time.sleep(STATS_SETTLE_S)
        after = _writes()
        stop.set()
        chunks = relay_load.next_report(out, clients, running[0], 120)
        failed = _count(mine, Job.status.in_(("failed", "cancelled")))
        rows = _output_rows(ids)
    finally:
        relay_load.stop_swarm(stop, clients)
        for p in reversed(running):
            procs.stop(p)
        orchestra.close(o)
    job_s = n * tokens / RATE  # seconds of streaming, summed over the jobs
    sent = fake.stats()["sent"]
    to_store, to_client = _stored_latencies(chunks, sent)
    return {
        "latency": latency_stats(_token_latencies(chunks, sent)),
        "to_stored": latency_stats(to_store),
        "stored_to_client": latency_stats(to_client),
        "whole": _whole(chunks, ids, tokens),
        "failed": failed,
        "streamed_s": streamed_s,
        "output_rows_per_job_s": rows / job_s,
        "rows_per_job_s": (after["tuples"] - before["tuples"]) / job_s,
        "commits_per_job_s": (after["xact_commit"] - before["xact_commit"]) / job_s,
    }


def run(settings: Settings, n: int, tokens: int) -> dict:
    """The streams section: the floor, then Orchestra at a quarter, half and all of `n`
    streams (where the machine's two cores run out), on one fake server."""
    fake = FakeLLM().start()
    try:
        settings = settings.with_(http_private_hosts=f"127.0.0.1:{fake.port}",
                                  tenant_max_running=max(n, 1000))
        log(f"streams: {n} direct SSE clients, {tokens} tokens at {RATE:.0f}/s")
        direct = run_direct(fake, n, tokens)
        scaling = []
        for size in sorted({max(1, n // 4), max(1, n // 2), n}):
            log(f"streams: {size} chat jobs through the io workers and the relay")
            scaling.append({"streams": size, **run_orchestra(settings, fake, size, tokens)})
    finally:
        fake.stop()
    return {"streams": n, "tokens": tokens, "rate": RATE, "direct": direct,
            "orchestra": scaling[-1], "scaling": scaling}
