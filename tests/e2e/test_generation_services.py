"""Generation services end to end: the HTTP API, two real workers and beat, and a real
external generation service (slow, flaky, down on demand); the `image` generator with the
filesystem artifact store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.conftest import Client, start_stack, submit_http
from tests.support.stack import wait_until

FAIL_MAX, RESET_S = 2, 3.0
CHANGED = "circuit_breaker.state.changed"


@pytest.fixture(scope="module")
def settings(domain, tmp_path_factory):
    """A small breaker, a short read timeout and files for artifacts, for every process."""
    return domain.with_(
        breaker_fail_max=FAIL_MAX,
        breaker_reset_timeout_s=RESET_S,
        http_read_timeout_s=1.0,
        artifact_store="filesystem",
        artifact_dir=str(tmp_path_factory.mktemp("artifacts")),
    )


@pytest.fixture(scope="module")
def gen_stack(settings):
    stack = start_stack(settings, workers=2, relays=0)
    yield stack
    print(stack.logs())
    stack.stop()


@pytest.fixture
def client(gen_stack, tenant) -> Client:
    return Client(gen_stack.url(gen_stack.procs_named("api")[0]), tenant[0])


@pytest.fixture
def service(gen_stack, gen_service):
    """The generation service, once this module's stack is up."""
    return gen_service


submit = submit_http


def events(client: Client, job_id: str) -> list[dict]:
    resp = client.get(f"/api/v1/jobs/{job_id}/events")
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def breaker_changes(client: Client, job_id: str) -> list[tuple[str, str]]:
    return [(e["payload"]["previous_state"], e["payload"]["current_state"])
            for e in events(client, job_id) if e["event_type"] == CHANGED]


def test_flaky_service_is_retried_until_it_completes(client, service):
    service.control(fail_next=FAIL_MAX - 1, fail_status=503, polls=2)
    job = submit(client, service)
    done = client.wait_status(job["id"], {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed" and done["attempts"] == FAIL_MAX
    assert done["result_url"].endswith(".png")
    statuses = [e["payload"]["status"] for e in events(client, job["id"])
                if e["event_type"] == "job.status.updated"]
    assert "retrying" in statuses and breaker_changes(client, job["id"]) == []
    assert service.idempotency_keys() == [job["id"]] * FAIL_MAX  # one generation, one key


def test_slow_service_times_out_and_the_retry_completes(client, service):
    service.control(slow_next=1, slow_s=4)
    job = submit(client, service)
    done = client.wait_status(job["id"], {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed" and done["attempts"] == 2
    errors = [e["payload"].get("error", {}).get("message", "") for e in events(client, job["id"])]
    assert any("Timeout" in m for m in errors)


def test_down_service_opens_the_breaker_and_it_closes_when_the_service_is_back(client, service):
    service.stop()
    job = submit(client, service, max_retries=50)
    wait_until(lambda: ("closed", "open") in breaker_changes(client, job["id"]), 60, 0.2,
               "the breaker to open")
    # While open, attempts fail fast, without calling the service.
    wait_until(lambda: "circuit open" in (client.job(job["id"])["error"] or {}).get("message", ""),
               60, 0.1, "an attempt refused by the open breaker")
    service.start()
    done = client.wait_status(job["id"], {"completed", "failed"}, timeout=90)
    assert done["status"] == "completed"

    changes = breaker_changes(client, job["id"])
    assert changes[0] == ("closed", "open")
    assert changes[-2:] == [("open", "half_open"), ("half_open", "closed")]
    assert all(a[1] == b[0] for a, b in zip(changes, changes[1:], strict=False)), changes
    payloads = [e["payload"] for e in events(client, job["id"]) if e["event_type"] == CHANGED]
    assert payloads[0]["failure_count"] == FAIL_MAX
    assert {p["service_name"] for p in payloads} == {service.host}
    types = {t["event_type"] for t in client.get("/api/v1/event-types").json()["items"]}
    assert CHANGED in types


def test_a_job_at_the_api_itself_is_refused_at_once_and_learns_nothing(client):
    """The API's own readiness is on 127.0.0.1 too, but not at the listed host:port."""
    job = client.submit("http", {"url": f"{client.base}/health/readiness"}, max_retries=3)
    done = client.wait_status(job["id"], {"completed", "failed"}, timeout=60)
    assert done["status"] == "failed" and done["attempts"] == 1, done
    assert done["error"]["code"] == "ADDRESS_NOT_ALLOWED", done["error"]
    timeline = events(client, job["id"])
    failed = [e["payload"] for e in timeline if e["event_type"] == "job.status.updated"
              and e["payload"]["status"] == "failed"]
    assert [p["error"]["code"] for p in failed] == ["ADDRESS_NOT_ALLOWED"]
    # Nothing of what the API answers (its readiness, or its 405 to a POST) reached the job.
    readiness = client.get("/health/readiness").json()
    seen = json.dumps([done, timeline])
    for leak in ["METHOD_NOT_ALLOWED", "healthy", *readiness["checks"]]:
        assert leak not in seen, leak


def test_image_is_served_from_the_filesystem_store(client, settings):
    job = client.submit("image", {"width": 640, "height": 360, "text": "hello",
                                  "shapes": [{"type": "rectangle", "xy": [0, 0, 99, 99],
                                              "fill": "#00ff00"}]})
    done = client.wait_status(job["id"], {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed", done
    resp = client.get(f"/api/v1/jobs/{job['id']}/result")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(resp.content))
    assert image.format == "PNG" and image.size == (640, 360)
    assert image.getpixel((50, 50)) == (0, 255, 0)
    files = list(Path(settings.artifact_dir).glob(f"{job['id']}-*.png"))
    assert len(files) == 1 and files[0].read_bytes() == resp.content
