"""One relay process must admit thousands of clients (issue 7: 5,000 with p99 <= 100 ms).

gunicorn's gevent worker admits `worker_connections` clients at once, 1,000 unless told:
past it, connections wait unanswered in the accept queue (found by `make bench`).
"""

from __future__ import annotations

import re

from scripts.procfile import read_procfile


def test_the_relay_admits_ten_thousand_clients_by_default():
    relay = read_procfile()["relay"]
    match = re.search(r"--worker-connections \$\{RELAY_MAX_CLIENTS:-(\d+)\}", relay)
    assert match, relay
    assert int(match.group(1)) >= 5000


def _tenant():
    import uuid

    from app.tenants import TenantRef

    return TenantRef(uuid.uuid4(), "acme", scopes=frozenset({"jobs:read"}))


def test_card_rooms_are_checked_like_a_jobs_card_id():
    from app.streams import RoomRefused, resolve_room

    assert resolve_room(_tenant(), "card:" + "c" * 255) == ("card:acme:" + "c" * 255, None)
    for bad in ("card:" + "c" * 256, "card:\ud800"):
        try:
            resolve_room(_tenant(), bad)
        except RoomRefused as exc:
            assert exc.code == "VALIDATION_ERROR"
        else:
            raise AssertionError(f"{bad[:20]!r} was accepted")


def test_the_default_origins_are_the_relays_own_and_the_apis():
    from api.relay.doors import origin_policy
    from app.config import Settings

    s = Settings(api_port=8000, relay_port=8001, console_relay_url="https://relay.example/x",
                 api_cors_origins="https://app.example, https://ops.example")
    allowed = origin_policy(s)
    env = {"HTTP_HOST": "10.0.0.5:8001", "wsgi.url_scheme": "http"}
    for ok in ("http://127.0.0.1:8000", "http://localhost:8001", "https://relay.example",
               "https://app.example", "https://ops.example", "http://10.0.0.5:8000",
               "http://10.0.0.5:8001"):
        assert allowed(ok, env), ok
    for foreign in ("https://evil.example", "http://10.0.0.5:9999", "https://10.0.0.5:8000",
                    "http://10.0.0.6:8000", "null", ""):
        assert not allowed(foreign, env), foreign
    assert origin_policy(s.with_(relay_cors_origins="*")) == "*"
    assert origin_policy(s.with_(relay_cors_origins="https://a.example,https://b.example")) == [
        "https://a.example", "https://b.example"]


def test_a_replay_page_always_fits_in_the_send_queue():
    from api.relay.connections import Limits

    assert Limits(replay_page=500, send_queue_max=1000).page == 500
    assert Limits(replay_page=500, send_queue_max=100).page == 50
    assert Limits(replay_page=500, send_queue_max=1).page == 1


def test_the_relay_settings_read_the_environment():
    from app.config import Settings

    s = Settings.from_env({"RELAY_MAX_ROOMS_PER_SOCKET": "7", "RELAY_MAX_SOCKETS_PER_KEY": "3",
                           "RELAY_AUTH_TIMEOUT_S": "1.5", "RELAY_SEND_QUEUE_MAX": "20",
                           "RELAY_REPLAY_PAGE": "10", "RELAY_KEY_RECHECK_S": "0.5"})
    assert (s.relay_max_rooms_per_socket, s.relay_max_sockets_per_key, s.relay_auth_timeout_s,
            s.relay_send_queue_max, s.relay_replay_page, s.relay_key_recheck_s) == (
        7, 3, 1.5, 20, 10, 0.5)
    assert Settings.from_env({}).relay_cors_origins == ""  # not `*`
