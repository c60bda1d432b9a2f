"""Logging for every process: one JSON object per line (or text for humans), with context.

The context (correlation id, job, agent, command, task) lives in a `ContextVar`, bound by the
adapters (an API request, a Celery task) and read by the formatter when a line is written, so
a log call anywhere below them carries it without being passed anything.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from pythonjsonlogger.json import JsonFormatter

# The context fields, in the order a text line shows them.
FIELDS = ("correlation_id", "job_id", "agent_id", "command_id", "task_id")

# Never mutated in place: `bind` sets a new dict, so the empty default is safe to share.
_EMPTY: dict[str, str] = {}
_context: ContextVar[dict[str, str]] = ContextVar("orchestra_log_context", default=_EMPTY)


def bind(**fields) -> Token:
    """Add fields to this context (None values are left out); `reset(token)` undoes it."""
    added = {k: str(v) for k, v in fields.items() if v is not None}
    return _context.set({**_context.get(), **added})


def reset(token: Token) -> None:
    """Restore the context as it was before the `bind` that gave `token`."""
    _context.reset(token)


@contextmanager
def bound(**fields) -> Iterator[None]:
    """The fields bound for the duration of a block."""
    token = bind(**fields)
    try:
        yield
    finally:
        reset(token)


def current(name: str) -> str | None:
    """One field of the current context."""
    return _context.get().get(name)


class Json(JsonFormatter):
    """ts, level, logger, process, message, the bound context, then the call's `extra`."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{process}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="ts",
        )

    def add_fields(self, log_data, record, message_dict) -> None:
        super().add_fields(log_data, record, message_dict)
        for key, value in _context.get().items():
            log_data.setdefault(key, value)


class Text(logging.Formatter):
    """The human format: time, level, logger, pid, message, then the context as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = _context.get()
        pairs = " ".join(f"{k}={ctx[k]}" for k in FIELDS if k in ctx)
        return f"{line} {pairs}" if pairs else line


class GunicornAccessJson(Json):
    """Gunicorn's access line as fields (its atoms arrive as the record's mapping args).

    The request's own context is gone by the time gunicorn logs it, so the correlation id
    is read back from the response header the API set.
    """

    _ATOMS = {"method": "m", "path": "U", "query": "q", "status": "s", "remote_addr": "h",
              "duration_s": "L", "bytes": "B"}

    def add_fields(self, log_data, record, message_dict) -> None:
        super().add_fields(log_data, record, message_dict)
        atoms = record.args if isinstance(record.args, dict) else {}
        for key, atom in self._ATOMS.items():
            if atom in atoms:
                log_data[key] = atoms[atom]
        corr = atoms.get("{x-correlation-id}o")
        if corr and corr != "-":
            log_data["correlation_id"] = corr
        if atoms:
            log_data["message"] = "request"


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of `LOG_FORMAT` (`json` or `text`)."""
    return Text() if fmt == "text" else Json()


class _Ours(logging.StreamHandler):
    """Marks the handler this module installed, so a second `configure` replaces it."""


def configure(level: str, fmt: str, filters: tuple[logging.Filter, ...] = ()) -> None:
    """Send the root logger's records to stderr in `fmt`, at `level`; idempotent.

    Handlers others installed (pytest's, say) are left alone.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Ours)]:
        root.removeHandler(handler)
    handler = _Ours(sys.stderr)
    handler.setFormatter(formatter(fmt))
    for f in filters:
        handler.addFilter(f)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library warnings (Celery's, SQLAlchemy's) would otherwise print as bare text lines.
    logging.captureWarnings(True)
