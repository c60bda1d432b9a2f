"""The output stream's coalescing, on a fake `write` (the unit of one class: no database)."""

from __future__ import annotations

import threading
import time

import pytest

from app.output import OUTPUT_TOO_LARGE, OutputStream
from app.storable import NotStorable

INTERVAL = 0.05


class Writes:
    """A `write` that records each chunk with when it came, optionally failing."""

    def __init__(self, fail: BaseException | None = None, fail_times: int = 0):
        self.chunks: list[tuple[float, dict]] = []
        self.fail, self.fail_times = fail, fail_times
        self.lock = threading.Lock()

    def __call__(self, chunk: dict) -> None:
        with self.lock:
            if self.fail is not None and self.fail_times > 0:
                self.fail_times -= 1
                raise self.fail
            self.chunks.append((time.monotonic(), chunk))

    def text(self) -> str:
        return "".join(c["text"] for _, c in self.chunks)


def stream(writes: Writes, flush_bytes: int = 1 << 20, max_bytes: int = 1 << 20):
    return OutputStream(writes, INTERVAL, flush_bytes, max_bytes)


def test_the_first_append_goes_at_once_and_the_rest_is_coalesced_by_the_interval():
    writes = Writes()
    out = stream(writes)
    out.append("first")
    deadline = time.monotonic() + 2
    while not writes.chunks and time.monotonic() < deadline:
        time.sleep(0.001)
    assert writes.chunks[0][1] == {"offset": 0, "text": "first"}
    for i in range(200):
        out.append(f" {i}")
        time.sleep(0.001)
    rest = out.stop()
    chunks = [c for _, c in writes.chunks]
    assert len(chunks) < 20  # 200 appends over ~0.3 s: one write per interval, not per append
    gaps = [b[0] - a[0] for a, b in zip(writes.chunks, writes.chunks[1:], strict=False)]
    assert all(gap >= INTERVAL * 0.9 for gap in gaps), gaps
    # Offsets run on without a gap, and with what stop() left the text is whole, once.
    offset = 0
    for chunk in chunks:
        assert chunk["offset"] == offset
        offset += len(chunk["text"])
    whole = writes.text() + (rest["text"] if rest else "")
    assert whole == "first" + "".join(f" {i}" for i in range(200))
    if rest:
        assert rest["offset"] == offset


def test_enough_bytes_waiting_are_written_before_the_interval():
    writes = Writes()
    out = OutputStream(writes, 10.0, 8, 1 << 20)  # an interval no test waits for
    out.append("a")  # at once
    out.append("bcdefghijk")  # 10 bytes >= 8: written without waiting 10 s
    deadline = time.monotonic() + 2
    while writes.text() != "abcdefghijk" and time.monotonic() < deadline:
        time.sleep(0.001)
    assert writes.text() == "abcdefghijk"
    assert out.stop() is None


def test_a_failed_write_keeps_its_chunk_and_is_raised_at_the_next_append():
    class Stop(Exception):
        pass

    writes = Writes(fail=Stop(), fail_times=1)
    out = stream(writes)
    out.append("kept")
    deadline = time.monotonic() + 2
    while out._failed is None and time.monotonic() < deadline:
        time.sleep(0.001)
    with pytest.raises(Stop):
        out.append("more")
    assert out.stop() == {"offset": 0, "text": "kept"}  # the outcome writes it


def test_deltas_are_counted_apart_from_text():
    writes = Writes()
    out = stream(writes)
    out.append_delta({"name": "caption"})
    out.append("x")
    out.append_delta([1, 2])
    rest = out.stop()
    chunks = [c for _, c in writes.chunks] + ([rest] if rest else [])
    deltas = [d for c in chunks for d in c.get("deltas", [])]
    assert deltas == [{"name": "caption"}, [1, 2]]
    assert "".join(c["text"] for c in chunks) == "x"
    starts = [c["delta_offset"] for c in chunks if "deltas" in c]
    assert starts[0] == 0


def test_the_output_is_bounded_and_what_postgres_cannot_store_is_refused():
    out = stream(Writes(), max_bytes=10)
    out.append("0123456789")
    with pytest.raises(NotStorable) as too_large:
        out.append("!")
    assert too_large.value.code == OUTPUT_TOO_LARGE
    with pytest.raises(NotStorable):
        stream(Writes()).append("a\x00b")
    with pytest.raises(NotStorable):
        stream(Writes()).append(b"bytes")
    out.stop()


def test_nothing_is_appended_after_stop():
    out = stream(Writes())
    out.stop()
    with pytest.raises(RuntimeError):
        out.append("late")
