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
