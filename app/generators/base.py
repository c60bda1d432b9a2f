"""The generator plugin interface and its registry (re-exported by `app.generators`).

A generator has a `name`, a JSON Schema for its `params` and a `run(params, ctx)` that
returns a `Output` or raises `TransientError` (retried with backoff) or `PermanentError`.
Third-party generators register through the `orchestra.generators` entry point group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from jsonschema import Draft202012Validator

from app import plugins
from app.errors import ValidationFailed

ENTRY_POINT_GROUP = "orchestra.generators"


class TransientError(Exception):
    """A failure worth retrying (a timeout, a 503 from a service)."""


class Held(Exception):
    """The service asked the job to wait (`Retry-After`), or its host's shared rate is used
    up: the job goes back to `queued` for `delay_s`, its attempt not spent."""

    def __init__(self, message: str, delay_s: float):
        super().__init__(message)
        self.delay_s = delay_s


class PermanentError(Exception):
    """A failure no retry will mend (bad input, a refusal); `code` is the job's error code."""

    def __init__(self, message: str = "", code: str = "GENERATOR_ERROR"):
        super().__init__(message)
        self.code = code


class Cancelled(Exception):
    """The job was cancelled; raised by `Context` at a checkpoint."""


@dataclass
class Output:
    """What a run produced: the job's `result`, and optionally a URL and an artifact."""

    result: Any
    result_url: str | None = None
    artifact: tuple[str, bytes] | None = None  # (content type, body)


class Context(Protocol):
    """What a generator may ask of the run it is part of."""

    job_id: str
    attempt: int

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress (0..1); raises `Cancelled` if the job was cancelled."""

    def check_cancelled(self) -> None:
        """Raise `Cancelled` if the job was cancelled since the last check."""

    def append(self, text: str) -> None:
        """Stream text as the job's output: coalesced into `job.output.appended` events,
        written and published while the run goes on (`app/output.py`). Raises `Cancelled`
        once a write found the job cancelled."""

    def append_delta(self, value) -> None:
        """Stream one JSON value as a delta of the job's structured output."""

    def circuit_changed(self, service: str, previous: str, current: str, failures: int) -> None:
        """Record a `circuit_breaker.state.changed` event that this run's call caused."""


class Generator(Protocol):
    name: str
    params_schema: dict
    # Optional, False unless set: the generator returns in microseconds, does no I/O and
    # reports no progress worth seeing live. Its job is then claimed, run and completed in
    # one transaction, and `processing` and `completed` are published together
    # (`app/runs.py`); anything it raises is judged as any run's failure.
    instant: bool
    # Optional, False unless set: the generator spends its run waiting on a remote service
    # (an HTTP poll, a model's stream). Its jobs go to the `io` queue, whose worker runs a
    # gevent pool (the Procfile's `io`): hundreds of such runs wait at once in one process.
    io_bound: bool

    def run(self, params: dict, ctx: Context) -> Output: ...


class TenantChecks(Protocol):
    """Optional, beside `Generator`: checks of params that depend on the tenant (a name of
    one of its own resources), run at submit once the params match the schema."""

    def check_for_tenant(self, tenant_id, params: dict) -> dict[str, list[str]]:
        """What is wrong, by field (`params.<name>`); empty when nothing is."""


CANCEL_CHECK_S = 0.5


def wait(seconds: float, ctx: Context) -> None:
    """Sleep `seconds`, checking for cancel at least every `CANCEL_CHECK_S`."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, CANCEL_CHECK_S))
        ctx.check_cancelled()


_registry: dict[str, Generator] = {}
_validators: dict[str, Draft202012Validator] = {}
_loaded_entry_points = False


def register(generator: Generator) -> Generator:
    """Add a generator to the registry (its schema is checked once, here)."""
    Draft202012Validator.check_schema(generator.params_schema)
    _registry[generator.name] = generator
    _validators[generator.name] = Draft202012Validator(generator.params_schema)
    return generator


def _load_entry_points() -> None:
    global _loaded_entry_points
    if not _loaded_entry_points:
        _loaded_entry_points = True
        plugins.load_entry_points(ENTRY_POINT_GROUP, register)


def all_generators() -> dict[str, Generator]:
    """Every registered generator by name (built-ins and entry points)."""
    _load_entry_points()  # the built-ins registered themselves as `app.generators` loaded
    return dict(_registry)


def find(kind: str) -> Generator | None:
    """The generator for `kind`, or None: a lookup without `all_generators`' copy (a job's
    hot path asks once or twice a job)."""
    _load_entry_points()
    return _registry.get(kind)


def get(kind: str) -> Generator:
    """The generator for `kind`, or `ValidationFailed` naming the known ones."""
    generator = find(kind)
    if generator is None:
        known = ", ".join(sorted(all_generators()))
        raise ValidationFailed("unknown job kind", {"kind": [f"unknown kind; known: {known}"]})
    return generator


def validate_params(kind: str, params: Any) -> None:
    """Check `params` against the generator's JSON Schema, field by field."""
    get(kind)
    details = plugins.schema_errors(_validators[kind], params, "params")
    if details:
        raise ValidationFailed("params rejected by the generator", details)
