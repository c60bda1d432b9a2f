"""Liveness and readiness: is the process up, can it reach what it needs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flask import current_app
from sqlalchemy import text

from api import operations_examples
from api.contract import Blueprint
from api.schemas import LivenessSchema, ReadinessSchema
from app import config, db, pubsub

bp = Blueprint(
    "health", __name__, tag="Operations", area=None, examples=operations_examples.operations
)
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
@bp.response(200, LivenessSchema, description="alive")
def liveness():
    """Liveness

    200 while the process runs; it checks nothing else. No key needed.
    """
    return {"status": "alive"}


@bp.get("/health/readiness")
@bp.response(200, ReadinessSchema, description="healthy")
@bp.alt_response(503, schema=ReadinessSchema, description="a dependency failed")
def readiness():
    """Readiness of database, redis and broker

    200 when Postgres, Redis and the broker each answer within the dependency timeout; 503
    naming the checks that failed. No key needed.
    """
    checks = run_checks()
    failed = sorted(name for name, state in checks.items() if state != "ok")
    if failed:
        return {"status": "unhealthy", "failed": failed, "checks": checks}, 503
    return {"status": "healthy", "checks": checks}
