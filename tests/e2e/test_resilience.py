"""Losing parts: a killed worker, a Redis that restarts empty. No job is lost."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from scripts import sandbox
from scripts.sandbox import ROOT, free_port
from tests.e2e.conftest import Client, start_stack
from tests.support import private_pg
from tests.support.ci import require
from tests.support.sio import EventClient
from tests.support.stack import VENV_BIN, stack_env, wait_until

pytestmark = pytest.mark.e2e


def status_trail(client: Client, job_id: str) -> list[str]:
    items = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
    return [e["payload"]["status"] for e in items if e["event_type"] == "job.status.updated"]


def test_killed_worker_job_runs_again_on_the_other_worker(domain, tenant):
    """SIGKILL the worker running a job: it runs again elsewhere within the redelivery time."""
    stack = start_stack(domain, workers=2, relays=1)
    try:
        client = Client(stack.url(stack.procs_named("api")[0]), tenant[0])
        job = client.submit("sleep", {"seconds": 4, "steps": 4})
        client.wait_status(job["id"], "processing", timeout=20)
        victim_pid = int(running_worker_pid(client, job["id"]))
        victim = next(p for p in stack.procs_named("worker") if p.popen.pid == victim_pid)
        stack.kill(victim)
        killed_at = time.monotonic()
        final = client.wait_status(job["id"], "completed", timeout=40)
        redelivery_s = domain.worker_lost_redelivery_s
        assert time.monotonic() - killed_at < redelivery_s + 4 + 10
        assert final["attempts"] == 2
        assert status_trail(client, job["id"]) == [
            "queued", "processing", "retrying", "processing", "completed",
        ]
        events = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
        retry_event = next(e for e in events if e["payload"].get("status") == "retrying")
        assert retry_event["payload"]["error"]["code"] == "WORKER_LOST"
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()


def running_worker_pid(client: Client, job_id: str) -> str:
    """The pid in the `worker-<pid>@host` name of the worker that runs the job."""
    from sqlalchemy import text

    from app import db

    def worker():
        with db.transaction() as conn:
            return conn.execute(
                text("SELECT worker FROM jobs WHERE id = :id"), {"id": job_id}
            ).scalar_one()

    name = wait_until(worker, 10, 0.1, "the job's worker name")
    return name.split("@")[0].rsplit("-", 1)[1]


class PrivateRedis:
    """A redis-server of this test's own, without persistence, that can be killed."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="orchestra-redis-")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        wait_until(lambda: redis.Redis(port=self.port).ping(), 10, 0.1, "private redis")

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_redis_restart_loses_no_job_and_no_event(domain, tenant):
    """Redis dies (losing queued messages) and comes back empty: every job still completes,
    and a subscriber still sees every event of a job submitted while Redis was down."""
    require(shutil.which("redis-server") is not None, "redis-server")
    redis_srv = PrivateRedis()
    redis_srv.start()
    settings = domain.with_(redis_url=redis_srv.url())
    stack = start_stack(settings, workers=0, relays=1)
    try:
        client = Client(stack.url(stack.procs_named("api")[0]), tenant[0])
        waiting = [client.submit("echo", {"i": i})["id"] for i in range(5)]  # no worker yet
        redis_srv.kill()
        during = client.submit("sleep", {"seconds": 0.5, "steps": 2})  # Redis is down
        assert during["status"] == "queued"
        redis_srv.start()  # empty: the 5 messages are gone
        stack.start("worker")
        watcher = EventClient(stack.url(stack.procs_named("relay")[0]), client.secret)
        try:
            assert watcher.subscribe(f"job:{during['id']}", since=0) == {"ok": True}
            for job_id in [*waiting, during["id"]]:
                client.wait_status(job_id, "completed", timeout=40)
            events = watcher.wait_for_status(during["id"], "completed", timeout=10)
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        finally:
            watcher.close()
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        redis_srv.cleanup()


class Submitter(threading.Thread):
    """Submits an echo job every `interval_s` until stopped, keeping every answer's status."""

    def __init__(self, client: Client, interval_s: float = 0.05):
        super().__init__(daemon=True)
        self.client, self.interval_s = client, interval_s
        self.halt = threading.Event()
        self.ids: list[str] = []
        self.statuses: list[int] = []

    def run(self) -> None:
        n = 0
        while not self.halt.wait(self.interval_s):
            resp = self.client.post("/api/v1/jobs", {"kind": "echo", "params": {"n": n}})
            self.statuses.append(resp.status_code)
            if resp.status_code == 202:
                self.ids.append(resp.json()["id"])
            n += 1


def test_redis_restart_under_load_loses_nothing_for_a_resuming_client(domain, tenant):
    """Jobs keep coming while Redis dies and returns empty: every submission is accepted,
    workers and relay reconnect by themselves, every job completes, and a client that resumes
    each job room from the last `seq` it saw ends with every event once."""
    require(shutil.which("redis-server") is not None, "redis-server")
    redis_srv = PrivateRedis()
    redis_srv.start()
    stack = start_stack(domain.with_(redis_url=redis_srv.url()), workers=2, relays=1)
    relay = stack.url(stack.procs_named("relay")[0])
    try:
        client = Client(stack.url(stack.procs_named("api")[0]), tenant[0])
        live = EventClient(relay, client.secret)
        assert live.subscribe("tenant") == {"ok": True}
        load = Submitter(client)
        load.start()
        time.sleep(2)
        redis_srv.kill()
        time.sleep(2)
        redis_srv.start()  # empty: queued messages, pub/sub subscriptions, all gone
        time.sleep(2)
        load.halt.set()
        load.join(timeout=30)
        assert set(load.statuses) == {202}, load.statuses
        assert len(load.ids) >= 40
        for job_id in load.ids:
            client.wait_status(job_id, "completed", timeout=60)
        seen = {j: [e["seq"] for e in live.of(j)] for j in load.ids}
        live.close()
        resumed = EventClient(relay, client.secret)
        try:
            for job_id in load.ids:
                since = max([0, *seen[job_id]])
                assert resumed.subscribe(f"job:{job_id}", since=since) == {"ok": True}
            wait_until(
                lambda: all(max([0, *seen[j]], *[e["seq"] for e in resumed.of(j)]) >= 3
                            for j in load.ids),
                30, 0.1, "the resumed rooms",
            )
            for job_id in load.ids:
                seqs = seen[job_id] + [e["seq"] for e in resumed.of(job_id)]
                assert seqs == [1, 2, 3], (job_id, seqs)
        finally:
            resumed.close()
        # The tenant room itself, live throughout, was made whole by the relay after its
        # Redis listener came back (it replays the room's events since the loss).
        assert [j for j in load.ids if seen[j] != [1, 2, 3]] == []
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        redis_srv.cleanup()


def test_postgres_crash_under_load_loses_no_job(domain):
    """Postgres dies while jobs run and wait and clients keep submitting: the API answers 503
    meanwhile and recovers by itself; every job completes, none stays `processing`, and every
    job's events run without a gap."""
    require(private_pg.available(), "initdb and pg_ctl, run as root")
    pg = private_pg.PrivatePostgres()
    pg.start()
    stack = None
    try:
        url = sandbox.create_database(pg.url(), "orchestra")
        sandbox.migrate(url)
        settings = domain.with_(database_url=url)
        secret = create_key_with_cli(settings, "pg-crash")
        stack = start_stack(settings, workers=1, relays=1)
        client = Client(stack.url(stack.procs_named("api")[0]), secret)
        jobs = [client.submit("sleep", {"seconds": 3, "steps": 6})["id"] for _ in range(5)]
        client.wait_status(jobs[0], "processing", timeout=20)
        load = Submitter(client, interval_s=0.2)
        load.start()
        time.sleep(0.5)
        pg.crash()
        time.sleep(2)
        ready = client.get("/health/readiness")
        assert ready.status_code == 503 and "database" in ready.json()["failed"]
        pg.start()
        wait_until(lambda: load.statuses[-3:] == [202] * 3, 60, 0.2, "submissions to recover")
        load.halt.set()
        load.join(timeout=30)
        refused = [s for s in load.statuses if s != 202]
        assert refused and set(refused) == {503}, load.statuses  # never a 500, never a hang
        for job_id in jobs + load.ids:
            client.wait_status(job_id, "completed", timeout=90)
        for job_id in jobs:
            items = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
            assert [e["seq"] for e in items] == list(range(1, len(items) + 1))
            assert items[-1]["payload"]["status"] == "completed"
        print("attempts:", [client.job(j)["attempts"] for j in jobs])
    except BaseException:
        if stack:
            print(stack.logs())
        raise
    finally:
        if stack:
            stack.stop()
        pg.destroy()


def create_key_with_cli(settings, tenant: str) -> str:
    """`flask --app api keys create`, as an operator would run it."""
    out = subprocess.run(
        [f"{VENV_BIN}/flask", "--app", "api", "keys", "create", "--tenant", tenant],
        cwd=ROOT, env=stack_env(settings), capture_output=True, text=True, timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]
