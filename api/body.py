"""Reading request bodies and headers safely: every malformed input is a 4xx, never a 500."""

from __future__ import annotations

import json
import math

from flask import request

from api.errors import ApiError

MAX_DEPTH = 64
_HEADER_OK = set(range(0x21, 0x7F))


def _invalid(message: str, field: str, why: str) -> ApiError:
    """A 422 naming the one field at fault."""
    return ApiError(422, "VALIDATION_ERROR", message, {field: [why]})


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _text_fault(text: str) -> str | None:
    """Why Postgres could not store this string, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. "\ud800" escaped in the JSON
        return "is not valid Unicode (a lone surrogate)"
    return None


def _check_tree(value) -> None:
    """Refuse what Postgres' jsonb cannot hold (NUL characters, lone surrogates, infinite
    numbers) and absurd nesting.

    Iterative, so a hostile document cannot exhaust the interpreter's stack.
    """
    stack = [(value, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _invalid(
                "JSON nested too deeply",
                ".".join(path.split(".")[:2]) or "_schema",
                f"deeper than {MAX_DEPTH} levels",
            )
        if isinstance(node, str) and (fault := _text_fault(node)):
            raise _invalid("a string Postgres cannot store", path or "_schema", fault)
        if isinstance(node, float) and not math.isfinite(node):
            # 1e400 parses as infinity, which no JSON column (nor JSON itself) can hold.
            raise _invalid("number out of range", path or "_schema", "not a finite number")
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for key, child in items:
            if isinstance(key, str) and (fault := _text_fault(key)):
                raise _invalid("a key Postgres cannot store", path or "_schema", f"a key {fault}")
            stack.append((child, f"{path}.{key}" if path else str(key), depth + 1))


def json_body(optional: bool = False) -> dict:
    """The request's JSON object; `{}` for an absent body when `optional`."""
    raw = request.get_data(cache=True)
    if not raw:
        if optional:
            return {}
        raise _invalid("a JSON body is required", "_schema", "missing body")
    if request.mimetype != "application/json":
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "the body must be application/json")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(
            400, "BAD_JSON", "the body is not valid JSON", {"_schema": [str(exc)[:200]]}
        ) from None
    if not isinstance(data, dict):
        raise _invalid("the body must be a JSON object", "_schema", "expected an object")
    _check_tree(data)
    return data


def printable(value: str, max_len: int = 255) -> bool:
    """Whether a header value is 1 to `max_len` printable ASCII characters, no spaces."""
    return bool(value) and len(value) <= max_len and all(ord(c) in _HEADER_OK for c in value)


def header(name: str, max_len: int = 255) -> str | None:
    """A printable-ASCII header value of at most `max_len` characters, or None if absent."""
    value = request.headers.get(name)
    if value is None:
        return None
    if not printable(value, max_len):
        raise _invalid(
            f"bad {name} header", name, f"1-{max_len} printable ASCII characters, no spaces"
        )
    return value


def query_args() -> dict:
    """The query string as a dict, refused first if a parameter is given twice or holds a NUL
    character (what marshmallow would otherwise read past or store)."""
    repeated = [key for key, values in request.args.lists() if len(values) > 1]
    if repeated:
        raise _invalid("a query parameter given twice", repeated[0], "give it once")
    args = request.args.to_dict()
    for key, value in args.items():
        if "\x00" in key or "\x00" in value:
            raise _invalid(
                "NUL character in the query", key.replace("\x00", ""), "contains a NUL character"
            )
    return args
