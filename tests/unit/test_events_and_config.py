"""The envelope, the relay's routing and the settings, as pure functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from app.config import Settings
from app.events import envelope, iso
from app.streams import RoomRefused, resolve_room, rooms_of
from app.tenants import TenantRef, hash_secret


def test_iso_is_utc_with_a_z():
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
    assert iso(None) is None


def test_envelope_has_the_contract_shape():
    sid = uuid.uuid4()
    env = envelope(
        {"id": uuid.uuid4(), "event_type": "job.status.updated", "seq": 3,
         "created_at": datetime.now(UTC), "source_service": "worker", "subject_type": "job",
         "subject_id": sid, "payload": {"status": "completed"},
         "metadata": {"tenant": "acme", "correlation_id": "c", "card_id": None, "version": "1.0"}}
    )
    assert set(env) == {"event_id", "event_type", "seq", "timestamp", "source_service",
                        "subject", "payload", "metadata"}
    assert env["subject"] == {"type": "job", "id": str(sid)}


def test_events_go_to_tenant_subject_and_card_rooms():
    env = {"subject": {"type": "job", "id": "j1"},
           "metadata": {"tenant": "acme", "card_id": "c9"}}
    assert rooms_of(env) == ["tenant:acme", "job:j1", "card:acme:c9"]
    env["metadata"]["card_id"] = None
    assert rooms_of(env) == ["tenant:acme", "job:j1"]


def test_room_names_are_checked_and_tenant_scoped():
    me = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"jobs:read", "agents:read"}))
    assert resolve_room(me, "tenant") == ("tenant:acme", None)
    assert resolve_room(me, "tenant:acme") == ("tenant:acme", None)
    assert resolve_room(me, "card:c1") == ("card:acme:c1", None)
    for bad, code in [("tenant:other", "FORBIDDEN"), ("", "VALIDATION_ERROR"),
                      (42, "VALIDATION_ERROR"), ("nope:1", "VALIDATION_ERROR"),
                      ("card:", "VALIDATION_ERROR")]:
        try:
            resolve_room(me, bad)
        except RoomRefused as exc:
            assert exc.code == code
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_settings_defaults_follow_the_contract():
    s = Settings.from_env({})
    assert s.database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/orchestra"
    assert s.redis_url == "redis://127.0.0.1:6379/0" and s.effective_broker_url == s.redis_url
    assert (s.api_port, s.relay_port, s.flower_port, s.bind_host) == (8000, 8001, 5555,
                                                                      "127.0.0.1")
    assert s.agent_heartbeat_timeout_s == 60 and s.worker_lost_redelivery_s == 60
    assert s.max_body_bytes == 256 * 1024


def test_settings_read_the_environment_and_round_trip():
    s = Settings.from_env({"BROKER_URL": "redis://b:1/2", "API_PORT": "9000",
                           "WORKER_LOST_REDELIVERY_S": "7.5"})
    assert s.effective_broker_url == "redis://b:1/2" and s.api_port == 9000
    assert s.worker_lost_redelivery_s == 7.5
    assert Settings.from_env(s.as_env()) == s


def test_secrets_are_hashed():
    assert hash_secret("orc_x") != "orc_x" and len(hash_secret("orc_x")) == 64


def test_relay_positions_are_bounded_and_keep_the_recent(monkeypatch):
    from app.streams import Positions

    monkeypatch.setattr(Positions, "MAX_SUBJECTS", 3)
    pos = Positions()
    for i in range(5):
        pos[("job", str(i))] = 1
    pos[("job", "2")] = 2  # refreshed: now the most recent
    pos[("job", "9")] = 1
    assert list(pos) == [("job", "4"), ("job", "2"), ("job", "9")]


def test_rooms_need_the_read_scope_of_what_they_carry():
    from app.streams import readable_types

    jobs_only = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"jobs:read"}))
    writer = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"jobs:write", "agents:write"}))
    admin = TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"admin"}))
    assert readable_types(jobs_only) == {"job"} and readable_types(writer) == set()
    assert readable_types(admin) == {"job", "agent"}
    assert resolve_room(jobs_only, "tenant") == ("tenant:acme", None)
    for who, room in [(jobs_only, f"agent:{uuid.uuid4()}"), (writer, "tenant"),
                      (writer, "card:c1"), (writer, f"job:{uuid.uuid4()}")]:
        try:
            resolve_room(who, room)
        except RoomRefused as exc:
            assert exc.code == "FORBIDDEN" and "scope" in exc.message
        else:
            raise AssertionError(f"{room!r} was accepted for {who.scopes}")


def test_every_event_type_is_domain_action_state():
    """The seeds' naming: at least three dotted lower-case parts (`job.status.updated`,
    `agent.capability.execution.started`)."""
    import re

    from app.events import EVENT_TYPES

    pattern = re.compile(r"^[a-z_]+(\.[a-z_]+){2,}$")
    assert [t for t in EVENT_TYPES if not pattern.match(t)] == []


def test_the_old_agent_event_names_are_gone_from_code_console_and_docs():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    places = [*root.glob("app/**/*.py"), *root.glob("api/*.py"), *root.glob("console/src/**/*"),
              *root.glob("docs/*.md"), root / "README.md", root / "ARCHITECTURE.md"]
    old = ("agent.created", "agent.updated", "agent.deleted")
    # Whole names: an agent row's `agent.deleted_at` is not the old event's name.
    said = re.compile("|".join(rf"{re.escape(name)}(?!\w)" for name in old))
    hits = [(p.name, m) for p in places if p.is_file()
            for m in said.findall(p.read_text(errors="replace"))]
    assert hits == []
