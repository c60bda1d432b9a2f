"""Migrations on a database of their own: the schema Alembic builds is the models' schema, and
the data migrations carry stored rows across (upgrade and downgrade)."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from app.models import Base
from scripts import sandbox
from tests.support import isolation


@pytest.fixture
def empty_db(run_name):
    name = f"orchestra_mig_{run_name}_{uuid.uuid4().hex[:6]}"
    url = sandbox.create_database(isolation.BASE_DATABASE_URL, name)  # empty: no migration
    engine = create_engine(url)
    cfg = Config(str(sandbox.ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    yield cfg, engine
    engine.dispose()
    sandbox.drop_database(url)


def test_head_is_the_models_schema(empty_db):
    cfg, engine = empty_db
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def _agent_event(conn, tenant_id, event_type: str) -> uuid.UUID:
    event_id = uuid.uuid4()
    conn.execute(
        text(
            "INSERT INTO events (id, tenant_id, subject_type, subject_id, seq, event_type,"
            " source_service, payload, metadata) VALUES (:id, :t, 'agent', :s, 1, :e, 'api',"
            " '{}', '{}')"
        ),
        {"id": event_id, "t": tenant_id, "s": uuid.uuid4(), "e": event_type},
    )
    return event_id


def _types(engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT subject_type, event_type FROM events ORDER BY seq, id"))
        return sorted(f"{s}:{e}" for s, e in rows)


def test_0008_renames_stored_agent_events_and_back(empty_db):
    cfg, engine = empty_db
    command.upgrade(cfg, "0007")
    with engine.begin() as conn:
        tenant_id = conn.execute(
            text("INSERT INTO tenants (id, name) VALUES (:id, 'm') RETURNING id"),
            {"id": uuid.uuid4()},
        ).scalar_one()
        for old in ("agent.created", "agent.updated", "agent.deleted", "agent.status.changed"):
            _agent_event(conn, tenant_id, old)
    command.upgrade(cfg, "0008")
    assert _types(engine) == sorted([
        "agent:agent.create.completed", "agent:agent.update.completed",
        "agent:agent.delete.completed", "agent:agent.status.changed",
    ])
    command.downgrade(cfg, "0007")
    assert _types(engine) == sorted([
        "agent:agent.created", "agent:agent.updated", "agent:agent.deleted",
        "agent:agent.status.changed",
    ])
