"""The event catalogue holds: every event a full run stores validates against its schema."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from jsonschema import Draft202012Validator

from app import db, events
from tests.e2e.test_agents_flow import command, wait_command

pytestmark = pytest.mark.e2e

_UUID = {"type": "string", "format": "uuid"}
# The envelope as docs/events.md states it, written here independently of app/events.py.
ENVELOPE = {
    "type": "object",
    "required": ["event_id", "event_type", "seq", "timestamp", "source_service", "subject",
                 "payload", "metadata"],
    "additionalProperties": False,
    "properties": {
        "event_id": _UUID,
        "event_type": {"type": "string"},
        "seq": {"type": "integer", "minimum": 1},
        "timestamp": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"},
        "source_service": {"type": "string", "minLength": 1},
        "subject": {
            "type": "object", "required": ["type", "id"], "additionalProperties": False,
            "properties": {"type": {"enum": ["job", "agent"]}, "id": _UUID},
        },
        "payload": {"type": "object"},
        "metadata": {
            "type": "object", "required": ["tenant", "correlation_id", "card_id", "version"],
            "properties": {
                "tenant": {"type": "string"},
                "correlation_id": {"type": "string", "minLength": 1},
                "card_id": {"type": ["string", "null"]},
                "version": {"const": "1.0"},
            },
        },
    },
}


class GenerationService(BaseHTTPRequestHandler):
    """An external generation service that finishes at once."""

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.dumps({"status": "completed", "result_url": "http://cdn.test/x.png"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def service_url(gen_service_port):
    # On the run's port: the one loopback address HTTP_PRIVATE_HOSTS lets the workers call.
    server = ThreadingHTTPServer(("127.0.0.1", gen_service_port), GenerationService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/generate"
    server.shutdown()
    server.server_close()


def chat_params(llm_base_url: str) -> dict:
    return {"base_url": llm_base_url, "model": "fake-1",
            "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 8}


def run_jobs(client, service_url: str, llm_base_url: str) -> None:
    """Jobs of every built-in kind, ending every way a job can end."""
    done = [
        client.submit("echo", {"x": 1}, card_id="card-1"),
        client.submit("chat", chat_params(llm_base_url)),
        client.submit("sleep", {"seconds": 0.2, "steps": 2}),
        client.submit("http", {"url": service_url, "payload": {"prompt": "a cat"}}),
        client.submit("fail", {"message": "twice", "transient": True, "times": 1}),
    ]
    failed = client.submit("fail", {"message": "no"}, max_retries=0)
    running = client.submit("sleep", {"seconds": 30, "steps": 60})
    waiting = client.submit("echo", {}, countdown_s=60)
    assert client.post(f"/api/v1/jobs/{waiting['id']}/cancel").status_code == 202
    client.wait_status(running["id"], "processing")
    assert client.post(f"/api/v1/jobs/{running['id']}/cancel").status_code == 202
    for job in done:
        client.wait_status(job["id"], "completed")
    client.wait_status(failed["id"], "failed")
    assert client.post(f"/api/v1/jobs/{failed['id']}/retry").status_code == 202
    client.wait_status(failed["id"], "failed")
    client.wait_status(running["id"], "cancelled")


def run_agents(client, llm_base_url: str) -> None:
    """An agent's whole life, and executions that complete and fail."""
    echo = client.post("/api/v1/agents", {"name": "speaker", "type": "echo"}).json()
    aid = echo["id"]
    assert client.http.patch(client.base + f"/api/v1/agents/{aid}", json={"description": "v2"},
                             timeout=10).status_code == 200
    assert client.post(f"/api/v1/agents/{aid}/revert", {"version": 1}).status_code == 200
    for name, params in [("start", {}), ("execute", {"capability": "say", "input": {"text": "hi"}}),
                         ("status", {}), ("stop", {})]:
        assert wait_command(client, aid, command(client, aid, name, **params))["status"] == (
            "completed"
        ), name
    gen = client.post("/api/v1/agents", {"name": "painter", "type": "generator"}).json()["id"]
    assert wait_command(client, gen, command(client, gen, "start"))["status"] == "completed"
    for kind, params, outcome in [("echo", {"a": 1}, "completed"),
                                  ("chat", chat_params(llm_base_url), "completed"),
                                  ("fail", {"message": "bad"}, "failed")]:
        cmd = command(client, gen, "execute", capability="generate",
                      input={"kind": kind, "params": params})
        assert wait_command(client, gen, cmd)["status"] == outcome
    for agent_id in (aid, gen):
        assert client.http.delete(client.base + f"/api/v1/agents/{agent_id}",
                                  timeout=10).status_code == 204


def test_every_event_of_a_full_run_validates_against_the_catalogue(
    stack, client, tenant, service_url, fake_llm
):
    run_jobs(client, service_url, fake_llm.base_url)
    run_agents(client, fake_llm.base_url)
    catalogue = {
        item["event_type"]: Draft202012Validator(
            item["schema"], format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        for item in client.get("/api/v1/event-types").json()["items"]
    }
    envelope = Draft202012Validator(ENVELOPE, format_checker=Draft202012Validator.FORMAT_CHECKER)
    with db.transaction() as conn:  # every event of the run, as Postgres keeps them
        stored = events.for_tenant(conn, tenant[1].id, datetime(2000, 1, 1, tzinfo=UTC))
    assert len(stored) > 50
    for env in stored:
        assert not list(envelope.iter_errors(env)), env
        assert env["event_type"] in catalogue, env["event_type"]
        errors = list(catalogue[env["event_type"]].iter_errors(env["payload"]))
        assert not errors, (env, [e.message for e in errors])
    seen = {env["event_type"] for env in stored}
    expected = {t for t in catalogue if t.startswith(("job.", "agent."))}
    assert expected <= seen, expected - seen
    statuses = {e["payload"]["status"] for e in stored if e["event_type"] == "job.status.updated"}
    assert statuses == {"queued", "processing", "retrying", "completed", "failed", "cancelled"}
