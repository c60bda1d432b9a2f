"""A chat reply streamed end to end: the HTTP API, the io worker (a gevent pool), the relay
and a real Socket.IO client, against the fake OpenAI-compatible server in its own process."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_resilience import running_worker_pid
from tests.support.sio import EventClient
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e

OUTPUT = "job.output.appended"


def chat(client, fake_llm, tokens: int, **fields) -> dict:
    return client.submit("chat", {"base_url": fake_llm.base_url, "model": "fake-1",
                                  "messages": [{"role": "user", "content": "Go on."}],
                                  "max_tokens": tokens}, **fields)


def words(n: int, start: int = 0) -> str:
    return "".join(f"tok{i} " for i in range(start, n))


def text_of(envelopes: list[dict], attempt: int) -> str:
    return "".join(e["payload"]["text"] for e in envelopes
                   if e["event_type"] == OUTPUT and e["payload"]["attempt"] == attempt)


def test_a_client_that_joins_late_and_one_that_reconnects_each_get_every_chunk_once(
    stack, client, tenant, fake_llm
):
    fake_llm.control(rate=40)
    relay = stack.url(stack.procs_named("relay")[0])
    early = EventClient(relay, tenant[0])
    try:
        job = chat(client, fake_llm, 60)
        early.subscribe(f"job:{job['id']}")
        wait_until(lambda: len(text_of(early.of(job["id"]), 1)) >= len(words(10)), 20, 0.05,
                   "ten tokens live")
        early.close()  # gone mid-stream; back below with the last seq it saw
        last_seq = max(e["seq"] for e in early.of(job["id"]))
        client.wait_status(job["id"], "completed", timeout=30)
        back = EventClient(relay, tenant[0])
        late = EventClient(stack.url(stack.procs_named("relay")[-1]), tenant[0])
        try:
            back.subscribe(f"job:{job['id']}", since=last_seq)
            late.subscribe(f"job:{job['id']}", since=0)
            back.wait_for_status(job["id"], "completed")
            late.wait_for_status(job["id"], "completed")
            seen = early.of(job["id"]) + back.of(job["id"])
            seqs = [e["seq"] for e in seen]
            assert seqs == sorted(set(seqs))  # each once, in order
            assert text_of(seen, 1) == words(60) == text_of(late.of(job["id"]), 1)
        finally:
            back.close()
            late.close()
    finally:
        early.close()
    answer = client.get(f"/api/v1/jobs/{job['id']}/output").json()
    assert answer["text"] == words(60) and answer["done"] is True
    assert client.job(job["id"])["result"]["text"] == words(60)


def test_a_worker_killed_mid_stream_reruns_and_the_output_is_the_new_attempts(
    stack, client, tenant, fake_llm
):
    fake_llm.control(rate=20)
    job = chat(client, fake_llm, 80, max_retries=2)
    wait_until(lambda: len(client.get(f"/api/v1/jobs/{job['id']}/output").json()["text"])
               >= len(words(5)), 30, 0.1, "some output")
    victim_pid = int(running_worker_pid(client, job["id"]))
    stack.kill(next(p for p in stack.procs_named("io") if p.popen.pid == victim_pid))
    stack.start("io", IO_CONCURRENCY=50)
    fake_llm.control(rate=400)
    done = client.wait_status(job["id"], {"completed", "failed"}, timeout=90)
    assert done["status"] == "completed" and done["attempts"] == 2
    answer = client.get(f"/api/v1/jobs/{job['id']}/output").json()
    assert answer["attempt"] == 2 and answer["text"] == words(80)  # never a mix of the two
    events = client.get(f"/api/v1/jobs/{job['id']}/events?limit=1000").json()["items"]
    first = text_of(events, 1)
    assert first and words(80).startswith(first) and first != words(80)
    assert text_of(events, 2) == words(80) == done["result"]["text"]


def test_the_io_worker_cancels_a_stalled_stream_within_a_second(stack, client, fake_llm):
    fake_llm.control(stall_after=3)
    job = chat(client, fake_llm, 50)
    wait_until(lambda: client.get(f"/api/v1/jobs/{job['id']}/output").json()["text"]
               == words(3), 30, 0.05, "three tokens")
    assert running_worker_pid(client, job["id"]) in {
        str(p.popen.pid) for p in stack.procs_named("io")}
    cancelled_at = time.time()
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 202
    assert client.wait_status(job["id"], {"cancelled", "failed"}, timeout=10)["status"] \
        == "cancelled"
    closed_at = wait_until(lambda: fake_llm.stats()["calls"][-1]["closed_at"], 5, 0.05,
                           "the server to see the connection closed")
    assert closed_at - cancelled_at < 1.0 + 0.25  # CANCEL_CHECK_S and PROGRESS_MIN_INTERVAL_S


def test_the_io_worker_ends_a_run_at_its_timeout_and_records_it(stack, client, fake_llm):
    """Celery's gevent pool enforces only the hard limit (timeout_s + 15 s, by killing the
    greenlet: nothing recorded, the beat's sweep fails the job later); the run itself must
    record TIMEOUT at timeout_s, as on the prefork pool."""
    fake_llm.control(stall_after=2)
    job = chat(client, fake_llm, 50, timeout_s=2, max_retries=0)
    done = client.wait_status(job["id"], {"failed", "completed", "cancelled"}, timeout=30)
    assert done["status"] == "failed" and done["error"]["code"] == "TIMEOUT"
    items = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    failed = next(e for e in items if e["event_type"] == "job.status.updated"
                  and e["payload"]["status"] == "failed")
    assert failed["source_service"] == "worker"  # the run's own record, not the sweep's
    assert text_of(items, 1) == words(2)  # what it streamed before the limit is kept


def test_a_429_with_retry_after_holds_the_job_and_a_cut_stream_is_retried_seen_live(
    stack, client, tenant, fake_llm
):
    """Through the API, the io worker and the relay, watched by a Socket.IO client: the
    server's 429 holds the job `queued` for its Retry-After (no attempt spent); a 503 and a
    stream cut midway are transient, so the job runs again and the client sees the latest
    attempt's output whole, under its own attempt number."""
    relay = stack.url(stack.procs_named("relay")[0])
    watcher = EventClient(relay, tenant[0])
    try:
        fake_llm.control(fail_next=1, fail_status=429, retry_after="1", rate=100)
        held = chat(client, fake_llm, 20, max_retries=0)
        watcher.subscribe(f"job:{held['id']}", since=0)
        seen = watcher.wait_for_status(held["id"], "completed", timeout=60)
        statuses = [e["payload"]["status"] for e in seen if e["event_type"] == "job.status.updated"]
        assert statuses == ["queued", "processing", "queued", "processing", "completed"]
        # Completed with max_retries=0: the held claim spent no retry; its output is the
        # second claim's.
        assert client.job(held["id"])["status"] == "completed"
        assert text_of(seen, 1) == "" and text_of(seen, 2) == words(20)

        fake_llm.control(fail_next=1, fail_status=503, cut_after=8)
        cut = chat(client, fake_llm, 20, max_retries=3)
        watcher.subscribe(f"job:{cut['id']}", since=0)
        def calls_of(job_id):
            return [c for c in fake_llm.stats()["calls"] if c["idempotency_key"] == job_id]

        wait_until(lambda: len(calls := calls_of(cut["id"])) >= 2
                   and calls[1]["tokens_sent"] >= 8, 30, 0.05, "a cut stream")
        fake_llm.control(cut_after=None)  # before the retry's backoff ends
        seen = watcher.wait_for_status(cut["id"], "completed", timeout=60)
        done = client.job(cut["id"])
        assert done["attempts"] == 3  # the 503, the cut, then the whole reply
        assert text_of(seen, 2) == words(8) and text_of(seen, 3) == words(20)
        answer = client.get(f"/api/v1/jobs/{cut['id']}/output").json()
        assert answer["attempt"] == 3 and answer["text"] == words(20) == done["result"]["text"]
    finally:
        watcher.close()
