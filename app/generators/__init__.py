"""Generators: the plugins that do a job's work, one per job `kind`.

A generator has a `name`, a JSON Schema for its `params` and a `run(params, ctx)` that
returns a `Output` or raises `TransientError` (retried with backoff) or `PermanentError`.
Third-party generators register through the `orchestra.generators` entry point group and
import what they need from here. The interface and registry live in `base` (which the
built-ins import, so nothing imports back up), the built-ins in `builtin`, `http`, `image`.
"""

from app.errors import ValidationFailed  # what `validate_params` raises, for plugins
from app.generators import builtin  # noqa: F401 - registers the built-ins
from app.generators.base import (
    CANCEL_CHECK_S,
    ENTRY_POINT_GROUP,
    Cancelled,
    Context,
    Generator,
    Held,
    Output,
    PermanentError,
    TransientError,
    all_generators,
    find,
    get,
    register,
    validate_params,
    wait,
)

__all__ = [
    "CANCEL_CHECK_S",
    "ENTRY_POINT_GROUP",
    "Cancelled",
    "Context",
    "Generator",
    "Held",
    "Output",
    "PermanentError",
    "TransientError",
    "ValidationFailed",
    "all_generators",
    "find",
    "get",
    "register",
    "validate_params",
    "wait",
]
