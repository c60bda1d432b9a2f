"""Gunicorn's settings for the api and relay processes: their logging.

Gunicorn reads `./gunicorn.conf.py` by itself (its `--config` default), so the Procfile lines
stay as they are. Gunicorn's own lines (its master's "Booting worker", errors, the access
log) go out in `LOG_FORMAT` like the app's; the root logger is left to the app
(`app.bootstrap.configure_logging`), so nothing is written twice.
"""

from app.config import Settings

_json = Settings.from_env().log_format != "text"

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
    "handlers": {
        "error": {"class": "logging.StreamHandler", "formatter": "error",
                  "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "access",
                   "stream": "ext://sys.stdout"},
    },
    "formatters": {
        "error": {"()": "app.logs.Json"} if _json else {"()": "app.logs.Text"},
        "access": {"()": "app.logs.GunicornAccessJson"} if _json else {
            "format": "%(asctime)s %(message)s"
        },
    },
}

# Echoed by the api in every response; in text mode the access line shows it too.
access_log_format = (
    '%(h)s "%(r)s" %(s)s %(b)s %(L)ss correlation_id=%({x-correlation-id}o)s'
)

# An idle keep-alive connection is closed after this long. Gunicorn's 2 s made a client that
# reused a connection after about 2 s idle race the close and get a reset (seen in the e2e
# tests); load balancers keep idle connections for 60 s, so the server keeps them longer.
keepalive = 75
