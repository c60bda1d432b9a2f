"""What Postgres can store of a run's output: checked before the outcome transaction.

A generator's result, its `result_url`, an artifact's content type and a progress message
come from code we do not control or from a remote service's answer. Postgres refuses some
of it (a NUL character in `text` or `jsonb`, a lone surrogate, an infinite number) and some
is only unwise to keep (megabytes of JSON on the job row and in its event, nesting that
exhausts a reader's stack). A refused write would roll the outcome back and leave the job
`processing` until the orphan sweep ran it again, to fail the same way; checked first, the
attempt ends `failed` with a code instead.

Pure functions. A message names the field and the fault, never the value itself (it is
what could not be stored, and may be hostile).
"""

from __future__ import annotations

import json
import math

from app.generators import Output

OUTPUT_NOT_STORABLE = "OUTPUT_NOT_STORABLE"
RESULT_TOO_LARGE = "RESULT_TOO_LARGE"

# The same bound as a request body's (api/body.py): what a client may send, a generator may
# answer. Deeper nesting is no result anyone reads, and costs stack in every parser on the way.
MAX_DEPTH = 64
MAX_URL_CHARS = 2048
MAX_CONTENT_TYPE_CHARS = 255
MAX_MESSAGE_CHARS = 4000


class NotStorable(Exception):
    """A run's output that Postgres cannot (or should not) store; ends the attempt `failed`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def text_fault(text: str) -> str | None:
    """Why Postgres could not store this string, or None."""
    if "\x00" in text:
        return "holds a NUL character"
    try:
        text.encode("utf-8")  # strict: a lone surrogate ("\ud800") has no UTF-8 form
    except UnicodeEncodeError:
        return "holds a lone surrogate (not valid Unicode)"
    return None


def _tree_fault(value) -> str | None:
    """Why this JSON value could not be stored, or None. Iterative: a deep value cannot
    exhaust the interpreter's stack."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nests deeper than {MAX_DEPTH} levels"
        if node is None or isinstance(node, bool | int):
            continue
        if isinstance(node, float):
            if not math.isfinite(node):
                return "holds a number that is not finite"
        elif isinstance(node, str):
            if fault := text_fault(node):
                return f"{fault} in a string"
        elif isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    return f"has a key of type {type(key).__name__}, not a string"
                if fault := text_fault(key):
                    return f"{fault} in a key"
                stack.append((child, depth + 1))
        elif isinstance(node, list | tuple):
            stack.extend((child, depth + 1) for child in node)
        else:
            return f"holds a {type(node).__name__}, which is not JSON"
    return None


def check_result(result, max_bytes: int) -> None:
    """The job's `result`: JSON that Postgres' jsonb holds, at most `max_bytes` encoded."""
    if fault := _tree_fault(result):
        raise NotStorable(OUTPUT_NOT_STORABLE, f"the generator's result {fault}")
    try:
        size = len(json.dumps(result, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except ValueError:  # an integer of more digits than Python will write (sys.int_info)
        raise NotStorable(OUTPUT_NOT_STORABLE, "the generator's result is not JSON") from None
    if size > max_bytes:
        raise NotStorable(
            RESULT_TOO_LARGE,
            f"the generator's result is {size} bytes of JSON, over MAX_RESULT_BYTES ({max_bytes})",
        )


def check_text(field: str, value, max_chars: int) -> None:
    """A text column's value (`result_url`, a content type, a progress message), if given."""
    if value is None:
        return
    if not isinstance(value, str):
        raise NotStorable(OUTPUT_NOT_STORABLE, f"{field} is a {type(value).__name__}, not text")
    if fault := text_fault(value):
        raise NotStorable(OUTPUT_NOT_STORABLE, f"{field} {fault}")
    if len(value) > max_chars:
        raise NotStorable(RESULT_TOO_LARGE, f"{field} is {len(value)} characters, over {max_chars}")


def check_output(output, max_result_bytes: int) -> None:
    """Everything the outcome transaction will write of a generator's `Output`."""
    if not isinstance(output, Output):
        raise NotStorable(
            OUTPUT_NOT_STORABLE, f"the generator returned a {type(output).__name__}, not an Output"
        )
    check_result(output.result, max_result_bytes)
    check_text("result_url", output.result_url, MAX_URL_CHARS)
    if output.artifact is not None:
        content_type, body = output.artifact
        check_text("the artifact's content type", content_type, MAX_CONTENT_TYPE_CHARS)
        if not isinstance(body, bytes | bytearray | memoryview):
            raise NotStorable(
                OUTPUT_NOT_STORABLE, f"the artifact is a {type(body).__name__}, not bytes"
            )


def printable(message: str, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """An error message Postgres can store: NUL and lone surrogates become U+FFFD, cut short.

    Error messages are ours to write (often from an exception a generator or a service
    raised), so they are mended rather than refused: the attempt's outcome must commit.
    """
    text = str(message)[:max_chars]
    if text_fault(text) is None:
        return text
    return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in text)
