"""Liveness and readiness: is the process up, can it reach what it needs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from app import config, db, pubsub

bp = Blueprint("health", __name__)
_pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="readiness")


def _check_database() -> None:
    timeout_ms = int(config.current().dependency_timeout_s * 1000)
    with db.engine().connect() as conn:
        conn.execute(text(f"SET statement_timeout = {timeout_ms}"))
        conn.execute(text("SELECT 1"))
        conn.rollback()


def _check_redis() -> None:
    pubsub.client().ping()


def _check_broker() -> None:
    celery = current_app.extensions["celery"]
    timeout = config.current().dependency_timeout_s
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)


def run_checks() -> dict[str, str]:
    """Each dependency's state, every check bounded by the dependency timeout."""
    timeout = config.current().dependency_timeout_s + 0.5
    app = current_app._get_current_object()

    def in_app(check):
        def call():
            with app.app_context():
                check()

        return call

    futures = {
        name: _pool.submit(in_app(check))
        for name, check in (
            ("database", _check_database),
            ("redis", _check_redis),
            ("broker", _check_broker),
        )
    }
    results = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            results[name] = "ok"
        except FutureTimeout:
            results[name] = "timeout"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", named
            results[name] = f"error: {type(exc).__name__}"
    return results


@bp.get("/health/liveness")
def liveness():
    """200 while the process runs."""
    return jsonify({"status": "alive"})


@bp.get("/health/readiness")
def readiness():
    """200 when database, redis and broker answer; 503 naming the ones that do not."""
    checks = run_checks()
    failed = sorted(name for name, state in checks.items() if state != "ok")
    if failed:
        return jsonify({"status": "unhealthy", "failed": failed, "checks": checks}), 503
    return jsonify({"status": "healthy", "checks": checks})
