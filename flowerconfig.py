"""Flower's configuration file, read by Flower itself from the working directory (its
`--conf` default) when `celery -A workers flower` starts: our JSON log lines, and no Flower
without a login outside development.

Tornado reads every public name here as a Flower option, hence the underscores. Its command
line parsing has by now given the root logger tornado's text handler; ours replaces it. The
options from the command line and from `FLOWER_*` variables are parsed by then too.
"""

import logging as _logging

from tornado.options import options as _options

from app import bootstrap as _bootstrap
from app.config import Settings as _Settings

for _handler in list(_logging.getLogger().handlers):
    if type(_handler.formatter).__module__ == "tornado.log":
        _logging.getLogger().removeHandler(_handler)
_settings = _Settings.from_env()
_bootstrap.configure_logging(_settings)


def _has_login(basic_auth, oauth: str) -> bool:
    """Whether Flower would ask for a login: a `user:password` with both parts, or OAuth.

    An empty FLOWER_BASIC_AUTH reaches Flower as `[""]`, which is no login at all.
    """
    pairs = [entry.partition(":") for entry in basic_auth or ()]
    return bool(oauth) or any(user and sep and password for user, sep, password in pairs)


# Flower shows every task's arguments and can revoke tasks and restart pools: outside
# development it does not start open. Exiting here, before Flower binds its port, makes
# the process fail with this line instead of serving without a login.
if _settings.orchestra_env != "development" and not _has_login(
    _options.basic_auth, _options.auth
):
    _logging.getLogger("flowerconfig").critical(
        "flower: refusing to start without a login: set FLOWER_BASIC_AUTH=user:password "
        "(or ORCHESTRA_ENV=development on a laptop)"
    )
    raise SystemExit(2)
