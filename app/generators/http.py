"""The `http` generator: drive an external generation service, poll it, keep its result URL.

The service protocol it speaks: `POST url` with the JSON `payload` answers a JSON object
with `status` (`queued`, `processing`, `completed` or `failed`) and, until it is done, an `id`;
the job polls `poll_url` (where `{id}` is replaced by that id) until the status is final.
A final answer carries `result_url` and/or `result`, or `error` when it failed.

Connection errors, timeouts, 429 and 5xx answers are transient (the job retries with
backoff); other 4xx answers are permanent. A circuit breaker per host, its state in Redis
so every worker shares it, stops hammering a service that keeps failing: while it is open,
attempts fail fast as transient. Each change of its state is a `circuit_breaker.state.changed`
event of the job whose call changed it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import urlsplit

import pybreaker
import redis
import requests

from app import config, pubsub
from app.generators import Context, Output, PermanentError, TransientError, wait

log = logging.getLogger(__name__)

FINAL = {"completed", "succeeded", "failed", "error"}
POLL_START_S, POLL_MAX_S = 0.2, 5.0

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
            # A refusal (4xx) says nothing bad of the service's health: it answered.
            exclude=[PermanentError],
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
    host = urlsplit(url).netloc
    changes: list = []
    token = _changes.set(changes)
    try:
        return breaker(host).call(_request, method, url, payload)
    except pybreaker.CircuitBreakerError:
        raise TransientError(f"circuit open for {host}: the service keeps failing") from None
    finally:
        _changes.reset(token)
        for previous, current, failures in changes:
            ctx.circuit_changed(host, previous, current, failures)


def _request(method: str, url: str, payload) -> dict:
    try:
        settings = config.current()
        timeout = (settings.http_connect_timeout_s, settings.http_read_timeout_s)
        resp = requests.request(method, url, json=payload, timeout=timeout)
    except requests.RequestException as exc:
        raise TransientError(f"{method} {url}: {type(exc).__name__}") from exc
    if resp.status_code == 429 or resp.status_code >= 500:
        raise TransientError(f"{method} {url}: HTTP {resp.status_code}")
    if resp.status_code >= 400:
        raise PermanentError(f"{method} {url}: HTTP {resp.status_code}: {resp.text[:300]}")
    try:
        body = resp.json()
    except ValueError:
        raise PermanentError(f"{method} {url}: the answer is not JSON") from None
    if not isinstance(body, dict):
        raise PermanentError(f"{method} {url}: the answer is not a JSON object")
    return body


def _check_host(url: str) -> None:
    allowed = config.current().http_allowed_hosts
    host = urlsplit(url).hostname or ""
    if allowed and host not in {h.strip() for h in allowed.split(",")}:
        raise PermanentError(f"host {host!r} is not in HTTP_ALLOWED_HOSTS")


class Http:
    """Calls an external generation service and polls it until it is done."""

    name = "http"
    params_schema = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "pattern": "^https?://", "maxLength": 2000},
            "payload": {"type": "object"},
            "poll_url": {"type": "string", "pattern": "^https?://", "maxLength": 2000},
        },
        "required": ["url"],
        "additionalProperties": False,
    }

    def run(self, params: dict, ctx: Context) -> Output:
        _check_host(params["url"])
        answer = _call(ctx, "POST", params["url"], params.get("payload", {}))
        poll_url, delay = None, POLL_START_S
        while str(answer.get("status", "completed")).lower() not in FINAL:
            # The service names the job once, in its first answer; later ones may not.
            poll_url = poll_url or self._poll_url(params, answer)
            if "progress" in answer:
                ctx.progress(float(answer["progress"]), f"service: {answer.get('status')}")
            wait(delay, ctx)
            delay = min(delay * 2, POLL_MAX_S)
            answer = _call(ctx, "GET", poll_url)
        if str(answer.get("status")).lower() in {"failed", "error"}:
            raise PermanentError(f"the service failed the job: {answer.get('error')}")
        return Output(result=answer.get("result", answer), result_url=answer.get("result_url"))

    def _poll_url(self, params: dict, answer: dict) -> str:
        template = params.get("poll_url") or answer.get("poll_url")
        if not template:
            raise PermanentError("the service answered a pending status but gave no poll_url")
        url = template.replace("{id}", str(answer.get("id", "")))
        _check_host(url)
        return url
