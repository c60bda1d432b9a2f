"""Many Socket.IO clients in one process: asyncio python-socketio, one `job:<id>` room each.

A swarm process connects its clients (a bounded number at a time, as browsers arriving),
reports how many are subscribed, then records what `measure` names for every event it
receives, until told to stop: `sent_at`, the delay from the publisher's `sent_at` (in the
payload) to its arrival; `output`, each `job.output.appended` chunk with its arrival time
(`(job_id, attempt, offset, text, seq, arrived, stored)`, `stored` its envelope's timestamp:
the streams bench reads its tokens' times).
"""

from __future__ import annotations

import asyncio
import time

import socketio

CONNECTS_AT_ONCE = 25


def _sent_at(env: dict, seen: list) -> None:
    sent = (env.get("payload") or {}).get("sent_at")
    if sent is not None:
        seen.append(time.time() - sent)


def _output(env: dict, seen: list) -> None:
    if env.get("event_type") == "job.output.appended":
        p = env["payload"]
        seen.append((p["job_id"], p["attempt"], p["offset"], p["text"], env["seq"], time.time(),
                     env["timestamp"]))


MEASURES = {"sent_at": _sent_at, "output": _output}


async def _client(url: str, secret: str, job_id: str, gate, seen: list, measure):
    sio = socketio.AsyncClient(reconnection=False)

    @sio.on("event")
    async def on_event(env):
        measure(env, seen)

    async with gate:
        await sio.connect(url, auth={"token": secret}, transports=["websocket"], wait_timeout=60)
        ack = await sio.call("subscribe", {"room": f"job:{job_id}"}, timeout=60)
    if ack != {"ok": True}:
        raise RuntimeError(f"subscribe to job:{job_id} refused: {ack}")
    return sio


async def _swarm(url: str, secret: str, job_ids: list[str], ready, stop, out,
                 measure: str) -> None:
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    seen: list = []
    results = await asyncio.gather(
        *(_client(url, secret, j, gate, seen, MEASURES[measure]) for j in job_ids),
        return_exceptions=True,
    )
    clients = [r for r in results if not isinstance(r, BaseException)]
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    ready.put((len(clients), errors[:3]))
    while not stop.is_set():
        await asyncio.sleep(0.2)
    out.put(seen)
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)


def run(url: str, secret: str, job_ids: list[str], ready, stop, out,
        measure: str = "sent_at") -> None:
    """The process's body: connect `job_ids`' clients, then measure until `stop` is set."""
    asyncio.run(_swarm(url, secret, job_ids, ready, stop, out, measure))
