"""Integration fixtures: the Flask app in-process, on the real database and Redis."""

from __future__ import annotations

import json

import pytest
import redis
from sqlalchemy import func, select

from app import db
from app.models import Event, Job


@pytest.fixture(scope="session")
def flask_app(domain):
    """The API built by its factory for this run's settings."""
    from api import create_app

    return create_app(domain)


@pytest.fixture
def http(flask_app, tenant):
    """A test client and the tenant's auth header."""
    return flask_app.test_client(), {"Authorization": f"Bearer {tenant[0]}"}


@pytest.fixture
def admissions(monkeypatch) -> list:
    """The admission passes asked for after a transaction, counted instead of run: they are
    transactions of their own (tests/integration/test_scheduler.py), not the run's."""
    from app import jobs

    asked: list = []
    monkeypatch.setattr(jobs, "admit_soon", lambda: asked.append(1))
    return asked


def row_counts() -> tuple[int, int]:
    """How many jobs and events exist (to show a refused request wrote nothing)."""
    with db.transaction() as conn:
        return (
            conn.execute(select(func.count()).select_from(Job)).scalar_one(),
            conn.execute(select(func.count()).select_from(Event)).scalar_one(),
        )


class Listener:
    """A real Redis pub/sub subscriber on this run's event channels."""

    def __init__(self, settings):
        self.ps = redis.Redis.from_url(settings.redis_url).pubsub(ignore_subscribe_messages=True)
        self.ps.psubscribe(f"{settings.channel_prefix}:events:*")

    def drain(self, seconds: float = 0.5) -> list[dict]:
        import time

        out, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self.ps.get_message(timeout=0.05)
            if msg:
                out.append(json.loads(msg["data"]))
        return out

    def close(self):
        self.ps.close()


@pytest.fixture
def listener(domain):
    """Events published on Redis while the test runs."""
    lst = Listener(domain)
    yield lst
    lst.close()
