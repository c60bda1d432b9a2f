"""Flower's configuration file, read by Flower itself from the working directory (its
`--conf` default) when `celery -A workers flower` starts: our JSON log lines.

Tornado reads every public name here as a Flower option, hence the underscores. Its command
line parsing has by now given the root logger tornado's text handler; ours replaces it.
"""

import logging as _logging

from app import bootstrap as _bootstrap
from app.config import Settings as _Settings

for _handler in list(_logging.getLogger().handlers):
    if type(_handler.formatter).__module__ == "tornado.log":
        _logging.getLogger().removeHandler(_handler)
_bootstrap.configure_logging(_Settings.from_env())
