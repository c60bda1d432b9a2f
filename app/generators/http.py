"""The `http` generator: drive an external generation service, poll it, keep its result URL.

The service protocol it speaks: `POST url` with the JSON `payload` answers a JSON object
with `status` (`queued`, `processing`, `completed` or `failed`) and, until it is done, an `id`;
the job polls `poll_url` (where `{id}` is replaced by that id) until the status is final.
A final answer carries `result_url` and/or `result`, or `error` when it failed.

Every target (the `url`, the poll URL, each redirect, at most `MAX_REDIRECTS`) passes
`HTTP_ALLOWED_HOSTS` and the address check of `app/netguard.py` before it is called, and every
connection's peer passes it again; a refusal fails the attempt at once, `ADDRESS_NOT_ALLOWED`.
A POST carries the job's id as `Idempotency-Key`. An answer is read up to
`HTTP_MAX_RESPONSE_BYTES` (past it: `RESPONSE_TOO_LARGE`); errors quote a remote text only as a
short printable excerpt, and URLs lose their `user:password@` in names, errors and logs.

Connection errors, timeouts, 429 and 5xx answers are transient (the job retries with
backoff); other 4xx answers are permanent. A 429 or 503 with `Retry-After` is not a failure:
the host is held (in Redis, for every worker) until then, and its jobs wait `queued` without
spending an attempt (`Held`), as they do when the host's shared rate (`HTTP_HOST_RATE`,
`HTTP_HOST_RATES`: the `limits` library's moving window, in Redis) is used up. A circuit
breaker per host, its state in Redis so every worker shares it, stops hammering a service
that keeps failing: while it is open, attempts fail fast as transient. Each change of its
state is a `circuit_breaker.state.changed` event of the job whose call changed it.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urljoin, urlsplit

import limits
import pybreaker
import redis
import requests
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app import config, netguard, pubsub
from app.generators.base import Context, Held, Output, PermanentError, TransientError, wait

log = logging.getLogger(__name__)

FINAL = {"completed", "succeeded", "failed", "error"}
POLL_START_S, POLL_MAX_S = 0.2, 5.0
REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 5
READ_CHUNK = 64 * 1024
EXCERPT_CHARS = 200
# http(s), and no whitespace or control characters: they would end up in errors and events.
URL_PATTERN = r"^https?://[^\s\x00-\x1f\x7f]+$"

REDACTED = "[redacted]"

# The secrets the current call carries (a chat provider's API key): remote text quoted in an
# error never repeats them (`excerpt`), nor does anything raised while they are kept (`keeping`).
_secrets: ContextVar[tuple[str, ...]] = ContextVar("http_secrets", default=())
# The state changes the current call made, for its job to record (set around each call).
_changes: ContextVar[list | None] = ContextVar("breaker_changes", default=None)
# True while this process's breaker itself moves the state (not merely notices a move).
_own_move: ContextVar[bool] = ContextVar("breaker_own_move", default=False)


@contextmanager
def _moving():
    token = _own_move.set(True)
    try:
        yield
    finally:
        _own_move.reset(token)


class _SharedBreaker(pybreaker.CircuitBreaker):
    """A breaker whose state lives in Redis, shared by every worker.

    pybreaker tells its listeners both of the moves this process makes and of the moves
    another process made that this one only noticed in Redis; marking our own moves lets
    the listener report each change once, from the process whose call caused it.
    """

    def __init__(self, client: redis.Redis, namespace: str, **kwargs):
        self.redis, self.namespace = client, namespace
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace)
        super().__init__(state_storage=storage, **kwargs)

    def open(self) -> bool:
        with _moving():
            return super().open()

    def half_open(self) -> None:
        with _moving():
            super().half_open()

    def close(self) -> None:
        with _moving():
            super().close()


def _state_name(state) -> str:
    return state.name.replace("-", "_") if state is not None else "closed"


def _first_to_report(cb: _SharedBreaker, current: str) -> bool:
    """Claim this change in Redis: two workers making the same move report it once."""
    try:
        before = cb.redis.set(f"{cb.namespace}:reported", current, get=True)
    except redis.RedisError:
        return True  # better a duplicate event than a lost one
    return before is None or before.decode() != current


class _ReportStateChanges(pybreaker.CircuitBreakerListener):
    """Log every change this process makes and hand it to the job whose call made it."""

    def state_change(self, cb, old_state, new_state):
        current = _state_name(new_state)
        if not _own_move.get() or not _first_to_report(cb, current):
            return  # another worker moved it, and reported it
        previous, failures = _state_name(old_state), cb.fail_counter
        log.warning(
            "circuit %s: %s -> %s (%d consecutive failures)", cb.name, previous, current, failures
        )
        pending = _changes.get()
        if pending is not None:
            pending.append((previous, current, failures))


_breakers: dict[str, _SharedBreaker] = {}


def _namespace(host: str) -> str:
    # Under the channel prefix, so each test run (and each deployment sharing a Redis) has its own.
    return f"{config.current().channel_prefix}:breaker:{host}"


def breaker(host: str) -> _SharedBreaker:
    """The circuit breaker of one host, its state in Redis (shared by all workers)."""
    settings, client, namespace = config.current(), pubsub.client(), _namespace(host)
    cb = _breakers.get(namespace)
    if cb is None or cb.redis is not client:
        cb = _breakers[namespace] = _SharedBreaker(
            client,
            namespace,
            # A refusal (4xx), or a request to wait, says nothing bad of the service's
            # health: it answered.
            exclude=[PermanentError, Held],
            listeners=[_ReportStateChanges()],
            name=host,
        )
    cb.fail_max, cb.reset_timeout = settings.breaker_fail_max, settings.breaker_reset_timeout_s
    return cb


def reset_breaker(host: str) -> None:
    """Forget a host's breaker state in Redis (closed again, no failures counted)."""
    namespace = _namespace(host)
    keys = list(pubsub.client().scan_iter(f"{namespace}:*"))
    if keys:
        pubsub.client().delete(*keys)
    _breakers.pop(namespace, None)


def _call(ctx: Context, method: str, url: str, payload=None) -> dict:
    """One HTTP call through the host's breaker; the answer's JSON object.

    A change of the breaker's state that this call caused is recorded on the job. (pybreaker
    holds a per-breaker lock during the call: calls to one host from the threads of one
    process take turns; Celery's prefork workers run one job per process anyway.)
    """
    host = netguard.service_name(url)
    if method == "POST":
        room_for_job(host)
    else:
        _room_for_poll(ctx, host)
    changes: list = []
    token = _changes.set(changes)
    try:
        return breaker(host).call(_request, method, url, payload, ctx.job_id)
    except pybreaker.CircuitBreakerError:
        raise TransientError(f"circuit open for {host}: the service keeps failing") from None
    finally:
        _changes.reset(token)
        for previous, current, failures in changes:
            ctx.circuit_changed(host, previous, current, failures)


def _hold_key(host: str) -> str:
    return f"{config.current().channel_prefix}:http-hold:{host}"


def _room(host: str) -> tuple[str, float]:
    """Take a call of the host's shared rate: `("", 0)`, or why not and for how long (its
    hold after `Retry-After`, or its rate's window full; then nothing is taken)."""
    remaining_ms = pubsub.client().pttl(_hold_key(host))
    if remaining_ms > 0:
        return f"{host} asked to wait (Retry-After)", remaining_ms / 1000
    rate = config.current().host_rate(host)
    if not rate:
        return "", 0.0
    limit, limiter = limits.parse(rate), _limiter()
    if not limiter.hit(limit, "http-host", host):
        reset_at = limiter.get_window_stats(limit, "http-host", host).reset_time
        return f"{host} is at its rate of {rate}", max(0.05, reset_at - time.time())
    return "", 0.0


def room_for_job(host: str) -> None:
    """A job's first call: without room, the job waits in Postgres (`Held`), no slot held."""
    why, wait_s = _room(host)
    if why:
        raise Held(why, wait_s)


def _room_for_poll(ctx: Context, host: str) -> None:
    """A started generation's poll waits for room in the worker instead: holding the job
    would give up work under way at the service, and jobs that each need a few calls in a
    row could keep taking each other's room (none finishing). Cancel is still honoured, and
    the job's timeout bounds the wait."""
    while True:
        why, wait_s = _room(host)
        if not why:
            return
        wait(wait_s, ctx)


_limiters: dict[str, MovingWindowRateLimiter] = {}


def _limiter() -> MovingWindowRateLimiter:
    """The hosts' shared rate limiter (its windows in Redis, under the channel prefix)."""
    settings = config.current()
    key = f"{settings.redis_url} {settings.channel_prefix}"
    if key not in _limiters:
        storage = storage_from_string(settings.redis_url,
                                      key_prefix=f"{settings.channel_prefix}:http-rate")
        _limiters[key] = MovingWindowRateLimiter(storage)
    return _limiters[key]


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """The seconds a `Retry-After` header asks for (delta-seconds or an HTTP date), cut to
    HTTP_MAX_RETRY_AFTER_S; None if absent or not understood."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), config.current().http_max_retry_after_s)


def _hold_host(host: str, seconds: float) -> None:
    """Hold the host for every worker: a longer hold already set stays."""
    key, ms = _hold_key(host), max(1, int(seconds * 1000))
    client = pubsub.client()
    if client.pttl(key) < ms:
        client.set(key, 1, px=ms)


def _request(method: str, url: str, payload, job_id: str) -> dict:
    """One call, following at most `MAX_REDIRECTS` redirects, each target checked first.

    A POST carries the job's id as `Idempotency-Key`, so the service can tell a retried or
    redelivered attempt from a new generation.
    """
    headers = {"Idempotency-Key": job_id} if method == "POST" else {}
    for _ in range(MAX_REDIRECTS + 1):
        check_target(url)
        with send(method, url, payload, headers) as resp:
            location = resp.headers.get("Location")
            if resp.status_code not in REDIRECTS or not location:
                return _answer(f"{method} {netguard.redact(url)}", resp,
                               netguard.service_name(url))
        url = urljoin(url, location)
        if resp.status_code not in (307, 308):  # the others become a GET, as in browsers
            method, payload, headers = "GET", None, {}
    raise PermanentError(
        f"{method} {netguard.redact(url)}: more than {MAX_REDIRECTS} redirects",
        code="TOO_MANY_REDIRECTS",
    )


def send(method: str, url: str, payload, headers: dict) -> requests.Response:
    """Send one request through the checked session; the answer is streamed, not yet read."""
    settings = config.current()
    timeout = (settings.http_connect_timeout_s, settings.http_read_timeout_s)
    try:
        with netguard.session() as session:
            return session.request(method, url, json=payload, headers=headers, timeout=timeout,
                                   stream=True, allow_redirects=False)
    except netguard.AddressNotAllowed as exc:
        # The socket reached another address than the one checked (DNS rebinding, say).
        raise _refused(url, exc) from None
    except requests.RequestException as exc:
        raise TransientError(f"{method} {netguard.redact(url)}: {type(exc).__name__}") from exc


def raise_for_answer(where: str, resp: requests.Response, host: str) -> None:
    """Raise what an answer that is not a success means: a 429 or 503 with `Retry-After`
    holds the host (`Held`), other 429s and 5xx are transient, other 4xx permanent."""
    if resp.status_code in (429, 503):
        wait_s = retry_after_s(resp.headers.get("Retry-After"))
        if wait_s is not None:
            _hold_host(host, wait_s)
            raise Held(f"{where}: HTTP {resp.status_code}, Retry-After {wait_s:g} s", wait_s)
    if resp.status_code == 429 or resp.status_code >= 500:
        raise TransientError(f"{where}: HTTP {resp.status_code}")
    if resp.status_code >= 400:
        raise PermanentError(f"{where}: HTTP {resp.status_code}: {excerpt(_read(where, resp))}")


def _answer(where: str, resp: requests.Response, host: str) -> dict:
    """The service's JSON object, or the failure (or the wait) its answer means."""
    raise_for_answer(where, resp, host)
    return json_object(where, _read(where, resp), "the answer")


def json_object(where: str, raw, what: str) -> dict:
    """The JSON object `raw` holds, or a permanent failure naming `what` it was."""
    try:
        value = json.loads(raw)
    except ValueError:
        raise PermanentError(f"{where}: {what} is not JSON") from None
    if not isinstance(value, dict):
        raise PermanentError(f"{where}: {what} is not a JSON object")
    return value


def _read(where: str, resp: requests.Response) -> bytes:
    """The answer's body, read until `HTTP_MAX_RESPONSE_BYTES` and not a byte further."""
    limit = config.current().http_max_response_bytes
    too_large = PermanentError(f"{where}: the answer is larger than {limit} bytes",
                               code="RESPONSE_TOO_LARGE")
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        for chunk in resp.iter_content(READ_CHUNK):
            body += chunk
            if len(body) > limit:
                raise too_large
    except requests.RequestException as exc:
        raise TransientError(f"{where}: {type(exc).__name__} while reading") from exc
    return bytes(body)


def excerpt(value) -> str:
    """A short excerpt of remote text, printable characters only, for an error message.

    Remote bodies never go into errors, results or logs whole: a refusal's text may be
    anything, up to a whole page of another service. A secret the call carries is replaced
    before the text is cut (a 401 may echo the key it was sent; cut first, a piece of it
    would stay).
    """
    hidden = _secrets.get()
    if not isinstance(value, bytes | str):
        raw = str(value)
    else:
        raw = value if hidden else value[: EXCERPT_CHARS * 4]
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    for secret in hidden:
        text = text.replace(secret, REDACTED)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "\u2026"


@contextmanager
def keeping(secret: str | None):
    """While the block runs, `secret` (a key the calls carry) is kept out of the excerpts of
    remote text, and out of whatever the block raises: the job's error, its events and the
    worker's log show `[redacted]` instead."""
    if not secret:
        yield
        return
    token = _secrets.set((*_secrets.get(), secret))
    try:
        yield
    except BaseException as exc:
        clean = scrubbed(exc, secret)
        if clean is exc:
            raise
        raise clean from None
    finally:
        _secrets.reset(token)


def _chain(exc: BaseException | None):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _text(exc: BaseException) -> str:
    """Every text of an exception and of what led to it (messages and arguments)."""
    return "\n".join(" ".join([str(e), *map(str, e.args)]) for e in _chain(exc))


def scrubbed(exc: BaseException, secret: str) -> BaseException:
    """`exc` with `secret` replaced in its messages and its chain's (its class, code and
    delay kept); if it still shows somewhere, the chain is cut, and failing that, a permanent
    failure that says only what it was."""
    if secret not in _text(exc):
        return exc
    for e in _chain(exc):
        e.args = tuple(a.replace(secret, REDACTED) if isinstance(a, str) else a for a in e.args)
    if secret in _text(exc):  # a message not made of its arguments (OSError), say
        exc.__cause__ = exc.__context__ = None
        exc.__suppress_context__ = True
    if secret in _text(exc):
        return PermanentError(f"{type(exc).__name__} (its message held a secret: withheld)")
    return exc


def _refused(url: str, exc: netguard.AddressNotAllowed) -> PermanentError:
    log.warning("http: refused %s: %s", netguard.redact(url), exc)
    return PermanentError(f"{exc.target}: {exc.reason}", code="ADDRESS_NOT_ALLOWED")


def check_target(url: str) -> None:
    """Refuse a URL outside `HTTP_ALLOWED_HOSTS` or whose host has a refused address."""
    if not isinstance(url, str) or not re.match(URL_PATTERN, url):  # a service's poll_url, say
        raise PermanentError("not a valid http(s) URL (whitespace or control characters?)")
    try:
        _check_host(url)
        netguard.check_url(url)
    except netguard.AddressNotAllowed as exc:
        raise _refused(url, exc) from None
    except socket.gaierror:
        # Not resolvable now, maybe soon: a failure of the service, as a refused connection is.
        raise TransientError(f"{netguard.redact(url)}: its host does not resolve") from None
    except (ValueError, UnicodeError):
        raise PermanentError(f"not a valid URL: {excerpt(netguard.redact(url))}") from None


def _check_host(url: str) -> None:
    allowed = config.current().http_allowed_hosts
    host = urlsplit(url).hostname or ""
    if allowed and host not in {h.strip() for h in allowed.split(",")}:
        raise PermanentError(f"host {host!r} is not in HTTP_ALLOWED_HOSTS")


def _fraction(value) -> float | None:
    """A service's progress as a number, or None when it sent something else."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class Http:
    """Calls an external generation service and polls it until it is done."""

    name = "http"
    io_bound = True
    params_schema = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "pattern": URL_PATTERN, "maxLength": 2000},
            "payload": {"type": "object"},
            "poll_url": {"type": "string", "pattern": URL_PATTERN, "maxLength": 2000},
        },
        "required": ["url"],
        "additionalProperties": False,
    }

    def run(self, params: dict, ctx: Context) -> Output:
        answer = _call(ctx, "POST", params["url"], params.get("payload", {}))
        poll_url, delay = None, POLL_START_S
        while str(answer.get("status", "completed")).lower() not in FINAL:
            # The service names the job once, in its first answer; later ones may not.
            poll_url = poll_url or self._poll_url(params, answer)
            progress = _fraction(answer.get("progress"))
            if progress is not None:
                ctx.progress(progress, f"service: {excerpt(answer.get('status'))}")
            wait(delay, ctx)
            delay = min(delay * 2, POLL_MAX_S)
            answer = _call(ctx, "GET", poll_url)
        if str(answer.get("status")).lower() in {"failed", "error"}:
            raise PermanentError(f"the service failed the job: {excerpt(answer.get('error'))}")
        result_url = answer.get("result_url")
        if result_url is not None and not isinstance(result_url, str):
            raise PermanentError("the service's result_url is not a string")
        return Output(result=answer.get("result", answer), result_url=result_url)

    def _poll_url(self, params: dict, answer: dict) -> str:
        """Where to poll: the job's `poll_url` or the service's, checked like any target."""
        template = params.get("poll_url") or answer.get("poll_url")
        if not template or not isinstance(template, str):
            raise PermanentError("the service answered a pending status but gave no poll_url")
        # Quoted: the service's id stays one path segment of the template's URL.
        return template.replace("{id}", quote(str(answer.get("id", "")), safe=""))
