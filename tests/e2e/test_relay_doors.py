"""The relay's doors, on real relay processes: revocation reaches open sockets on every relay,
caps per key and per socket, silent transports closed, origins, and a listener that never
waits on Postgres. Events are published straight to Redis where no worker is needed."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import psycopg
import pytest
import requests
import socketio
from sqlalchemy import func, update
from sqlalchemy.engine import make_url

from app import db, tenants
from app.models import ApiKey
from scripts.sandbox import ROOT
from tests.support.published import envelope, publish
from tests.support.sio import EventClient, RawEngineIO
from tests.support.stack import VENV_BIN, Stack, stack_env, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def relays(domain):
    """A stack of relays only: each test starts the relays it needs, with its settings."""
    stack = Stack(stack_env(domain))
    yield stack
    print(stack.logs())
    stack.stop()


def start_relay(stack: Stack, **env) -> str:
    proc = stack.start("relay", **env)
    stack.wait_http(proc)
    return stack.url(proc)


class Watched(EventClient):
    """An EventClient that notes when the relay disconnected it."""

    def __init__(self, url: str, secret: str):
        self.gone_at: float | None = None
        super().__init__(url, secret)
        self.sio.on("disconnect", self._gone)

    def _gone(self, *_):
        self.gone_at = time.monotonic()


def revoke_in_sql_only(key_id) -> None:
    """Revoke without the notice: only a relay's own check of Postgres can notice it."""
    with db.transaction() as conn:
        conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=func.now()))


def flask_cli(settings, *args) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(VENV_BIN, "flask"), "--app", "api", "keys", *args],
                          cwd=ROOT, env=stack_env(settings), capture_output=True, text=True,
                          timeout=60, check=True)


def test_a_key_revoked_with_the_cli_is_disconnected_on_every_relay(domain, relays, tenant):
    # The periodic check is pushed out of the way: only the CLI's notice on Redis can act.
    urls = [start_relay(relays, RELAY_KEY_RECHECK_S=3600) for _ in range(2)]
    doomed = tenants.create_key(tenant[1].name)
    watched = [Watched(url, doomed) for url in urls]
    try:
        for w in watched:
            assert w.subscribe("tenant") == {"ok": True}
        t0 = time.monotonic()
        flask_cli(domain, "revoke", doomed[:12])
        wait_until(lambda: all(w.gone_at for w in watched), 10, 0.02, "both sockets dropped")
        took = [round(w.gone_at - t0, 3) for w in watched]
        print(f"revoked with the CLI: disconnected after {took} s (CLI start included)")
        for url in urls:
            with pytest.raises(socketio.exceptions.ConnectionError):
                EventClient(url, doomed)
    finally:
        for w in watched:
            w.close()


def test_a_revocation_missed_on_redis_is_found_in_postgres_within_a_second(relays, tenant):
    urls = [start_relay(relays, RELAY_KEY_RECHECK_S=1.0) for _ in range(2)]
    doomed = tenants.create_key(tenant[1].name)
    key_id = tenants.authenticate(doomed).key_id
    watched = [Watched(url, doomed) for url in urls]
    try:
        t0 = time.monotonic()
        revoke_in_sql_only(key_id)
        wait_until(lambda: all(w.gone_at for w in watched), 10, 0.02, "both sockets dropped")
        took = [round(w.gone_at - t0, 3) for w in watched]
        print(f"revoked in SQL only: disconnected after {took} s")
        with pytest.raises(socketio.exceptions.ConnectionError):
            EventClient(urls[0], doomed)
    finally:
        for w in watched:
            w.close()


def test_every_subscribe_rechecks_the_key(relays, tenant):
    url = start_relay(relays, RELAY_KEY_RECHECK_S=3600)
    doomed = tenants.create_key(tenant[1].name)
    client = Watched(url, doomed)
    try:
        assert client.subscribe("tenant") == {"ok": True}
        revoke_in_sql_only(tenants.authenticate(doomed).key_id)  # no notice, no recheck
        ack = client.subscribe("card:c1")
        assert ack["ok"] is False and ack["error"]["code"] == "UNAUTHORIZED", ack
        wait_until(lambda: client.gone_at, 10, 0.02, "the revoked socket dropped")
    finally:
        client.close()


def test_a_transport_that_never_authenticates_is_closed(relays, tenant):
    url = start_relay(relays, RELAY_AUTH_TIMEOUT_S=1)
    silent = RawEngineIO(url)  # opens Engine.IO, never sends the Socket.IO CONNECT
    refused = RawEngineIO(url)
    assert refused.connect("orc_not_a_key").startswith("44")  # refused, transport still open
    authed = EventClient(url, tenant[0])
    try:
        took = [silent.wait_closed(15), refused.wait_closed(15)]
        print(f"unauthenticated transports closed after {took} s (timeout 1 s)")
        # A long-polling transport that says nothing is closed too.
        handshake = requests.get(url + "/socket.io/?EIO=4&transport=polling", timeout=5)
        sid = json.loads(handshake.text[1:])["sid"]

        def poll_refused():
            r = requests.get(f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}", timeout=30)
            return r.status_code == 400 or r.text.startswith("1") or "\x1e1" in r.text

        wait_until(poll_refused, 15, 0.1, "the silent polling transport closed")
        assert authed.subscribe("tenant") == {"ok": True}  # an authenticated one stays
    finally:
        for c in (silent, refused, authed):
            c.close()


def test_sockets_per_key_are_capped_across_relays(relays, tenant):
    urls = [start_relay(relays, RELAY_MAX_SOCKETS_PER_KEY=2) for _ in range(2)]
    secret = tenants.create_key(tenant[1].name)
    first, second = EventClient(urls[0], secret), EventClient(urls[1], secret)
    try:
        for url in urls:
            with pytest.raises(socketio.exceptions.ConnectionError):
                EventClient(url, secret)
        other_key = EventClient(urls[0], tenant[0])
        assert other_key.subscribe("tenant") == {"ok": True}
        other_key.close()
        first.close()  # gives its seat back
        third = wait_until(lambda: EventClient(urls[1], secret), 10, 0.1, "a freed seat")
        third.close()
    finally:
        first.close()
        second.close()


def test_rooms_per_socket_are_capped(relays, tenant):
    url = start_relay(relays, RELAY_MAX_ROOMS_PER_SOCKET=2)
    client = EventClient(url, tenant[0])
    try:
        assert client.subscribe("tenant") == {"ok": True}
        assert client.subscribe("card:a") == {"ok": True}
        ack = client.subscribe("card:b")
        assert ack["ok"] is False and ack["error"]["code"] == "TOO_MANY_ROOMS", ack
        assert client.subscribe("card:a") == {"ok": True}  # a room it is in already
        assert client.unsubscribe("card:a") == {"ok": True}
        assert client.subscribe("card:b") == {"ok": True}
    finally:
        client.close()


def test_the_default_origins_are_the_relays_and_the_apis(relays, tenant):
    api_port = 18_765  # only named: the relay compares origins, nothing listens there
    url = start_relay(relays, API_PORT=api_port)
    relay_port = url.rsplit(":", 1)[1]
    handshake = url + "/socket.io/?EIO=4&transport=polling"

    def status(origin):
        return requests.get(handshake, headers={"Origin": origin}, timeout=5).status_code

    assert status("https://evil.example") == 400
    assert status(f"http://127.0.0.1:{api_port}") == 200  # the console, served by the api
    assert status(f"http://localhost:{relay_port}") == 200
    client = EventClient(url, tenant[0])  # python-socketio sends the relay's URL as Origin
    try:
        assert client.subscribe("tenant") == {"ok": True}
    finally:
        client.close()
    with pytest.raises(ConnectionRefusedError):
        RawEngineIO(url, origin="https://evil.example")  # a websocket from a foreign page


class TableLock:
    """An ACCESS EXCLUSIVE lock on `events`, held by a connection of the test's own: every
    query of the relay that reads events waits until `release()`."""

    def __init__(self, settings):
        url = make_url(settings.database_url)
        self.conn = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                     dbname=url.database)
        self.conn.cursor().execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")

    def waiters(self) -> int:
        """Queries of others that wait on this lock now."""
        with psycopg.connect(self.conn.info.dsn) as other, other.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_locks"
                        " WHERE relation = 'events'::regclass AND NOT granted")
            return cur.fetchone()[0]

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def test_a_slow_gap_fill_delays_no_other_client(domain, relays, tenant, other_tenant):
    url = start_relay(relays)
    slow, prompt = EventClient(url, tenant[0]), EventClient(url, other_tenant[0])
    lock = None
    try:
        assert slow.subscribe("tenant") == {"ok": True}
        assert prompt.subscribe("tenant") == {"ok": True}
        gap_subject, live_subject = str(uuid.uuid4()), str(uuid.uuid4())
        lock = TableLock(domain)
        # seq 5 first seen: the slow client's gap fill reads Postgres and waits on the lock.
        publish(domain, [envelope(tenant[1].name, gap_subject, 5)])
        wait_until(lock.waiters, 15, 0.02, "the gap fill waiting on the lock")
        t0 = time.monotonic()
        publish(domain, [envelope(other_tenant[1].name, live_subject, s) for s in range(1, 21)])
        wait_until(lambda: len(prompt.of(live_subject)) == 20, 15, 0.01,
                   "the other tenant's live events while the gap fill waits")
        print(f"20 live events with a gap fill stuck on a lock: {time.monotonic() - t0:.3f} s")
        assert [e["seq"] for e in prompt.of(live_subject)] == list(range(1, 21))
        assert slow.of(gap_subject) == []  # still waiting on Postgres
        publish(domain, [envelope(tenant[1].name, gap_subject, 6)])
        lock.release()
        lock = None
        wait_until(lambda: len(slow.of(gap_subject)) == 2, 15, 0.02, "the gap fill")
        assert [e["seq"] for e in slow.of(gap_subject)] == [5, 6]
    finally:
        if lock is not None:
            lock.release()
        slow.close()
        prompt.close()
