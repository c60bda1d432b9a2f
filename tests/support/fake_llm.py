"""A fake OpenAI-compatible chat server for the `chat` generator's tests, in its own process.

`POST /v1/chat/completions` with `stream: true` answers server-sent events, chunked: one
`chat.completion.chunk` per token (`tok<i> `), `tokens` of them (the request's `max_tokens`,
else 20) at `rate` tokens a second, then a chunk with `finish_reason`, one with `usage`, and
`data: [DONE]`. Without `stream` it answers the whole completion as one JSON object.

Told what to do over HTTP (`POST /_control`), it misbehaves on demand: `{"fail_next": N,
"fail_status": 503, "retry_after": "2"}` refuses the next N calls; `{"stall_after": K}` stops
sending after K tokens of each call (the connection left open), `{"cut_after": K}` closes
it after K tokens with no end, `{"rate": R}` sets the tokens a second, `{"error_after": K}`
sends an error event after K tokens, `{"hold": true}` keeps new streams from starting until
`{"hold": false}`, `{"require_key": "sk-..."}` answers 401 to a call
without `Authorization: Bearer sk-...`, echoing the key it was sent (as hosted APIs do).
`GET /_stats` lists each call (its `Idempotency-Key` and `Authorization` headers, when it
came, how many tokens went out, when the client closed the connection, if it did),
and the time each token was sent (`sent`: epoch seconds, by the token's text, for the
bench's latency).

Hand-written on http.server (a thread a connection): nothing to install, a real socket.
Run as `python -m tests.support.fake_llm PORT`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from http.server import ThreadingHTTPServer

from tests.support.service_process import JsonHandler, ServiceProcess

DEFAULT_TOKENS = 20


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.control = {"fail_next": 0, "fail_status": 503, "retry_after": None,
                        "stall_after": None, "cut_after": None, "error_after": None,
                        "rate": 200.0, "record_sent": False, "require_key": None,
                        "hold": False}
        self.calls: list[dict] = []
        self.sent: dict[str, float] = {}
        self.released = threading.Event()  # set unless `hold`
        self.released.set()

    def take_failure(self) -> tuple[int | None, str | None]:
        with self.lock:
            c = self.control
            if c["fail_next"] > 0:
                c["fail_next"] -= 1
                return c["fail_status"], c["retry_after"]
        return None, None


STATE = _State()


def _chunk(call_id: str, model: str, delta: dict, finish: str | None = None, usage=None):
    body = {"id": call_id, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [] if usage else
            [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return body


class Handler(JsonHandler):
    protocol_version = "HTTP/1.1"

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, body) -> None:
        payload = body if isinstance(body, str) else json.dumps(body)
        self._write_chunk(f"data: {payload}\n\n".encode())

    def do_POST(self):  # noqa: N802 - the http.server API
        if self.path == "/_control":
            with STATE.lock:
                STATE.control.update(self.read_json())
                (STATE.released.clear if STATE.control["hold"] else STATE.released.set)()
                if STATE.control.pop("reset", False):
                    STATE.calls.clear()
                    STATE.sent.clear()
                return self.answer_json(200, STATE.control)
        if self.path != "/v1/chat/completions":
            return self.answer_json(404, {"error": {"message": "no such route"}})
        request = self.read_json()
        sent_auth = self.headers.get("Authorization")
        call = {"idempotency_key": self.headers.get("Idempotency-Key"), "at": time.time(),
                "tokens_sent": 0, "closed_at": None, "model": request.get("model"),
                "authorization": sent_auth}
        with STATE.lock:
            STATE.calls.append(call)
            control = dict(STATE.control)
        if control["require_key"] and sent_auth != f"Bearer {control['require_key']}":
            given = (sent_auth or "").removeprefix("Bearer ")
            return self.answer_json(401, {"error": {
                "message": f"Incorrect API key provided: {given}. You can find your API key "
                           "in your account settings.", "type": "invalid_request_error"}})
        status, retry_after = STATE.take_failure()
        if status is not None:
            headers = {"Retry-After": retry_after} if retry_after else {}
            return self.answer_json(status, {"error": {"message": "busy"}}, headers)
        if not isinstance(request.get("messages"), list) or not request.get("model"):
            return self.answer_json(400, {"error": {"message": "model and messages are required"}})
        tokens = int(request.get("max_tokens") or DEFAULT_TOKENS)
        if not request.get("stream"):
            text = "".join(f"tok{i} " for i in range(tokens))
            return self.answer_json(200, {"choices": [{"message": {"content": text}}]})
        self._stream(call, control, request["model"], tokens)

    def _stream(self, call: dict, control: dict, model: str, tokens: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        call_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        STATE.released.wait()  # the bench starts every stream at once
        gap = 1.0 / float(control["rate"])
        start = time.monotonic()
        # A token's event, its content left to fill in: built once, not once a token (the
        # bench streams 10,000 tokens a second from this one process).
        head, tail = json.dumps(_chunk(call_id, model, {"content": "TOKEN"})).split('"TOKEN"')
        try:
            self._event(_chunk(call_id, model, {"role": "assistant", "content": ""}))
            for i in range(tokens):
                if i == control["stall_after"]:
                    self._wait_for_close(call)
                    return
                if i == control["cut_after"]:
                    self.close_connection = True
                    return  # no terminating chunk: the client sees the stream cut
                if i == control["error_after"]:
                    self._event({"error": {"message": "model crashed"}})
                    break
                time.sleep(max(0.0, start + i * gap - time.monotonic()))
                self._event(head + json.dumps(f"tok{i} ") + tail)
                call["tokens_sent"] = i + 1
                if control["record_sent"]:
                    STATE.sent[f"{call['idempotency_key']}:{i}"] = time.time()
            else:
                self._event(_chunk(call_id, model, {}, finish="stop"))
                usage = {"prompt_tokens": 7, "completion_tokens": tokens,
                         "total_tokens": 7 + tokens}
                self._event(_chunk(call_id, model, {}, usage=usage))
            self._event("[DONE]")
            self._write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            call["closed_at"] = time.time()

    def _wait_for_close(self, call: dict) -> None:
        """Send nothing more, until the client goes away (or an hour passes)."""
        self.connection.settimeout(3600)
        try:
            while self.connection.recv(1024):
                pass
        except OSError:
            pass
        call["closed_at"] = time.time()
        self.close_connection = True

    def do_GET(self):  # noqa: N802 - the http.server API
        if self.path == "/_stats":
            with STATE.lock:
                return self.answer_json(200, {"calls": STATE.calls, "sent": STATE.sent})
        return self.answer_json(404, {"error": {"message": "no such route"}})


class FakeLLM(ServiceProcess):
    """The server as a child process on a port of its own."""

    MODULE, NAME = "tests.support.fake_llm", "fake-llm"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def reset(self) -> None:
        """Behave again: no failures, stalls or cuts, the default rate, no calls seen."""
        self.control(fail_next=0, retry_after=None, stall_after=None, cut_after=None,
                     error_after=None, rate=200.0, record_sent=False, require_key=None,
                     hold=False, reset=True)


def main(port: int) -> None:
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
