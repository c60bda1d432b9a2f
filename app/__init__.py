"""Orchestra's domain: jobs, events and agents. Knows nothing of Flask or Celery."""
