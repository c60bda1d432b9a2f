"""Safe defaults of the Celery configuration and the settings an operator starts with."""

from __future__ import annotations

import ssl

import pytest

import celeryconfig
from app.config import Settings


def test_beat_keeps_its_schedule_in_memory():
    """Beat uses Celery's in-memory scheduler: no shelve file (a pickle) is named or kept."""
    conf = celeryconfig.from_settings(Settings())
    assert conf["beat_scheduler"] == "celery.beat:Scheduler"
    assert "beat_schedule_filename" not in conf


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "redis://:secret@127.0.0.1:6379/0", "unix:///run/redis.sock"],
)
def test_plain_redis_urls_need_no_ssl(url):
    """Only rediss:// turns TLS on; a password stays in the URL, where kombu reads it."""
    assert celeryconfig.broker_use_ssl(url) is None
    assert celeryconfig.from_settings(Settings(redis_url=url))["broker_use_ssl"] is None


def test_rediss_verifies_the_server_certificate_unless_the_url_says_otherwise():
    """Kombu alone would not check a rediss:// server's certificate at all; ours requires
    it, as redis-py does for the same URL."""
    conf = celeryconfig.from_settings(Settings(redis_url="rediss://:pw@redis.example:6380/0"))
    assert conf["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert celeryconfig.broker_use_ssl("rediss://h/0?ssl_cert_reqs=none") == {
        "ssl_cert_reqs": ssl.CERT_NONE
    }
    assert celeryconfig.broker_use_ssl("rediss://h/0?ssl_cert_reqs=optional") == {
        "ssl_cert_reqs": ssl.CERT_OPTIONAL
    }


def test_rediss_url_names_the_certificate_files():
    """The CA and a client certificate come from the URL's query, as redis-py reads them."""
    url = "rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
    assert celeryconfig.broker_use_ssl(url) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
    }


def test_a_broker_url_of_its_own_decides_the_brokers_tls():
    """BROKER_URL, when given, is the broker's URL and so its TLS."""
    s = Settings(redis_url="redis://r/0", broker_url="rediss://b/0")
    assert celeryconfig.from_settings(s)["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def test_a_misspelt_cert_requirement_is_refused():
    with pytest.raises(ValueError, match="ssl_cert_reqs"):
        celeryconfig.broker_use_ssl("rediss://h/0?ssl_cert_reqs=yes-please")


def test_operator_settings_and_their_defaults():
    """Production unless told; the request bound and the audit trail's retention are read."""
    d = Settings.from_env({})
    assert d.orchestra_env == "production"
    assert d.max_timeout_s == 6 * 3600 and d.max_timeout_s >= d.default_timeout_s
    assert d.audit_retention_s == 365 * 86400 and d.audit_retention_s > d.retention_s
    s = Settings.from_env(
        {"ORCHESTRA_ENV": "development", "MAX_TIMEOUT_S": "60", "AUDIT_RETENTION_S": "7"}
    )
    assert (s.orchestra_env, s.max_timeout_s, s.audit_retention_s) == ("development", 60, 7)
    with pytest.raises(ValueError, match="ORCHESTRA_ENV"):
        Settings.from_env({"ORCHESTRA_ENV": "prod"})


def test_no_setting_is_named_like_a_flower_option():
    """Flower reads every FLOWER_* variable as one of its options and fails on one it does
    not know; every child process gets all our settings as variables."""
    from flower.options import default_options

    names = [n for n in Settings().as_env() if n.startswith("FLOWER_")]
    assert all(n[len("FLOWER_"):].lower() in default_options for n in names), names
