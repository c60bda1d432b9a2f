"""A small external generation service for the `http` generator's tests, in its own process.

It speaks the protocol of `app/generators/http.py`: `POST /generate` answers
`{id, status: "queued"}`, then `GET /status/<id>` answers `processing` (with `progress`)
for `polls` calls and `completed` (with `result_url` and `result`) after that. A payload
with `"reject": true` is refused with 422.

Told what to do over HTTP, the tests make it misbehave on demand:
`POST /_control {"slow_next": N, "slow_s": S}` answers the next N generation calls after
S seconds, `{"fail_next": N, "fail_status": 503}` fails them (with `Retry-After` when
`"retry_after"` is set: seconds or an HTTP date, as the header says it), `{"polls": K}` sets
the number of pending answers; `GET /_stats` counts the generation calls it received and
lists the `Idempotency-Key` header and the time (epoch seconds) of each `POST /generate`,
in order. Down is
the process stopped (`GenService.stop()`): connections are refused until `start()`.

Hand-written on http.server: a few dozen lines, nothing to install, and a real socket.
Run as `python -m tests.support.gen_service PORT`.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from http.server import ThreadingHTTPServer

from tests.support.service_process import JsonHandler, ServiceProcess


class _State:
    """What the service was told, and what it saw (one process, shared by its threads)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.control = {"slow_next": 0, "slow_s": 0.0, "fail_next": 0, "fail_status": 503,
                        "polls": 1, "retry_after": None}
        self.calls = {"generate": 0, "status": 0}
        self.idempotency_keys: list[str | None] = []
        self.generate_at: list[float] = []
        self.pending: dict[str, dict] = {}  # id -> {"polls_left", "payload"}

    def misbehaviour(self) -> tuple[float, int | None]:
        """How long to stall and which status to fail with, for this generation call."""
        with self.lock:
            c, slow, fail = self.control, 0.0, None
            if c["slow_next"] > 0:
                c["slow_next"] -= 1
                slow = c["slow_s"]
            elif c["fail_next"] > 0:
                c["fail_next"] -= 1
                fail = c["fail_status"]
        return slow, fail


STATE = _State()


class Handler(JsonHandler):
    """The routes: generation (`/generate`, `/status/<id>`) and control (`/_control`, `/_stats`)."""

    def _misbehave(self, kind: str) -> bool:
        with STATE.lock:
            STATE.calls[kind] += 1
        slow, fail = STATE.misbehaviour()
        time.sleep(slow)
        if fail is not None:
            retry_after = STATE.control["retry_after"]
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            self.answer_json(fail, {"detail": "the service is unwell"}, headers)
            return True
        return False

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.read_json()
        if self.path == "/_control":
            with STATE.lock:
                STATE.control.update(body)
            return self.answer_json(200, STATE.control)
        if self.path != "/generate":
            return self.answer_json(404, {"detail": "no such route"})
        with STATE.lock:
            STATE.idempotency_keys.append(self.headers.get("Idempotency-Key"))
            STATE.generate_at.append(time.time())
        if self._misbehave("generate"):
            return None
        if body.get("reject"):
            return self.answer_json(422, {"detail": "prompt refused"})
        job_id = uuid.uuid4().hex[:12]
        with STATE.lock:
            STATE.pending[job_id] = {"polls_left": STATE.control["polls"], "payload": body}
        return self.answer_json(202, {"id": job_id, "status": "queued"})

    def do_GET(self):  # noqa: N802 - the http.server API
        if self.path == "/_stats":
            with STATE.lock:
                return self.answer_json(200, {**STATE.calls,
                                          "idempotency_keys": STATE.idempotency_keys,
                                          "generate_at": STATE.generate_at})
        if not self.path.startswith("/status/"):
            return self.answer_json(404, {"detail": "no such route"})
        if self._misbehave("status"):
            return None
        job_id = self.path.removeprefix("/status/")
        with STATE.lock:
            job = STATE.pending.get(job_id)
            if job is None:
                return self.answer_json(404, {"detail": "no such generation"})
            job["polls_left"] -= 1
            left = job["polls_left"]
        if left >= 0:
            return self.answer_json(200, {"status": "processing", "progress": 0.5})
        host = self.headers.get("Host", "localhost")
        return self.answer_json(200, {"status": "completed",
                                  "result_url": f"http://{host}/files/{job_id}.png",
                                  "result": {"id": job_id, "payload": job["payload"]}})


class GenService(ServiceProcess):
    """The service as a child process on a port of its own, started and stopped by tests."""

    MODULE, NAME = "tests.support.gen_service", "gen-service"

    @property
    def host(self) -> str:
        """The breaker's name for this service (host and port)."""
        return f"127.0.0.1:{self.port}"

    def calls(self) -> dict:
        """How many generation calls (`generate`, `status`) the running process received."""
        stats = self.stats()
        return {"generate": stats["generate"], "status": stats["status"]}

    def idempotency_keys(self) -> list[str | None]:
        """The `Idempotency-Key` of each `POST /generate` the running process received."""
        return self.stats()["idempotency_keys"]


def main(port: int) -> None:
    """Serve on 127.0.0.1:`port` until stopped."""
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
