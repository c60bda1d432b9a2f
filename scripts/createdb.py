"""Create the database named in DATABASE_URL if it does not exist (used by `make db`)."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from app.config import Settings
from scripts.sandbox import admin_connection, create_database


def ensure_database(database_url: str) -> bool:
    """Create the URL's database on its server if missing; True if it was created."""
    name = make_url(database_url).database
    conn = admin_connection(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            exists = cur.fetchone() is not None
    finally:
        conn.close()
    if not exists:
        create_database(database_url, name)
    return not exists


if __name__ == "__main__":
    settings = Settings.from_env()
    created = ensure_database(settings.database_url)
    name = make_url(settings.database_url).database
    print(f"database {name}: {'created' if created else 'exists'}")
