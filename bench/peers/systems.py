"""The systems of the peers section, in the report's order, and whether each can run here."""

from __future__ import annotations

from pathlib import Path

from bench.peers import celery_pg, celery_raw, oban_, orchestra_backlog, pgqueuer_, procrastinate_
from bench.peers.method import Peer
from bench.sandbox import ROOT

OBAN_PYTHON = Path(oban_.venv_bin(ROOT)) / "python"
RAW = "celery_raw"


def _two(command: str):
    return lambda ctx: [command, command]


PEERS = (
    Peer(
        "orchestra_backlog",
        "Orchestra (echo, worker -c 2)",
        orchestra_backlog.workers,
        orchestra_backlog.progress,
        orchestra_backlog.setup,
    ),
    Peer(
        "celery_pg",
        "Celery + SQLAlchemy backend on Postgres, track_started (-c 2)",
        lambda ctx: [celery_pg.WORKERS],
        celery_pg.progress,
        celery_pg.setup,
        note="drain from the first finish: the backend keeps no start time",
    ),
    Peer(
        "procrastinate_",
        "Procrastinate 3.10, 2 workers",
        _two(procrastinate_.WORKER),
        procrastinate_.progress,
        procrastinate_.setup,
    ),
    Peer(
        "pgqueuer_",
        "PgQueuer 1.6, 2 workers, batches of 10",
        _two(pgqueuer_.WORKER),
        pgqueuer_.progress,
        pgqueuer_.setup,
    ),
    Peer(
        "oban_",
        "Oban for Python 0.7 (Python 3.12), 2 nodes, limit 10",
        oban_.workers,
        oban_.progress,
        oban_.setup,
        python=lambda: str(OBAN_PYTHON),
    ),
    Peer(RAW, "raw Celery, no state (-c 2)", lambda ctx: [celery_raw.WORKERS], celery_raw.progress),
)


def available() -> tuple[tuple[Peer, ...], list[str]]:
    """The systems that can run here, and why the others cannot."""
    missing = []
    peers = []
    for p in PEERS:
        if p.key == "oban_" and not OBAN_PYTHON.exists():
            missing.append(f"Oban: no {OBAN_PYTHON} (`make bench` makes it with Python >= 3.12)")
            continue
        peers.append(p)
    return tuple(peers), missing
