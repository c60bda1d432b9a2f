"""Each route's contract declared once, on the route (flask-smorest over apispec and marshmallow).

A view says what it reads (`@blp.arguments(Schema, location=...)`), what it answers
(`@blp.response(status, Schema)`: the body is dumped through the schema the document shows) and
how it refuses (`@blp.refuses(404, 409)`). Here, the few places where this house differs from
flask-smorest's defaults:

- bodies and query strings are read by `api/body.py` (415, `BAD_JSON`, NUL characters, depth,
  a parameter given twice), and a schema's refusal is our error envelope, field by field;
- our error handlers (`api/errors.py`) answer every failure, not flask-smorest's;
- the refusals every route of a blueprint shares (401, 403, 429, 503 for a keyed blueprint,
  414 for every route, 400/413/415/422 for a body) are added to each operation by its blueprint;
- the document is served by `api/openapi.py`, with the named examples of each blueprint.
"""

from __future__ import annotations

import re

import flask_smorest
from webargs.flaskparser import FlaskParser

from api import body
from api.errors import ApiError, flatten
from api.schemas import ErrorEnvelopeSchema

# The words of each refusal in the document.
_REFUSALS = {
    400: "the body is not JSON",
    401: "missing or unknown key",
    403: "the key lacks the scope",
    404: "no such thing for this tenant",
    409: "the state does not allow it",
    413: "the body is over MAX_BODY_BYTES",
    415: "the body is not application/json",
    422: "invalid input, named field by field",
    429: "over the rate limit",
    503: "Postgres or Redis unreachable",
}
_KEYED = (401, 403, 429, 503)
_BODY = (400, 413, 415, 422)
_PATH_PARAM = re.compile(r"<(?:\w+:)?(\w+_id)>")


class Parser(FlaskParser):
    """webargs' Flask parser reading through `api/body.py`, refusing in our envelope."""

    __location_map__ = {
        **FlaskParser.__location_map__,
        # A body that may be left out (`{}` then): POST /cancel, /retry, /start...
        "optional_json": "load_optional_json",
    }

    def __init__(self):
        super().__init__(unknown=None)  # each schema's own `Meta.unknown` (RAISE) decides

    def load_json(self, req, schema):
        return body.json_body()

    def load_optional_json(self, req, schema):
        return body.json_body(optional=True)

    def load_querystring(self, req, schema):
        return body.query_args()

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        # webargs wraps the messages in their location; the envelope names fields alone.
        (messages,) = error.messages.values()
        raise ApiError(422, "VALIDATION_ERROR", "invalid request", flatten(messages))


class Blueprint(flask_smorest.Blueprint):
    """A blueprint whose operations carry its tag, its security and the refusals it shares.

    `area` is the scope area its bearer keys need (`jobs`, `agents`); None for the public
    operations routes. `examples` returns its named examples by (method, path)."""

    ARGUMENTS_PARSER = Parser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "optional_json": "application/json",
    }

    def __init__(self, name, import_name, *, tag: str, area: str | None, examples, **kwargs):
        super().__init__(name, import_name, **kwargs)
        self.tag, self.area, self.examples = tag, area, examples
        self._prepare_doc_cbks.append(self._prepare_refusals_doc)

    def add_url_rule(self, rule, endpoint=None, view_func=None, provide_automatic_options=None,
                     *, parameters=None, tags=None, **options):
        # Every `<..._id>` in a path is a UUID (the services answer 404 for any other string).
        ids = [
            {"in": "path", "name": name, "schema": {"type": "string", "format": "uuid"}}
            for name in _PATH_PARAM.findall(rule)
        ]
        super().add_url_rule(
            rule, endpoint, view_func, provide_automatic_options,
            parameters=ids + (parameters or []), tags=tags or [self.tag], **options,
        )

    def refuses(self, *statuses: int):
        """Document the refusals particular to a route (the shared ones come by themselves)."""

        def decorator(func):
            for status in statuses:
                func = self.alt_response(
                    status, schema=ErrorEnvelopeSchema, description=_REFUSALS[status]
                )(func)
            return func

        return decorator

    def _prepare_refusals_doc(self, doc, doc_info, *, method, **kwargs):
        """Add the refusals every route of this blueprint shares, and its security."""
        responses = {str(k): v for k, v in doc.setdefault("responses", {}).items()}
        with_body = method in ("post", "put", "patch")
        shared = [*(_KEYED if self.area else ()), *(_BODY if with_body else ())]
        for status in shared:
            responses.setdefault(str(status), _refusal(status))
        for status, response in responses.items():
            if isinstance(response, str):  # smorest's reference (arguments' 422): inline ours
                responses[status] = _refusal(int(status))
        responses.setdefault(
            "414", {"description": "request line longer than the server accepts (from gunicorn)"}
        )
        doc["responses"] = responses
        doc["security"] = [{"bearer": []}] if self.area else []
        return doc


def _refusal(status: int) -> dict:
    return {
        "description": _REFUSALS[status],
        "content": {"application/json": {"schema": ErrorEnvelopeSchema}},
    }


class Api(flask_smorest.Api):
    """flask-smorest's `Api` for the document only: our error handlers answer failures, and
    tags are the three the docs page groups by, not one per blueprint."""

    ERROR_SCHEMA = ErrorEnvelopeSchema
    DEFAULT_ERROR_RESPONSE_NAME = None  # every refusal is named, none is a catch-all

    def _register_error_handlers(self):
        pass  # api/errors.py renders every failure in the one envelope

    # Pages are keyset cursors in the body and there are no ETags: flask-smorest's page and
    # ETag headers (and the PaginationMetadata schema they bring) have no place in the document.
    def _register_pagination_header(self):
        pass

    def _register_etag_headers(self):
        pass

    def register_blueprint(self, blp, *, parameters=None, **options):
        self._app.extensions["flask-smorest"]["blp_name_to_api"][blp.name] = self
        self._app.register_blueprint(blp, **options)
        blp.register_views_in_doc(self, self._app, self.spec, name=blp.name, parameters=parameters)
