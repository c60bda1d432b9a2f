"""The named examples of the OpenAPI document: for every operation, the request a client sends
and the answers the API gives, as docs/api.md summarises them.

They tell one story (a tenant `acme`, one sleep job, one echo agent called `scribe`), with the
values a real run gave. Tests keep them true: each is validated against its own schema in the
document, and the requests are replayed against the real app, which must answer with the
documented status and the same fields (tests/integration/test_openapi_examples.py).

Query parameters carry their examples by name: the parameters whose examples share a name
make one request together (`filter`: `status=queued&kind=sleep&limit=20`).
"""

from __future__ import annotations

from api.openapi_examples.agents import agents
from api.openapi_examples.jobs import jobs
from api.openapi_examples.operations import OPERATIONS
from api.openapi_examples.refusals import shared_errors


def examples() -> dict[tuple[str, str], dict]:
    """By (method, path): `{"request": named body examples, "parameters": {name: named
    examples}, "responses": {status: named examples}}`."""
    return {**jobs(), **agents(), **OPERATIONS}


__all__ = ["examples", "shared_errors"]
