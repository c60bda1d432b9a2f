"""Celery tasks: thin calls into `app/`, owning only serialization, retries and limits."""

import sys
from contextlib import contextmanager, nullcontext

from celery.exceptions import SoftTimeLimitExceeded

from app.errors import Unavailable

# Postgres away for a moment: run the task again later; its message carries no state.
RETRY_WHILE_DATABASE_AWAY = {
    "autoretry_for": (Unavailable,),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": None,
}


def green() -> bool:
    """Whether gevent patched this process: a worker with `-P gevent` (Celery patches before
    it imports the app)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("select")


def soft_time_limit(request):
    """The task's soft time limit, raised as `SoftTimeLimitExceeded` in a green pool.

    Celery's prefork pool raises it by a signal; its gevent pool enforces only the hard limit,
    by killing the greenlet, so a run would end without recording anything (the sweep would
    find it later). Here a gevent `Timeout` raises it at the run's next wait instead: the run
    records TIMEOUT as on prefork, and the hard limit stays Celery's.
    """
    soft = (request.timelimit or (None, None))[1]
    if not soft or not green():
        return nullcontext()
    return _green_timeout(float(soft))


@contextmanager
def _green_timeout(seconds: float):
    from gevent import Timeout

    with Timeout(seconds, SoftTimeLimitExceeded):
        yield
