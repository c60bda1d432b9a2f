"""The `http` generator against a real HTTP service on a local port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from app import config, db, jobs, netguard, runs
from app.events import plain
from app.generators import http as http_gen
from app.models import Job


class FakeService(BaseHTTPRequestHandler):
    """A generation service: `POST /generate` then `GET /status/<id>` until completed.

    `script` says what it answers: `post`, `polls` (status and JSON body, or raw bytes, or a
    callable that writes the answer itself) and `redirect` ({path: (status, location)}).
    """

    script: dict = {}
    calls: list = []
    keys: list = []  # the Idempotency-Key header of each POST

    def _answer(self, status: int, body) -> None:
        if callable(body):
            return body(self)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return None

    def _redirected(self) -> bool:
        target = self.script.get("redirect", {}).get(self.path)
        if target is None:
            return False
        self.send_response(target[0])
        self.send_header("Location", target[1])
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def do_POST(self):  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        self.calls.append(("POST", self.path, payload))
        self.keys.append(self.headers.get("Idempotency-Key"))
        if not self._redirected():
            self._answer(*self.script["post"])

    def do_GET(self):  # noqa: N802 - the http.server API
        self.calls.append(("GET", self.path, None))
        if self._redirected():
            return
        polls = self.script["polls"]
        status, body = polls.pop(0) if len(polls) > 1 else polls[0]
        self._answer(status, body)

    def log_message(self, *args):
        pass


class InternalService(BaseHTTPRequestHandler):
    """Another process of the deployment on loopback (the API, Flower): it must never be asked."""

    calls: list = []

    def _serve(self):
        self.calls.append((self.command, self.path))
        data = json.dumps({"status": "completed", "result": {"internal": INTERNAL}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def log_message(self, *args):
        pass


INTERNAL = "internal-answer-7f3a"


def _serve(handler, port: int):
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def service(gen_service_port):
    """The fake service on the run's port, the one loopback address HTTP_PRIVATE_HOSTS lists."""
    server = _serve(FakeService, gen_service_port)
    FakeService.calls, FakeService.keys, FakeService.script = [], [], {}
    host = f"127.0.0.1:{server.server_address[1]}"
    http_gen.reset_breaker(host)
    yield f"http://{host}"
    server.shutdown()
    server.server_close()
    http_gen.reset_breaker(host)


@pytest.fixture
def internal(domain):
    """A service on another loopback port, not listed in HTTP_PRIVATE_HOSTS."""
    server = _serve(InternalService, 0)
    InternalService.calls = []
    host = f"127.0.0.1:{server.server_address[1]}"
    http_gen.reset_breaker(host)
    yield f"http://{host}"
    server.shutdown()
    server.server_close()
    http_gen.reset_breaker(host)


@pytest.fixture
def settings(domain):
    """Install changed settings for one test; the run's own again afterwards."""
    yield lambda **changes: config.install(domain.with_(**changes))
    config.install(domain)


def run_job(tenant, params, max_retries: int = 0) -> dict:
    job, _ = jobs.submit(tenant[1], {"kind": "http", "params": params,
                                     "max_retries": max_retries})
    with db.transaction() as conn:
        token = conn.execute(select(Job.dispatch_token).where(Job.id == job.id)).scalar_one()
    runs.execute(job.id, str(token), "test-worker")
    return jobs.get(tenant[1], job.id)


def test_submits_polls_and_keeps_the_result_url(service, tenant):
    FakeService.script = {
        "post": (202, {"id": "g1", "status": "queued"}),
        "polls": [(200, {"status": "processing", "progress": 0.5}),
                  (200, {"status": "completed", "result_url": "https://cdn/x.png",
                         "result": {"w": 512}})],
    }
    job = run_job(tenant, {"url": f"{service}/generate", "payload": {"prompt": "a cat"},
                           "poll_url": f"{service}/status/{{id}}"})
    assert job.status == "completed"
    assert job.result_url == "https://cdn/x.png" and job.result == {"w": 512}
    assert FakeService.calls[0] == ("POST", "/generate", {"prompt": "a cat"})
    assert [c[1] for c in FakeService.calls[1:]] == ["/status/g1", "/status/g1"]
    progress = [e["payload"]["progress"] for e in jobs.job_events(tenant[1], job.id)["items"]
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
    assert job.status == status and job.error["code"] == code


def test_circuit_opens_after_repeated_failures(service, tenant):
    FakeService.script = {"post": (500, {}), "polls": [(200, {})]}
    for _ in range(5):
        assert run_job(tenant, {"url": f"{service}/generate"}).error["code"] == "TRANSIENT_ERROR"
    calls = len(FakeService.calls)
    job = run_job(tenant, {"url": f"{service}/generate"})
    assert "circuit open" in job.error["message"]
    assert len(FakeService.calls) == calls  # the open circuit did not call the service


def test_unreachable_service_is_transient(tenant, gen_service_port):
    # The allowed private port, with nothing listening on it.
    job = run_job(tenant, {"url": f"http://127.0.0.1:{gen_service_port}/generate"})
    assert job.error["code"] == "TRANSIENT_ERROR"


def test_hosts_outside_the_allow_list_are_refused(settings, service, tenant):
    settings(http_allowed_hosts="example.com")
    job = run_job(tenant, {"url": f"{service}/generate"})
    assert job.error["code"] == "GENERATOR_ERROR"
    assert "HTTP_ALLOWED_HOSTS" in job.error["message"]
    assert FakeService.calls == []


def status_events(tenant, job_id: str) -> list[dict]:
    return [e["payload"] for e in jobs.job_events(tenant[1], job_id)["items"]
            if e["event_type"] == "job.status.updated"]


def assert_refused_at_once(tenant, job) -> None:
    """Failed on its first attempt (retries left), ADDRESS_NOT_ALLOWED, on the job and its event."""
    assert job.status == "failed" and job.attempts == 1, job.error
    assert job.error["code"] == "ADDRESS_NOT_ALLOWED", job.error
    assert status_events(tenant, job.id)[-1]["error"]["code"] == "ADDRESS_NOT_ALLOWED"
    assert INTERNAL not in json.dumps(plain(job))
    assert InternalService.calls == []


def test_loopback_outside_the_private_hosts_is_refused_at_once(tenant, internal):
    job = run_job(tenant, {"url": f"{internal}/health/readiness"}, max_retries=3)
    assert_refused_at_once(tenant, job)
    assert "HTTP_PRIVATE_HOSTS" in job.error["message"]


def test_a_listed_host_is_allowed_on_its_own_port_only(service, tenant, gen_service_port):
    """`127.0.0.1:<port>` is listed; the same address by another name or port is not."""
    FakeService.script = {"post": (200, {"status": "completed", "result": {"ok": 1}})}
    assert run_job(tenant, {"url": f"{service}/generate"}).status == "completed"
    for url in (f"http://localhost:{gen_service_port}/generate",
                f"http://2130706433:{gen_service_port}/generate",
                f"http://127.1:{gen_service_port}/generate"):
        job = run_job(tenant, {"url": url})
        assert job.error["code"] == "ADDRESS_NOT_ALLOWED", (url, job.error)
    assert len(FakeService.calls) == 1


def test_a_poll_url_the_service_hands_back_is_checked(service, tenant, internal):
    FakeService.script = {"post": (202, {"id": "g1", "status": "queued",
                                         "poll_url": f"{internal}/status/{{id}}"}),
                          "polls": [(200, {"status": "completed"})]}
    job = run_job(tenant, {"url": f"{service}/generate"}, max_retries=3)
    assert_refused_at_once(tenant, job)
    assert [c[0] for c in FakeService.calls] == ["POST"]


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_to_a_refused_address_is_not_followed(service, tenant, internal, status):
    FakeService.script = {"redirect": {"/generate": (status, f"{internal}/generate")}}
    job = run_job(tenant, {"url": f"{service}/generate"}, max_retries=3)
    assert_refused_at_once(tenant, job)


def test_redirects_to_allowed_targets_are_followed_and_bounded(service, tenant):
    # 307 keeps the POST, its body and its Idempotency-Key; 303 turns it into a GET.
    FakeService.script = {"redirect": {"/generate": (307, "/v2/generate"),
                                       "/v2/generate": (303, "/v2/done")},
                          "post": (200, {}),
                          "polls": [(200, {"status": "completed", "result": {"n": 1}})]}
    job = run_job(tenant, {"url": f"{service}/generate", "payload": {"p": 1}})
    assert job.status == "completed" and job.result == {"n": 1}
    assert FakeService.calls == [("POST", "/generate", {"p": 1}),
                                 ("POST", "/v2/generate", {"p": 1}), ("GET", "/v2/done", None)]
    assert FakeService.keys == [str(job.id)] * 2

    FakeService.calls, FakeService.script = [], {"redirect": {"/loop": (302, "/loop")}}
    job = run_job(tenant, {"url": f"{service}/loop"}, max_retries=3)
    assert job.status == "failed" and job.error["code"] == "TOO_MANY_REDIRECTS"
    assert len(FakeService.calls) == http_gen.MAX_REDIRECTS + 1


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_connection_itself_is_checked_before_anything_is_sent(internal, scheme):
    """A name that resolved to an allowed address for the check and to another for the
    connection (DNS rebinding) still cannot reach it: the socket's peer is judged before the
    request (or a TLS handshake) is written. Shown by connecting without the pre-check, as a
    rebound name would."""
    port = int(internal.rsplit(":", 1)[1])
    with netguard.session() as session, pytest.raises(netguard.AddressNotAllowed) as refused:
        session.get(f"{scheme}://127.0.0.1:{port}/anything", timeout=5)
    assert refused.value.target == f"127.0.0.1:{port}"
    assert InternalService.calls == []  # connected, refused, closed: no request reached it


def test_an_answer_past_the_limit_is_refused(service, tenant, settings):
    settings(http_max_response_bytes=1024)
    FakeService.script = {"post": (200, {"status": "completed", "result": "x" * 2000})}
    job = run_job(tenant, {"url": f"{service}/generate"}, max_retries=3)
    assert job.status == "failed" and job.attempts == 1
    assert job.error["code"] == "RESPONSE_TOO_LARGE"
    assert "xxxx" not in json.dumps(plain(job))


def endless_body(status: int, headers: dict, total: int = 256 * 1024 * 1024):
    """An answer that writes chunks until `total` or until the client hangs up."""
    sent, done = [0], threading.Event()

    def write(handler):
        handler.send_response(status)
        for name, value in {**headers, "Transfer-Encoding": "chunked"}.items():
            handler.send_header(name, value)
        handler.end_headers()
        chunk = b"%x\r\n%s\r\n" % (65536, b"7" * 65536)
        try:
            while sent[0] < total:
                handler.wfile.write(chunk)
                sent[0] += 65536
        except OSError:
            pass  # the client hung up
        finally:
            done.set()

    return write, sent, done


def test_an_endless_answer_is_read_no_further_than_the_limit(service, tenant, settings):
    """Chunked, no Content-Length: the worker stops reading and hangs up past the limit."""
    settings(http_max_response_bytes=64 * 1024)
    write, sent, done = endless_body(200, {})
    FakeService.script = {"post": (200, write)}
    job = run_job(tenant, {"url": f"{service}/generate"})
    assert job.error["code"] == "RESPONSE_TOO_LARGE"
    assert done.wait(30), "the service is still writing"
    assert sent[0] < 256 * 1024 * 1024


def test_a_redirect_is_followed_without_reading_its_body(service, tenant, settings):
    settings(http_max_response_bytes=64 * 1024)
    write, sent, done = endless_body(302, {"Location": "/done"})
    FakeService.script = {"post": (302, write),
                          "polls": [(200, {"status": "completed", "result": {"n": 2}})]}
    job = run_job(tenant, {"url": f"{service}/generate"})
    assert job.status == "completed" and job.result == {"n": 2}, job.error
    assert done.wait(30), "the service is still writing"
    assert sent[0] < 256 * 1024 * 1024


def test_remote_text_in_errors_is_a_short_printable_excerpt(service, tenant):
    body = ("<html>\x1b[31mdenied\x00\u202e" + "A" * 5000).encode()
    FakeService.script = {"post": (400, body)}
    error = run_job(tenant, {"url": f"{service}/generate"}).error
    assert error["code"] == "GENERATOR_ERROR" and "HTTP 400" in error["message"]
    tail = error["message"].split("HTTP 400: ", 1)[1]
    assert tail.startswith("<html> [31mdenied") and len(tail) <= http_gen.EXCERPT_CHARS
    assert all(c.isprintable() for c in error["message"]) and "A" * 300 not in error["message"]

    FakeService.script = {"post": (200, {"status": "failed", "error": "x\n\ty " * 1000})}
    message = run_job(tenant, {"url": f"{service}/generate"}).error["message"]
    assert message.startswith("the service failed the job: x y x y")
    assert len(message) <= len("the service failed the job: ") + http_gen.EXCERPT_CHARS


def test_credentials_in_the_url_appear_in_no_name_event_or_log(service, tenant, settings,
                                                              caplog):
    settings(breaker_fail_max=2)
    FakeService.script = {"post": (503, {})}
    host = service.removeprefix("http://")
    url = f"http://alice:s3cret@{host}/generate"
    first, second = run_job(tenant, {"url": url}), run_job(tenant, {"url": url})
    assert first.error["message"] == f"POST http://{host}/generate: HTTP 503"
    assert "circuit open" in second.error["message"]
    events = jobs.job_events(tenant[1], second.id)["items"]
    changes = [e["payload"] for e in events if e["event_type"] == "circuit_breaker.state.changed"]
    assert [c["service_name"] for c in changes] == [host]
    assert "s3cret" not in json.dumps([first.error, second.error, events])
    assert "circuit" in caplog.text and "s3cret" not in caplog.text


@pytest.mark.parametrize("url", ["http://gen.example/a\x00b", "http://gen.example/a b",
                                 "ftp://gen.example/", "http://gen.example/\x1b[2J"])
def test_urls_with_control_characters_are_refused_field_by_field(http, url):
    client, auth = http
    resp = client.post("/api/v1/jobs", json={"kind": "http", "params": {"url": url}},
                       headers=auth)
    assert resp.status_code == 422, resp.get_json()
    assert "params.url" in resp.get_json()["error"]["details"]


def test_odd_urls_from_the_service_fail_the_job_not_the_worker(service, tenant):
    for poll_url in ["http://127.0.0.1/\x00", "http://[::1/status", 17]:
        FakeService.script = {"post": (202, {"id": "g1", "status": "queued",
                                             "poll_url": poll_url})}
        job = run_job(tenant, {"url": f"{service}/generate"})
        assert job.status == "failed" and job.error["code"] == "GENERATOR_ERROR", job.error
