"""The `http` generator: drive an external generation service, poll it, keep its result URL.

The service protocol it speaks: `POST url` with the JSON `payload` answers a JSON object
with `status` (`queued`, `processing`, `completed` or `failed`) and, until it is done, an `id`;
the job polls `poll_url` (where `{id}` is replaced by that id) until the status is final.
A final answer carries `result_url` and/or `result`, or `error` when it failed.

Connection errors, timeouts, 429 and 5xx answers are transient (the job retries with
backoff); other 4xx answers are permanent. A circuit breaker per host stops hammering a
service that keeps failing: while it is open, attempts fail fast as transient.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pybreaker
import requests

from app import config
from app.generators import Context, Output, PermanentError, TransientError, wait

log = logging.getLogger(__name__)

FINAL = {"completed", "succeeded", "failed", "error"}
REQUEST_TIMEOUT_S = 10
POLL_START_S, POLL_MAX_S = 0.2, 5.0


class _LogStateChanges(pybreaker.CircuitBreakerListener):
    """Report every change of a breaker's state, as operators expect."""

    def state_change(self, cb, old_state, new_state):
        log.warning("circuit %s: %s -> %s", cb.name, old_state.name, new_state.name)


_breakers: dict[str, pybreaker.CircuitBreaker] = {}


def breaker(host: str) -> pybreaker.CircuitBreaker:
    """The circuit breaker of one host (per process)."""
    if host not in _breakers:
        _breakers[host] = pybreaker.CircuitBreaker(
            fail_max=5,
            reset_timeout=30,
            # A refusal (4xx) says nothing about the service's health.
            exclude=[PermanentError],
            listeners=[_LogStateChanges()],
            name=host,
        )
    return _breakers[host]


def _call(method: str, url: str, payload=None) -> dict:
    """One HTTP call through the host's breaker; the answer's JSON object."""
    host = urlsplit(url).netloc
    try:
        return breaker(host).call(_request, method, url, payload)
    except pybreaker.CircuitBreakerError:
        raise TransientError(f"circuit open for {host}: the service keeps failing") from None


def _request(method: str, url: str, payload) -> dict:
    try:
        resp = requests.request(method, url, json=payload, timeout=REQUEST_TIMEOUT_S)
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
        answer = _call("POST", params["url"], params.get("payload", {}))
        poll_url, delay = None, POLL_START_S
        while str(answer.get("status", "completed")).lower() not in FINAL:
            # The service names the job once, in its first answer; later ones may not.
            poll_url = poll_url or self._poll_url(params, answer)
            if "progress" in answer:
                ctx.progress(float(answer["progress"]), f"service: {answer.get('status')}")
            wait(delay, ctx)
            delay = min(delay * 2, POLL_MAX_S)
            answer = _call("GET", poll_url)
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
