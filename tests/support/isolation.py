"""Per-run isolation: a database of its own, a Redis db number of its own, a channel prefix."""

from __future__ import annotations

import os
import uuid

from scripts import sandbox

ROOT = str(sandbox.ROOT)
BASE_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BASE_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def create_database(name: str) -> str:
    """Create an empty database and bring it to the current schema with Alembic."""
    url = sandbox.create_database(BASE_DATABASE_URL, name)
    sandbox.migrate(url)
    return url


def run_id() -> str:
    """A short unique name for this run."""
    return f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
