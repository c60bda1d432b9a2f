"""The output streams' coalescing by the process's writer, on a fake `write` (the unit of
two classes: no database)."""

from __future__ import annotations

import threading
import time

import pytest

from app.output import OUTPUT_TOO_LARGE, OutputStream, Writer
from app.storable import NotStorable

INTERVAL = 0.05


class Writes:
    """A `write` of many items that records each round with when it came; `fail` is raised
    by the next `fail_times` rounds, `refuse` returned for the items of those owners."""

    def __init__(self, fail: BaseException | None = None, fail_times: int = 0,
                 refuse: dict | None = None):
        self.rounds: list[tuple[float, list]] = []
        self.fail, self.fail_times, self.refuse = fail, fail_times, refuse or {}
        self.lock = threading.Lock()

    def __call__(self, items: list) -> dict:
        with self.lock:
            if self.fail is not None and self.fail_times > 0:
                self.fail_times -= 1
                raise self.fail
            refused = {i: self.refuse[owner] for i, (owner, _) in enumerate(items)
                       if owner in self.refuse}
            self.rounds.append((time.monotonic(), [it for i, it in enumerate(items)
                                                   if i not in refused]))
            return refused

    def chunks(self, owner="run") -> list[dict]:
        return [chunk for _, items in self.rounds for o, chunk in items if o == owner]

    def text(self, owner="run") -> str:
        return "".join(c["text"] for c in self.chunks(owner))


def writer(writes: Writes, interval: float = INTERVAL, flush_bytes: int = 1 << 20) -> Writer:
    return Writer(writes, lambda: (interval, flush_bytes))


def stream(writes: Writes, max_bytes: int = 1 << 20, owner="run", **kw) -> OutputStream:
    return OutputStream(owner, writer(writes, **kw), max_bytes)


def wait_for(check, timeout: float = 2.0):
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert check()


def test_the_first_append_goes_at_once_and_the_rest_is_coalesced_by_the_interval():
    writes = Writes()
    out = stream(writes)
    out.append("first")
    wait_for(lambda: writes.chunks())
    assert writes.chunks()[0] == {"offset": 0, "text": "first"}
    for i in range(200):
        out.append(f" {i}")
        time.sleep(0.001)
    rest = out.stop()
    chunks = writes.chunks()
    assert len(chunks) < 20  # 200 appends over ~0.3 s: one write per interval, not per append
    gaps = [b[0] - a[0] for a, b in zip(writes.rounds, writes.rounds[1:], strict=False)]
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


def test_many_streams_are_written_in_one_round():
    writes = Writes()
    shared = writer(writes, interval=0.2)
    outs = [OutputStream(f"run{i}", shared, 1 << 20) for i in range(50)]
    for out in outs:
        out.append("a")
    wait_for(lambda: sum(len(items) for _, items in writes.rounds) == 50)
    for out in outs:
        out.append("b")
    wait_for(lambda: sum(len(items) for _, items in writes.rounds) == 100)
    # The first append may start a round alone; the rest of the fifty share the next ones.
    assert len(writes.rounds) <= 4, [len(items) for _, items in writes.rounds]
    assert all(writes.text(f"run{i}") == "ab" for i in range(50))
    assert all(out.stop() is None for out in outs)


def test_enough_bytes_waiting_are_written_before_the_interval():
    writes = Writes()
    out = stream(writes, interval=10.0, flush_bytes=8)  # an interval no test waits for
    out.append("a")  # at once
    wait_for(lambda: writes.text() == "a")
    out.append("bcdefghijk")  # 10 bytes >= 8: written without waiting 10 s
    wait_for(lambda: writes.text() == "abcdefghijk")
    assert out.stop() is None


def test_a_refused_item_keeps_its_chunk_and_is_raised_at_its_next_append():
    class Stop(Exception):
        pass

    writes = Writes(refuse={"refused": Stop()})
    shared = writer(writes)
    out, other = OutputStream("refused", shared, 1 << 20), OutputStream("run", shared, 1 << 20)
    out.append("kept")
    other.append("written")
    wait_for(lambda: out._failed is not None and writes.text() == "written")
    with pytest.raises(Stop):
        out.append("more")
    with pytest.raises(Stop):
        out.raise_failure()  # what the run's cancel check raises
    assert out.stop() == {"offset": 0, "text": "kept"}  # the outcome writes it
    assert other.stop() is None


def test_a_failed_round_fails_each_of_its_streams_and_drops_nothing():
    class Away(Exception):
        pass

    writes = Writes(fail=Away(), fail_times=1)
    out = stream(writes)
    out.append("kept")
    wait_for(lambda: out._failed is not None)
    with pytest.raises(Away):
        out.append("more")
    assert out.stop() == {"offset": 0, "text": "kept"}


def test_deltas_are_counted_apart_from_text():
    writes = Writes()
    out = stream(writes)
    out.append_delta({"name": "caption"})
    out.append("x")
    out.append_delta([1, 2])
    rest = out.stop()
    chunks = writes.chunks() + ([rest] if rest else [])
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
