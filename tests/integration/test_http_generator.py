"""The `http` generator against a real HTTP service on a local port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from app import db, jobs, runs
from app.generators import http as http_gen
from app.models import Job


class FakeService(BaseHTTPRequestHandler):
    """A generation service: `POST /generate` then `GET /status/<id>` until completed."""

    script: dict = {}
    calls: list = []

    def _answer(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        self.calls.append(("POST", self.path, payload))
        status, body = self.script["post"]
        self._answer(status, body)

    def do_GET(self):  # noqa: N802 - the http.server API
        self.calls.append(("GET", self.path, None))
        polls = self.script["polls"]
        status, body = polls.pop(0) if len(polls) > 1 else polls[0]
        self._answer(status, body)

    def log_message(self, *args):
        pass


@pytest.fixture
def service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeService)
    FakeService.calls = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host = f"127.0.0.1:{server.server_address[1]}"
    http_gen.reset_breaker(host)
    yield f"http://{host}"
    server.shutdown()
    http_gen.reset_breaker(host)


def run_job(tenant, params) -> dict:
    job, _ = jobs.submit(tenant[1], {"kind": "http", "params": params, "max_retries": 0})
    with db.transaction() as conn:
        token = conn.execute(select(Job.dispatch_token).where(Job.id == job["id"])).scalar_one()
    runs.execute(job["id"], str(token), "test-worker")
    return jobs.get(tenant[1], job["id"])


def test_submits_polls_and_keeps_the_result_url(service, tenant):
    FakeService.script = {
        "post": (202, {"id": "g1", "status": "queued"}),
        "polls": [(200, {"status": "processing", "progress": 0.5}),
                  (200, {"status": "completed", "result_url": "https://cdn/x.png",
                         "result": {"w": 512}})],
    }
    job = run_job(tenant, {"url": f"{service}/generate", "payload": {"prompt": "a cat"},
                           "poll_url": f"{service}/status/{{id}}"})
    assert job["status"] == "completed"
    assert job["result_url"] == "https://cdn/x.png" and job["result"] == {"w": 512}
    assert FakeService.calls[0] == ("POST", "/generate", {"prompt": "a cat"})
    assert [c[1] for c in FakeService.calls[1:]] == ["/status/g1", "/status/g1"]
    progress = [e["payload"]["progress"] for e in jobs.job_events(tenant[1], job["id"])["items"]
                if e["event_type"] == "job.progress.updated"]
    assert progress == [0.5]


@pytest.mark.parametrize(
    "post,status,code",
    [((503, {"detail": "busy"}), "failed", "TRANSIENT_ERROR"),
     ((429, {}), "failed", "TRANSIENT_ERROR"),
     ((400, {"detail": "bad prompt"}), "failed", "GENERATOR_ERROR"),
     ((200, {"status": "failed", "error": "nsfw"}), "failed", "GENERATOR_ERROR"),
     ((200, {"status": "processing"}), "failed", "GENERATOR_ERROR")],
)
def test_failures_are_transient_or_permanent(service, tenant, post, status, code):
    FakeService.script = {"post": post, "polls": [(200, {"status": "completed"})]}
    job = run_job(tenant, {"url": f"{service}/generate"})
    assert job["status"] == status and job["error"]["code"] == code


def test_circuit_opens_after_repeated_failures(service, tenant):
    FakeService.script = {"post": (500, {}), "polls": [(200, {})]}
    for _ in range(5):
        assert run_job(tenant, {"url": f"{service}/generate"})["error"]["code"] == "TRANSIENT_ERROR"
    calls = len(FakeService.calls)
    job = run_job(tenant, {"url": f"{service}/generate"})
    assert "circuit open" in job["error"]["message"]
    assert len(FakeService.calls) == calls  # the open circuit did not call the service


def test_unreachable_service_is_transient(tenant):
    job = run_job(tenant, {"url": "http://127.0.0.1:1/generate"})
    assert job["error"]["code"] == "TRANSIENT_ERROR"


def test_hosts_outside_the_allow_list_are_refused(domain, service, tenant):
    from app import config

    config.install(domain.with_(http_allowed_hosts="example.com"))
    try:
        job = run_job(tenant, {"url": f"{service}/generate"})
    finally:
        config.install(domain)
    assert job["error"]["code"] == "GENERATOR_ERROR"
    assert "HTTP_ALLOWED_HOSTS" in job["error"]["message"]
    assert FakeService.calls == []
