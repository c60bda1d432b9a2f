"""The `chat` generator: a client of the OpenAI-compatible chat API, its answer streamed.

`POST <base_url>/chat/completions` with `stream: true` (vLLM, Ollama, llama.cpp, LM Studio and
the hosted providers all speak it); the server-sent events' `choices[0].delta.content` are
appended to the job's output as they come (`ctx.append`, `app/output.py`), and the whole text
is the result's `text`, with `usage` (prompt and completion tokens), `time_to_first_token_s`
and `tokens_per_s`.

The call is the `http` generator's: the same address checks of every target and connection
(`app/netguard.py`, HTTP_ALLOWED_HOSTS), the host's shared rate and its holds: a 429 or 503
with `Retry-After` holds the job `queued` until then, no attempt spent; other 429s and 5xx
are transient, other 4xx permanent; a redirect is refused (a chat API has no business
sending one). A stream that ends before its `[DONE]` (or a `finish_reason`), or stalls longer
than HTTP_READ_TIMEOUT_S, is a transient failure: retried per the job's policy, the next
attempt's output starting again. While the stream is read, a watcher checks the cancel flag
every CANCEL_CHECK_S and, once the job is cancelled, shuts the connection: the read returns,
even from a server that stalls, and the upstream stream is closed within a second.

The server is the job's `base_url` (one that needs no key) or its `provider`: a name the
tenant's admin configured (`app/providers.py`), looked up through the job's own tenant when the
job runs, its key decrypted then and sent as `Authorization: Bearer <key>`. A name the tenant
does not have (deleted since, or another tenant's) fails the job for good, PROVIDER_NOT_FOUND.
The key never leaves the call: remote text quoted in an error has it replaced, and so has
anything the call raises (`http.keeping`), so the job's error, its events and the worker's log
never show it; the params hold only the name.

The SSE reader is hand-written: a line is bounded (MAX_LINE_BYTES), where the SSE libraries
for requests read a line of any size into memory.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import requests
import urllib3

from app import netguard, providers, telemetry
from app.errors import Unavailable
from app.generators import http
from app.generators.base import (
    CANCEL_CHECK_S,
    Context,
    Output,
    PermanentError,
    TransientError,
)

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 1 << 20
MAX_MESSAGES = 256
MAX_CONTENT_CHARS = 200_000
READ_CHUNK = 64 * 1024
# The request fields passed through as given (checked by the schema); `stream` is ours.
FORWARDED = ("model", "messages", "temperature", "top_p", "max_tokens", "stop", "seed",
             "presence_penalty", "frequency_penalty", "response_format", "user")

_MESSAGE = {
    "type": "object",
    "properties": {
        "role": {"enum": ["system", "user", "assistant", "tool", "developer"]},
        "content": {"type": "string", "maxLength": MAX_CONTENT_CHARS},
        "name": {"type": "string", "maxLength": 64},
    },
    "required": ["role", "content"],
    "additionalProperties": False,
}
_STOP = {"type": "string", "minLength": 1, "maxLength": 200}


class Chat:
    """Streams a chat completion from an OpenAI-compatible server."""

    name = "chat"
    io_bound = True
    params_schema = {
        "type": "object",
        "properties": {
            "base_url": {"type": "string", "pattern": http.URL_PATTERN, "maxLength": 2000,
                         "description": "the API's base, e.g. http://llm:8000/v1, of a server "
                                        "that needs no key; or give `provider`"},
            "provider": {"type": "string", "pattern": providers.NAME_PATTERN,
                         "description": "the name of a provider the tenant's admin configured "
                                        "(PUT /api/v1/providers/{name}: its base URL and key); "
                                        "or give `base_url`"},
            "model": {"type": "string", "minLength": 1, "maxLength": 200},
            "messages": {"type": "array", "items": _MESSAGE, "minItems": 1,
                         "maxItems": MAX_MESSAGES},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            "stop": {"anyOf": [_STOP, {"type": "array", "items": _STOP, "maxItems": 4}]},
            "seed": {"type": "integer"},
            "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "response_format": {"type": "object"},
            "user": {"type": "string", "maxLength": 200},
        },
        "required": ["model", "messages"],
        # The titles name the choice in a refusal (`app/plugins.py`).
        "oneOf": [{"title": "base_url", "required": ["base_url"]},
                  {"title": "provider", "required": ["provider"]}],
        "additionalProperties": False,
    }

    def check_for_tenant(self, tenant_id, params: dict) -> dict[str, list[str]]:
        """A `provider` must be one of the tenant's own, at submit already."""
        name = params.get("provider")
        if name is None or providers.exists(tenant_id, name):
            return {}
        return {"params.provider": [f"no provider named {name!r} for this tenant "
                                    "(PUT /api/v1/providers/{name} makes one)"]}

    def run(self, params: dict, ctx: Context) -> Output:
        base_url, api_key = _server(params, ctx)
        with http.keeping(api_key):
            return self._stream(base_url, api_key, params, ctx)

    def _stream(self, base_url: str, api_key: str | None, params: dict, ctx: Context) -> Output:
        url = base_url.rstrip("/") + "/chat/completions"
        where, host = f"POST {netguard.redact(url)}", netguard.service_name(url)
        http.check_target(url)
        http.room_for_job(host)
        body = {k: params[k] for k in FORWARDED if k in params}
        body |= {"stream": True, "stream_options": {"include_usage": True}}
        headers = {"Idempotency-Key": ctx.job_id, "Accept": "text/event-stream"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        started = time.monotonic()
        with http.send("POST", url, body, headers) as resp:
            if 300 <= resp.status_code < 400:
                raise PermanentError(f"{where}: HTTP {resp.status_code}: a chat API redirects "
                                     "nowhere", code="REDIRECT_REFUSED")
            http.raise_for_answer(where, resp, host)
            with _CancelWatch(ctx, resp) as watch:
                reply = _Reply(ctx, started)
                try:
                    for data in _events(where, resp):
                        if reply.take(where, data):
                            break
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                        ValueError) as exc:
                    watch.raise_if_cut()
                    raise TransientError(f"{where}: the stream broke after "
                                         f"{reply.chunks} chunks ({type(exc).__name__})") from exc
                watch.raise_if_cut()
        if not reply.finished:
            raise TransientError(f"{where}: the stream ended after {reply.chunks} chunks, "
                                 "before its end")
        result = reply.result()
        telemetry.chat_reply(result["time_to_first_token_s"], result["tokens_per_s"],
                             result["usage"])
        return Output(result=result)


def _server(params: dict, ctx: Context) -> tuple[str, str | None]:
    """The base URL to call and the key to send (None: no key)."""
    if "provider" not in params:
        return params["base_url"], None
    name = params["provider"]
    try:
        found = providers.for_job(ctx.job_id, name)
    except providers.KeyUnreadable as exc:
        log.error("chat: job %s: %s", ctx.job_id, exc)  # the operator's to mend
        raise PermanentError(str(exc), code="PROVIDER_KEY_UNREADABLE") from None
    if found is None:
        raise PermanentError(f"no provider named {name!r} for this job's tenant",
                             code="PROVIDER_NOT_FOUND")
    return found.base_url, found.api_key


class _Reply:
    """What the stream said so far: the text (appended to the output as it comes), the
    usage, the finish reason, and when the first token came."""

    def __init__(self, ctx: Context, started: float):
        self.ctx, self.started = ctx, started
        self.text: list[str] = []
        self.chunks = 0
        self.first_at: float | None = None
        self.usage: dict | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.finished = False

    def take(self, where: str, data: str) -> bool:
        """One event's data; True once the stream said it is done (`[DONE]`)."""
        if data.strip() == "[DONE]":
            self.finished = True
            return True
        event = http.json_object(where, data, "an event of the stream")
        if "error" in event:
            raise TransientError(f"{where}: the server failed mid-stream: "
                                 f"{http.excerpt(event['error'])}")
        self.chunks += 1
        self.model = event.get("model") if isinstance(event.get("model"), str) else self.model
        if isinstance(event.get("usage"), dict):
            self.usage = _usage(event["usage"])
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str) and content:
                self.first_at = self.first_at or time.monotonic()
                self.text.append(content)
                self.ctx.append(content)
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
                self.finished = True  # the usage chunk, if any, may still follow
        return False

    def result(self) -> dict:
        ended = time.monotonic()
        ttft = None if self.first_at is None else self.first_at - self.started
        completion = (self.usage or {}).get("completion_tokens")
        rate = None
        if completion and self.first_at is not None and ended > self.first_at:
            rate = completion / (ended - self.first_at)
        return {"text": "".join(self.text), "model": self.model,
                "finish_reason": self.finish_reason, "usage": self.usage,
                "time_to_first_token_s": ttft, "tokens_per_s": rate}


def _usage(raw: dict) -> dict:
    """The token counts of a usage object, as integers (anything else left out)."""
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {k: raw[k] for k in keys if isinstance(raw.get(k), int) and raw[k] >= 0}


def _lines(where: str, resp: requests.Response) -> Iterator[str]:
    """The answer's lines as they arrive (read1: whatever the socket has, chunked or not),
    each at most MAX_LINE_BYTES."""
    buf = bytearray()
    while chunk := resp.raw.read1(READ_CHUNK):
        buf += chunk
        while (end := buf.find(b"\n")) >= 0:
            line = bytes(buf[:end]).rstrip(b"\r")
            del buf[: end + 1]
            yield line.decode("utf-8", "replace")
        if len(buf) > MAX_LINE_BYTES:
            raise PermanentError(f"{where}: a line of the stream is over {MAX_LINE_BYTES} "
                                 "bytes", code="RESPONSE_TOO_LARGE")
    if buf:
        yield bytes(buf).decode("utf-8", "replace")


def _events(where: str, resp: requests.Response) -> Iterator[str]:
    """The data of each server-sent event (its `data:` lines joined), in order."""
    data: list[str] = []
    for line in _lines(where, resp):
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment: a keep-alive
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


class _CancelWatch:
    """While the stream is read: check the cancel flag every CANCEL_CHECK_S; once the job
    is cancelled (or is no longer this run's), shut the connection so the read returns."""

    def __init__(self, ctx: Context, resp: requests.Response):
        self._ctx, self._resp = ctx, resp
        self._stop = threading.Event()
        self._cut: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name="chat-cancel")

    def __enter__(self) -> _CancelWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(CANCEL_CHECK_S):
            try:
                self._ctx.check_cancelled()
            except Unavailable:
                continue  # the database is away: read on; the run's own writes will tell
            except Exception as exc:  # noqa: BLE001 - Cancelled, or the run was superseded
                self._cut = exc
                self._shut()
                return

    def _shut(self) -> None:
        sock = getattr(getattr(self._resp.raw, "connection", None), "sock", None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
        log.info("chat: job %s cancelled, its stream shut", self._ctx.job_id)

    def raise_if_cut(self) -> None:
        """Raise why the watcher cut the stream, if it did."""
        if self._cut is not None:
            raise self._cut

