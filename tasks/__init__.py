"""Celery tasks: thin calls into `app/`, owning only serialization, retries and limits."""

from app.errors import Unavailable

# Postgres away for a moment: run the task again later; its message carries no state.
RETRY_WHILE_DATABASE_AWAY = {
    "autoretry_for": (Unavailable,),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": None,
}
