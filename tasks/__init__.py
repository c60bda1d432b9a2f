"""Celery tasks: thin calls into `app/`, owning only serialization, retries and limits."""
