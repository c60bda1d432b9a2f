"""What waits in Postgres for the broker, and the one way it is sent.

A `Sendable` is a kind of row that becomes a Celery message: a table whose `id` is the task
id and whose `dispatch_token` the message carries (a worker claims the row only with the
current token), `dispatched_at` null until the broker took it. Jobs and agent commands each
register one (`app/jobs.py`, `app/agents/commands.py`); the unit of work sends them after
commit, the sweeps (`app/outbox/sweep.py`) send what was not sent or was lost.

Rows of a kind whose work is done in microseconds (a job of an instant generator) may share
one message when they are sent together (a batch): `Sendable.shares` says which may, and
`DISPATCH_GROUP_MAX` bounds how many. Celery's own cost per message is then paid once for
the group, and the worker commits the group in one transaction.

The broker is reached through one seam, `configure(sender, batch)`: `sender` with the shape
of `Celery.send_task`, and optionally `batch()`, a context manager giving a sender whose
messages leave together when it exits (raising if they may not have), installed by each
process's entry point: `app/` never imports Celery.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Hashable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Table, tuple_, update

from app import config

log = logging.getLogger(__name__)

Sender = Callable[..., Any]
Batch = Callable[[], AbstractContextManager[Sender]]
_sender: Sender | None = None
_batch: Batch | None = None


@dataclass(frozen=True, eq=False)
class Sendable:
    """One kind of row the outbox sends: its table, its task and queue, and its rules."""

    name: str  # in logs: "job", "command"
    table: Table
    task: str
    queue: str  # its messages' queue, unless `options` names another
    id_kwarg: str  # the task's keyword for the row's id
    # The rows that wait for a worker: a message of theirs the broker lost is sent again.
    waiting: ColumnElement[bool]
    # `due(now, settled, limit)`: the rows the sweep sends, whole (as `row` takes them);
    # `settled` spares rows their maker is still sending.
    due: Callable[[datetime, datetime, int], Select]
    # The kind's typed row (`app/rows.py`) from a row mapping `due` selected.
    row: Callable[[Mapping], Any]
    # Per-message options beyond the task's (time limits, priority, another `queue`), from
    # the typed row.
    options: Callable[[Any], dict]
    # Rows that may share one message: `shares(row)` is the key rows must have in common to
    # go in one (None: the row goes alone); `group_task` takes them as `group_kwarg`, a list
    # of `[id, token]`, and the message names them in its `ROWS_HEADER` (the sweep's check
    # of what the broker holds reads it).
    shares: Callable[[Any], Hashable | None] | None = None
    group_task: str | None = None
    group_kwarg: str | None = None
    # The other queues `options` may name: the sweep's look at what the broker holds reads
    # them too.
    other_queues: tuple[str, ...] = ()

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue this kind's messages may be in."""
        return (self.queue, *self.other_queues)


# The header a message shared by several rows names their ids in (`app/outbox/broker.py`).
ROWS_HEADER = "orchestra_row_ids"

_REGISTERED: list[Sendable] = []


def register(sendable: Sendable) -> Sendable:
    """Have the sweeps look after this kind of row too; returns it."""
    if sendable not in _REGISTERED:
        _REGISTERED.append(sendable)
    return sendable


def registered() -> tuple[Sendable, ...]:
    """Every kind of row the outbox sends, in the order registered."""
    return tuple(_REGISTERED)


def configure(sender: Sender, batch: Batch | None = None) -> None:
    """Install the function that puts a message on the broker, and the one that sends many
    in one go (without it, many are sent one by one)."""
    global _sender, _batch
    _sender, _batch = sender, batch


def log_headers(row) -> dict:
    """What the worker's logs say of a task besides its id: the row's correlation id (and
    agent, for a row that has one), carried as message headers so the worker needs no query
    to log them."""
    headers = {"orchestra_correlation_id": row.correlation_id}
    agent_id = getattr(row, "agent_id", None)
    if agent_id is not None:
        headers["orchestra_agent_id"] = str(agent_id)
    return headers


def _send(sendable: Sendable, rows: list, sender: Sender | None = None) -> None:
    """Put one message on the broker: one row's, or the group's of rows that share one."""
    sender = sender or _sender
    if sender is None:
        raise RuntimeError("app.outbox.send.configure() was not called in this process")
    if len(rows) == 1:
        row = rows[0]
        task, task_id, headers = sendable.task, str(row.id), log_headers(row)
        kwargs = {sendable.id_kwarg: task_id, "token": str(row.dispatch_token)}
    else:
        task, task_id = sendable.group_task, str(uuid.uuid4())
        kwargs = {sendable.group_kwarg: [[str(r.id), str(r.dispatch_token)] for r in rows]}
        headers = {ROWS_HEADER: [str(r.id) for r in rows]}
    sender(
        task,
        kwargs=kwargs,
        task_id=task_id,  # a lone row's id: Flower, logs and rows line up
        headers=headers,
        # What Celery would write with its `saferepr` (a quarter of a send's CPU): the
        # kwargs are short strings, so their plain repr is the same text.
        argsrepr="()",
        kwargsrepr=repr(kwargs),
        **({"queue": sendable.queue} | sendable.options(rows[0])),
    )


def _messages(pairs: list[tuple[Sendable, Any]]) -> list[tuple[Sendable, list]]:
    """The messages that carry these rows, in their order: a row alone, or up to
    DISPATCH_GROUP_MAX rows of one kind with the same `shares` key together."""
    limit = config.current().dispatch_group_max
    messages: list[tuple[Sendable, list]] = []
    open_groups: dict[tuple, list] = {}
    for sendable, row in pairs:
        key = sendable.shares(row) if sendable.shares is not None and limit > 1 else None
        if key is None:
            messages.append((sendable, [row]))
            continue
        group = open_groups.get((sendable.name, key))
        if group is None or len(group) >= limit:
            group = open_groups[(sendable.name, key)] = []
            messages.append((sendable, group))
        group.append(row)
    return messages


def try_send(sendable: Sendable, row) -> bool:
    """Put one row's message on the broker; False (logged) if the broker would not take it."""
    return _try_send(sendable, [row])


def _try_send(sendable: Sendable, rows: list) -> bool:
    try:
        _send(sendable, rows)
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves it to the sweep
        ids = ", ".join(str(row.id) for row in rows[:3]) + (", ..." if len(rows) > 3 else "")
        log.warning("dispatch of %s %s failed, left to the sweep: %s", sendable.name, ids, exc)
        return False
    return True


def try_send_all(pairs: list[tuple[Sendable, Any]]) -> list[tuple[Sendable, Any]]:
    """Send many rows' messages (of any kinds) together; those the broker took.

    Rows that may share a message do (`_messages`). Through `batch()` when configured: one
    pipelined round trip instead of one per message. Its messages leave together or the
    batch fails with their delivery uncertain; then none is counted sent (logged), and the
    sweep sends them again, which is harmless: a duplicate message claims nothing (its
    token was used).
    """
    messages = _messages(pairs)
    if len(messages) == 1 or _batch is None:
        return [(s, row) for s, rows in messages if _try_send(s, rows) for row in rows]
    try:
        with _batch() as sender:
            for sendable, rows in messages:
                _send(sendable, rows, sender)
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves them to the sweep
        log.warning("dispatch of %d rows in one batch failed, left to the sweep: %s",
                    len(pairs), exc)
        return []
    return list(pairs)


def send_and_mark(conn: Connection, sendable: Sendable, rows: list) -> int:
    """Send rows the sweep found (stopping at the first the broker refuses); mark those sent."""
    sent = []
    for row in rows:
        if not try_send(sendable, row):
            break
        sent.append(row)
    mark_dispatched(conn, sendable, sent)
    return len(sent)


def mark_dispatched(conn: Connection, sendable: Sendable, rows: list) -> None:
    """Record that these dispatches (id + token) reached the broker."""
    if not rows:
        return
    table = sendable.table
    conn.execute(
        update(table)
        .where(
            tuple_(table.c.id, table.c.dispatch_token).in_(
                [(row.id, row.dispatch_token) for row in rows]
            ),
            table.c.dispatched_at.is_(None),
        )
        .values(dispatched_at=datetime.now(UTC))
    )
