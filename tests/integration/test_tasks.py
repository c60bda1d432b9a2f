"""The Celery tasks in an embedded Celery worker (Celery's test harness), on the real Redis."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import text

from app import config, db, generators, jobs
from app.generators import Output
from app.generators import base as generator_base
from app.generators import http as http_gen
from app.outbox import names
from tests.support.stack import wait_until


@pytest.fixture
def celery_app_worker(domain):
    """Our Celery app with an embedded worker thread (Celery's own test harness).

    pytest-celery 1.x replaces Celery's `celery_worker` fixture with a Docker-based one,
    which cannot run here, so the harness under that fixture is used directly.
    """
    from workers import make_celery

    app = make_celery(domain)
    app.control.purge()  # nothing end-to-end tests left behind may run here
    queues = (names.JOBS_QUEUE, names.IO_QUEUE, names.SWEEPS_QUEUE)
    with start_worker(app, pool="solo", perform_ping_check=False, queues=queues,
                      shutdown_timeout=30):
        yield app


def test_run_job_task_runs_a_dispatched_job(celery_app_worker, tenant):
    job, _ = jobs.submit(tenant[1], {"kind": "sleep", "params": {"seconds": 0.2, "steps": 2}})
    done = wait_until(
        lambda: (j := jobs.get(tenant[1], job.id)).status == "completed" and j, 20, 0.05,
        "the job to complete",
    )
    assert done.result == {"slept": 0.2} and done.attempts == 1
    assert [e["seq"] for e in jobs.job_events(tenant[1], job.id)["items"]] == [1, 2, 3, 4, 5]


def test_sweep_task_dispatches_a_delayed_job(celery_app_worker, tenant):
    job, _ = jobs.submit(tenant[1], {"kind": "echo", "params": {"late": 1}, "countdown_s": 0.3})
    time.sleep(0.4)
    assert jobs.get(tenant[1], job.id).status == "queued"  # nobody sent it yet
    celery_app_worker.send_task(names.SWEEP, queue=names.SWEEPS_QUEUE)
    done = wait_until(
        lambda: (j := jobs.get(tenant[1], job.id)).status == "completed" and j, 20, 0.05,
        "the sweep to dispatch the job",
    )
    assert done.result == {"late": 1}


# --- Bad output fails cleanly (a run's output Postgres cannot store) --------------------

TERMINAL = ("completed", "failed", "cancelled")

# What a generator (or the service behind it) may hand back that Postgres cannot store.
# Built here, in the worker's process: a job's params cannot carry them (the API refuses).
HOSTILE = {
    "nul in a string": lambda: Output(result={"text": "a\x00b"}),
    "nul in a key": lambda: Output(result={"a\x00b": 1}),
    "lone surrogate": lambda: Output(result={"text": "\ud800"}),
    "not finite": lambda: Output(result={"x": float("nan")}),
    "not JSON": lambda: Output(result={"tags": {"a", "b"}}),
    "too deep": lambda: Output(result=_nested(200)),
    "too large": lambda: Output(result={"blob": "x" * (2 * 1024 * 1024)}),
    "nul in result_url": lambda: Output(result={}, result_url="https://cdn/a\x00.png"),
    "surrogate in the artifact's type": lambda: Output(result={}, artifact=("image/\udc80", b"x")),
    "not an Output": lambda: {"result": 1},
}
EXPECTED_CODE = {"too large": "RESULT_TOO_LARGE"}


def _nested(depth: int):
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


class Hostile:
    """A generator that answers what `HOSTILE[params.case]` builds, or reports a progress
    message Postgres cannot store (`params.progress`)."""

    name = "hostile"
    params_schema = {"type": "object"}

    def run(self, params: dict, ctx):
        if params.get("progress"):
            ctx.progress(0.5, "step \x00 one" if params["progress"] == "nul" else "\udfff")
        return HOSTILE[params["case"]]()


@pytest.fixture
def hostile():
    """The `hostile` kind, registered in this process (the embedded worker's) for one test."""
    generators.register(Hostile())
    yield
    generator_base._registry.pop("hostile", None)
    generator_base._validators.pop("hostile", None)


def wait_ended(tenant, job_id: str, timeout: float = 30) -> dict:
    """The job once it left `queued`/`processing` for good (terminal)."""
    return wait_until(
        lambda: (j := jobs.get(tenant[1], job_id)).status in TERMINAL and j,
        timeout, 0.05, f"job {job_id} to end (not stay processing)",
    )


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_output_postgres_cannot_store_fails_the_attempt_with_a_code(
    celery_app_worker, tenant, hostile, case
):
    job, _ = jobs.submit(tenant[1], {"kind": "hostile", "params": {"case": case},
                                     "max_retries": 3})
    done = wait_ended(tenant, job.id)
    assert done.status == "failed" and done.attempts == 1  # permanent: not retried
    assert done.error["code"] == EXPECTED_CODE.get(case, "OUTPUT_NOT_STORABLE"), done
    message = done.error["message"]
    assert "\x00" not in message and "a\x00b" not in message and "xxxx" not in message
    assert done.result is None and done.result_url is None
    statuses = [e["payload"].get("status") for e in jobs.job_events(tenant[1], job.id)["items"]]
    assert statuses == ["queued", "processing", "failed"]


@pytest.mark.parametrize("kind", ["nul", "surrogate"])
def test_a_progress_message_postgres_cannot_store_fails_the_attempt(
    celery_app_worker, tenant, hostile, kind
):
    params = {"case": "not JSON", "progress": kind}  # the progress call fails first
    job, _ = jobs.submit(tenant[1], {"kind": "hostile", "params": params})
    done = wait_ended(tenant, job.id)
    assert done.status == "failed" and done.error["code"] == "OUTPUT_NOT_STORABLE"
    message = done.error["message"]
    assert "progress message" in message and "\x00" not in message and "step" not in message
    kinds = [e["event_type"] for e in jobs.job_events(tenant[1], job.id)["items"]]
    assert "job.progress.updated" not in kinds


def test_an_echo_result_over_max_result_bytes_fails_too_large(celery_app_worker, domain, tenant):
    """A real `echo` job whose params (its result) are over MAX_RESULT_BYTES."""
    config.install(domain.with_(max_result_bytes=1000))
    try:
        job, _ = jobs.submit(tenant[1], {"kind": "echo", "params": {"text": "y" * 2000}})
        done = wait_ended(tenant, job.id)
    finally:
        config.install(domain)
    assert done.status == "failed" and done.error["code"] == "RESULT_TOO_LARGE"
    assert "MAX_RESULT_BYTES (1000)" in done.error["message"]
    assert "yyyy" not in done.error["message"]


@pytest.fixture
def refusing_database(domain):
    """Postgres itself refuses one outcome: a CHECK constraint of this test on `jobs`.

    For what the checks before the transaction cannot know (here: the database's own rule),
    the outcome's write is refused by Postgres for real."""
    with db.transaction() as conn:
        conn.execute(text("ALTER TABLE jobs ADD CONSTRAINT test_refuse_url "
                          "CHECK (result_url IS NULL OR result_url NOT LIKE '%refuse-me%')"))
    yield
    with db.transaction() as conn:
        conn.execute(text("ALTER TABLE jobs DROP CONSTRAINT test_refuse_url"))


class Refused:
    name = "refused"
    params_schema = {"type": "object"}

    def run(self, params: dict, ctx):
        return Output(result={"ok": True}, result_url="https://cdn/refuse-me.png",
                      artifact=("image/png", b"\x89PNG not really"))


@pytest.mark.parametrize("store", ["postgres", "filesystem"])
def test_a_database_refusal_of_the_outcome_fails_the_attempt_and_removes_its_file(
    celery_app_worker, domain, tenant, refusing_database, tmp_path, store
):
    generators.register(Refused())
    config.install(domain.with_(artifact_store=store, artifact_dir=str(tmp_path)))
    try:
        job, _ = jobs.submit(tenant[1], {"kind": "refused", "params": {}})
        done = wait_ended(tenant, job.id)
    finally:
        config.install(domain)
        generator_base._registry.pop("refused", None)
        generator_base._validators.pop("refused", None)
    assert done.status == "failed" and done.error["code"] == "OUTPUT_NOT_STORABLE"
    assert "SQLSTATE 23514" in done.error["message"]  # check_violation, named not copied
    assert "refuse-me" not in done.error["message"]
    with db.transaction() as conn:
        rows = conn.execute(text("SELECT count(*) FROM job_artifacts WHERE job_id = :id"),
                            {"id": job.id}).scalar_one()
    assert rows == 0
    assert list(tmp_path.iterdir()) == []  # rolled back for sure: the staged file went too


class RawService(BaseHTTPRequestHandler):
    """A generation service that answers the raw bytes it is given: `(status, body)` for the
    POST, then for every poll. Valid JSON may carry `\\u0000` or a lone surrogate escaped."""

    answers: dict = {}

    def _raw(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._raw(*self.answers["post"])

    def do_GET(self):  # noqa: N802 - the http.server API
        self._raw(*self.answers["poll"])

    def log_message(self, *args):
        pass


@contextmanager
def raw_service(port: int):
    """The service on the run's loopback port (the one HTTP_PRIVATE_HOSTS lists); its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", port), RawService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    http_gen.reset_breaker(host)
    try:
        yield f"http://{host}"
    finally:
        server.shutdown()
        server.server_close()
        http_gen.reset_breaker(host)


SERVICE_ANSWERS = {
    # A completed answer whose result holds `\u0000` (valid JSON, Python decodes it).
    "result": {"post": (200, rb'{"status": "completed", "result": {"t": "a\u0000b"}}'),
               "poll": (200, b"{}")},
    # A pending status with a lone surrogate: the job's progress message.
    "progress": {"post": (202, rb'{"id": "g1", "status": "working\ud800", "progress": 0.5}'),
                 "poll": (200, b'{"status": "completed"}')},
    # A result_url with `\u0000`.
    "result_url": {"post": (200, rb'{"status": "completed", "result_url": "https://x/\u0000"}'),
                   "poll": (200, b"{}")},
    # A refusal whose text (kept in the job's error message) holds a raw NUL byte.
    "refusal": {"post": (400, b"no \x00 thanks"), "poll": (200, b"{}")},
}


def test_a_services_answer_postgres_cannot_store_fails_the_job(
    celery_app_worker, tenant, gen_service_port
):
    """The `http` generator, through the worker, on a real local service whose answers hold
    what Postgres refuses: the job ends, `failed` with a code or with the text mended, never
    left `processing`."""
    ended = {}
    with raw_service(gen_service_port) as service:
        for name, answers in SERVICE_ANSWERS.items():
            RawService.answers = answers
            params = {"url": f"{service}/generate", "poll_url": f"{service}/status/{{id}}"}
            job, _ = jobs.submit(tenant[1], {"kind": "http", "params": params, "max_retries": 0})
            ended[name] = wait_ended(tenant, job.id)
    # A service's remote text reaches the job only as a printable excerpt (app/netguard), so a
    # hostile status or refusal is mended there; what the generator returns is checked whole.
    outcomes = {n: (j.status, (j.error or {}).get("code")) for n, j in ended.items()}
    assert outcomes == {
        "result": ("failed", "OUTPUT_NOT_STORABLE"),
        "progress": ("completed", None),
        "result_url": ("failed", "OUTPUT_NOT_STORABLE"),
        "refusal": ("failed", "GENERATOR_ERROR"),
    }
    assert ended["refusal"].error["message"].endswith("HTTP 400: no thanks")


# --- Progress is coalesced; cancellation stays timely -----------------------------------


def progress_events(tenant, job_id: str) -> list[dict]:
    return [e["payload"] for e in jobs.job_events(tenant[1], job_id)["items"]
            if e["event_type"] == "job.progress.updated"]


def test_a_hundred_progress_steps_in_a_second_write_a_few_events(celery_app_worker, domain, tenant):
    """`sleep` with 100 steps (its most) in a second reports progress 100 times; Postgres gets at
    most one event per PROGRESS_MIN_INTERVAL_S of the run, and the last step's."""
    job, _ = jobs.submit(tenant[1], {"kind": "sleep", "params": {"seconds": 1, "steps": 100}})
    done = wait_ended(tenant, job.id)
    assert done.status == "completed" and done.progress == 1.0
    ran_s = (done.finished_at - done.started_at).total_seconds()
    written = progress_events(tenant, job.id)
    print(f"{len(written)} progress events for 100 steps in {ran_s:.2f}s")
    # The bound follows the run's own measured length, so a slow machine cannot break it.
    assert 2 <= len(written) <= ran_s / domain.progress_min_interval_s + 2, (len(written), ran_s)
    assert written[-1] == {"job_id": str(job.id), "progress": 1.0, "message": "step 100/100"}
    values = [p["progress"] for p in written]
    assert values == sorted(values)


def test_cancel_is_seen_promptly_between_many_small_steps(celery_app_worker, tenant):
    """Cancel reads are coalesced too, yet a job cancelled mid-run stops at once."""
    job, _ = jobs.submit(tenant[1], {"kind": "sleep",
                                     "params": {"seconds": 60, "steps": 100}})
    wait_until(lambda: progress_events(tenant, job.id), 20, 0.05, "the first progress")
    asked = time.monotonic()
    jobs.cancel(tenant[1], job.id)
    done = wait_ended(tenant, job.id)
    took = time.monotonic() - asked
    print(f"cancelled {took:.2f}s after the request")
    assert done.status == "cancelled"
    # Checked every PROGRESS_MIN_INTERVAL_S (0.25 s); the bound is loose, for a loaded host:
    # what it rules out is a run that only stops at its end (a minute).
    assert took < 10, took
