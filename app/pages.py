"""Keyset pagination cursors: `(created_at, id)` of the last row of a page, opaque to clients."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

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
