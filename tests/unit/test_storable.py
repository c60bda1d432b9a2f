"""What Postgres can store of a run's output (`app/storable.py`): pure checks."""

from __future__ import annotations

import pytest

from app import storable
from app.generators import Output
from app.storable import NotStorable

OK_RESULTS = [None, 1, 1.5, "text", True, [1, [2, [3]]], {"a": {"b": ["é", "😀"]}}, (1, 2)]


@pytest.mark.parametrize("result", OK_RESULTS)
def test_plain_json_passes(result):
    storable.check_output(Output(result=result, result_url="https://cdn/x.png"), 1 << 20)


@pytest.mark.parametrize(
    "result,fault",
    [({"t": "a\x00b"}, "NUL character in a string"),
     ({"a\x00": 1}, "NUL character in a key"),
     (["\ud83d"], "lone surrogate"),
     ({"x": float("inf")}, "not finite"),
     ({"x": float("nan")}, "not finite"),
     ({1: "a"}, "key of type int"),
     ({"s": {1, 2}}, "holds a set"),
     ({"b": b"bytes"}, "holds a bytes"),
     pytest.param(10**5000, "not JSON", id="an int of 5001 digits")],
)
def test_what_postgres_refuses_is_not_storable(result, fault):
    with pytest.raises(NotStorable) as exc:
        storable.check_result(result, 1 << 20)
    assert exc.value.code == storable.OUTPUT_NOT_STORABLE and fault in exc.value.message


def test_depth_is_bounded_without_recursion():
    deep = "leaf"
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    with pytest.raises(NotStorable, match="deeper than 64 levels"):
        storable.check_result(deep, 1 << 30)
    at_limit = "leaf"
    for _ in range(storable.MAX_DEPTH):
        at_limit = {"k": at_limit}
    storable.check_result(at_limit, 1 << 20)


def test_size_is_the_encoded_json_in_bytes():
    storable.check_result("é" * 10, 22)  # 20 bytes of UTF-8 and two quotes
    with pytest.raises(NotStorable) as exc:
        storable.check_result("é" * 10, 21)
    assert exc.value.code == storable.RESULT_TOO_LARGE
    assert "22 bytes" in exc.value.message and "MAX_RESULT_BYTES (21)" in exc.value.message


@pytest.mark.parametrize(
    "output,fault",
    [(Output(result={}, result_url="https://x/\x00"), "result_url holds a NUL"),
     (Output(result={}, result_url=42), "result_url is a int"),
     (Output(result={}, artifact=("image/\ud800", b"")), "content type holds a lone surrogate"),
     (Output(result={}, artifact=("image/png", "not bytes")), "artifact is a str"),
     ({"result": 1}, "returned a dict, not an Output")],
)
def test_the_rest_of_an_output_is_checked_too(output, fault):
    with pytest.raises(NotStorable, match=fault):
        storable.check_output(output, 1 << 20)


def test_a_long_result_url_is_too_large():
    with pytest.raises(NotStorable) as exc:
        storable.check_output(Output(result={}, result_url="h" * 3000), 1 << 20)
    assert exc.value.code == storable.RESULT_TOO_LARGE


def test_messages_never_copy_the_value():
    secret = "TOPSECRET\x00"
    for check in (lambda: storable.check_result({"k": secret}, 1 << 20),
                  lambda: storable.check_result({secret: 1}, 1 << 20),
                  lambda: storable.check_text("a progress message", secret, 100)):
        with pytest.raises(NotStorable) as exc:
            check()
        assert "TOPSECRET" not in exc.value.message


def test_printable_mends_error_messages_so_they_commit():
    assert storable.printable("plain") == "plain"
    assert storable.printable("a\x00b\ud800c") == "a\ufffdb\ufffdc"
    assert storable.text_fault(storable.printable("\udfff" * 10)) is None
    assert len(storable.printable("x" * 10_000)) == storable.MAX_MESSAGE_CHARS
