"""Keyset pagination, newest first: the cursor is `(created_at, id)` of a page's last row,
opaque to clients, so a page costs the same however deep it is."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

from sqlalchemy import Select, tuple_

from app import db
from app.errors import ValidationFailed


def encode_cursor(row: dict) -> str:
    """The cursor that continues after `row` (which has `created_at` and `id`)."""
    raw = json.dumps([row["created_at"].isoformat(), str(row["id"])])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """`(created_at, id)` of a cursor this API issued; `ValidationFailed` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        return datetime.fromisoformat(created), uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("bad cursor", {"cursor": ["not a cursor this API issued"]}) from None


def newest_first(
    query: Select, table, limit: int, cursor: str | None
) -> tuple[list[dict], str | None]:
    """One page of `query` (rows of `table`), newest first: `(rows, next_cursor)`."""
    if cursor:
        created, row_id = decode_cursor(cursor)
        query = query.where(tuple_(table.c.created_at, table.c.id) < tuple_(created, row_id))
    query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1)
    with db.transaction() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    return rows[:limit], (encode_cursor(rows[limit - 1]) if len(rows) > limit else None)
