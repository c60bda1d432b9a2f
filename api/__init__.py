"""The Flask API: `create_app()` builds it; `flask --app api` finds it."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

from api import (
    agents,
    cli,
    console,
    correlation,
    errors,
    health,
    jobs,
    metrics,
    openapi,
    providers,
    ratelimit,
    scheduling,
)
from app import bootstrap
from app.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API for `settings` (default: from the environment)."""
    from workers import make_celery  # the producer side of Celery, for the outbox
    from workers.transport import batch_sender

    settings = settings or Settings.from_env()
    bootstrap.configure_logging(settings)
    celery = make_celery(settings)
    bootstrap.init(settings, sender=celery.send_task, role="api", batch=batch_sender(celery))

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.json.sort_keys = False
    app.extensions["celery"] = celery
    app.extensions["orchestra.settings"] = settings

    ratelimit.install(app, settings, jobs.bp, agents.bp, scheduling.bp, providers.bp)
    correlation.install(app)
    _allow_origins(app, settings)
    # Each route's input, answer and refusals are declared on it; the document gathers them.
    openapi.install(
        app, (jobs.bp, "/api/v1"), (scheduling.bp, "/api/v1"), (providers.bp, "/api/v1"),
        (agents.bp, "/api/v1"), (health.bp, None), (metrics.bp, None),
    )
    app.register_blueprint(cli.bp)
    app.register_blueprint(cli.scheduling_bp)
    app.register_blueprint(cli.providers_bp)
    app.register_blueprint(console.bp)
    errors.register(app)
    return app


def _allow_origins(app: Flask, settings: Settings) -> None:
    """Cross-origin access to /api/v1 for the configured origins only (Flask-Cors)."""
    origins = [o.strip() for o in settings.api_cors_origins.split(",") if o.strip()]
    if not origins:
        return  # same origin only: no CORS headers at all
    CORS(
        app,
        resources={r"/api/v1/*": {"origins": origins}},
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Correlation-ID"],
        expose_headers=["Location", "Retry-After", "Idempotent-Replayed"],
        max_age=600,
    )
