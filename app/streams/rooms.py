"""Which rooms a key may join (`resolve_room`), and which rooms an event goes to (`rooms_of`)."""

from __future__ import annotations

from app import db, tenants
from app.agents.core import load as load_agent
from app.errors import NotFound
from app.jobs import load as load_job


class RoomRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


_READ_SCOPE = {"job": "jobs:read", "agent": "agents:read"}
# A card id is what the API accepts as a job's `card_id` (1 to 255 characters, no NUL).
CARD_ID_MAX = 255


def readable_types(tenant: tenants.TenantRef) -> frozenset[str]:
    """The subject types whose events this key may read."""
    return frozenset(t for t, scope in _READ_SCOPE.items() if tenant.allows(scope))


def _check_card(ident: str) -> str:
    """A card id as a job could carry it, or RoomRefused: no room for a card no job can have."""
    if not ident or len(ident) > CARD_ID_MAX:
        raise RoomRefused("VALIDATION_ERROR", f"a card id has 1 to {CARD_ID_MAX} characters")
    try:
        ident.encode("utf-8")
    except UnicodeEncodeError:
        raise RoomRefused("VALIDATION_ERROR", "a card id must be valid Unicode") from None
    return ident


# The rooms of one subject, and how each finds its subject among the tenant's.
_LOADERS = {"job": load_job, "agent": load_agent}


def resolve_room(tenant: tenants.TenantRef, room) -> tuple[str, tuple[str, str] | None]:
    """The key of a room the tenant may join, and its subject if it has one."""
    if not isinstance(room, str) or not room or len(room) > 300 or "\x00" in room:
        raise RoomRefused("VALIDATION_ERROR", "room must be a non-empty string")
    room_type, _, ident = room.partition(":")
    needs = {"job": "job", "card": "job", "agent": "agent"}.get(room_type)
    readable = readable_types(tenant)
    if (needs and needs not in readable) or (room_type == "tenant" and not readable):
        scope = _READ_SCOPE[needs or "job"]
        raise RoomRefused("FORBIDDEN", f"this key lacks the {scope} scope")
    if room_type == "tenant":
        if ident and ident != tenant.name:
            raise RoomRefused("FORBIDDEN", "another tenant's room")
        return f"tenant:{tenant.name}", None
    if room_type == "card" and ident:
        return f"card:{tenant.name}:{_check_card(ident)}", None
    loader = _LOADERS.get(room_type)
    if loader is not None and ident:
        try:
            with db.transaction() as conn:
                found = loader(conn, ident, tenant.id)
        except NotFound:
            raise RoomRefused("NOT_FOUND", f"no such {room_type}") from None
        return f"{room_type}:{found.id}", (room_type, str(found.id))
    raise RoomRefused(
        "VALIDATION_ERROR", "room must be job:<id>, agent:<id>, card:<id> or tenant"
    )


def rooms_of(envelope: dict) -> list[str]:
    """The room keys an event goes to."""
    tenant = envelope["metadata"]["tenant"]
    subject = envelope["subject"]
    rooms = [f"tenant:{tenant}", f"{subject['type']}:{subject['id']}"]
    card_id = envelope["metadata"].get("card_id")
    if card_id:
        rooms.append(f"card:{tenant}:{card_id}")
    return rooms
