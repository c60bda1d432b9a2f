"""Many Socket.IO clients in one process: asyncio python-socketio, one `job:<id>` room each.

A swarm process connects its clients (a bounded number at a time, as browsers arriving),
reports how many are subscribed, then records, for every event it receives, the delay
from the publisher's `sent_at` (in the payload) to its arrival; until told to stop.
"""

from __future__ import annotations

import asyncio
import time

import socketio

CONNECTS_AT_ONCE = 25


async def _client(url: str, secret: str, job_id: str, gate, delays: list[float]):
    sio = socketio.AsyncClient(reconnection=False)

    @sio.on("event")
    async def on_event(env):
        sent = (env.get("payload") or {}).get("sent_at")
        if sent is not None:
            delays.append(time.time() - sent)

    async with gate:
        await sio.connect(url, auth={"token": secret}, transports=["websocket"], wait_timeout=60)
        ack = await sio.call("subscribe", {"room": f"job:{job_id}"}, timeout=60)
    if ack != {"ok": True}:
        raise RuntimeError(f"subscribe to job:{job_id} refused: {ack}")
    return sio


async def _swarm(url: str, secret: str, job_ids: list[str], ready, stop, out) -> None:
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    delays: list[float] = []
    results = await asyncio.gather(
        *(_client(url, secret, j, gate, delays) for j in job_ids), return_exceptions=True
    )
    clients = [r for r in results if not isinstance(r, BaseException)]
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    ready.put((len(clients), errors[:3]))
    while not stop.is_set():
        await asyncio.sleep(0.2)
    out.put(delays)
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)


def run(url: str, secret: str, job_ids: list[str], ready, stop, out) -> None:
    """The process's body: connect `job_ids`' clients, then measure until `stop` is set."""
    asyncio.run(_swarm(url, secret, job_ids, ready, stop, out))
