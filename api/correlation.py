"""The correlation id of a request: taken from `X-Correlation-ID` or made, logged, echoed.

It is bound to the log context for the request (with the job or agent id of the route), given
to the jobs and commands the request creates, and sent back in the response header, so one id
follows a job from HTTP to the worker to the relay.
"""

from __future__ import annotations

import uuid

from flask import Flask, g, request

from api.body import header, printable
from app import logs

HEADER = "X-Correlation-ID"


def correlation_id() -> str:
    """This request's correlation id."""
    return g.correlation_id


def for_new_rows() -> str:
    """The correlation id to store on the jobs and commands this request creates: a
    malformed `X-Correlation-ID` is refused (422) here, where it would be stored."""
    header(HEADER)
    return correlation_id()


def bind(**fields) -> None:
    """Add fields (a job id once it exists) to this request's log context."""
    g.log_tokens.append(logs.bind(**fields))


def _begin() -> None:
    supplied = request.headers.get(HEADER)
    # A malformed header gets a fresh id for the logs; `for_new_rows` refuses it.
    g.correlation_id = supplied if supplied and printable(supplied) else str(uuid.uuid4())
    args = request.view_args or {}
    g.log_tokens = [
        logs.bind(
            correlation_id=g.correlation_id, job_id=args.get("job_id"),
            agent_id=args.get("agent_id"), command_id=args.get("command_id"),
        )
    ]


def _echo(response):
    if "correlation_id" in g:
        response.headers[HEADER] = g.correlation_id
    return response


def _end(_exc=None) -> None:
    for token in reversed(g.pop("log_tokens", [])):
        logs.reset(token)


def install(app: Flask) -> None:
    """Bind the correlation id first thing in every request; echo it; unbind at the end."""
    app.before_request_funcs.setdefault(None, []).insert(0, _begin)
    app.after_request(_echo)
    app.teardown_request(_end)
