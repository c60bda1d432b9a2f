"""One `Settings` object, read from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from urllib.parse import urlsplit


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return default if raw in (None, "") else int(raw)


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return default if raw in (None, "") else float(raw)


def _env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple) -> str:
    # A typo here would otherwise surface only when the first job completes.
    value = env.get(name) or default
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _env_hosts(env: Mapping[str, str], name: str) -> str:
    # `host[:port]` entries; a bad one would otherwise surface only at the first `http` job.
    value = env.get(name, "")
    for entry in filter(None, (e.strip() for e in value.split(","))):
        parts = urlsplit(f"//{entry}")
        try:
            parts.port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError(f"{name}: {entry!r} has no valid port") from None
        if not parts.hostname or parts.path or parts.username:
            raise ValueError(f"{name}: {entry!r} is not host[:port]")
    return value


# The artifact stores (`app/artifacts.py`): a row's bytes, or files under ARTIFACT_DIR.
ARTIFACT_STORES = ("postgres", "filesystem")
# Where a process runs (ORCHESTRA_ENV): only `development` relaxes the safe defaults.
ENVIRONMENTS = ("production", "development")


# The process kinds with Postgres timeouts of their own (`db_*_timeout_<kind>_s`).
PROCESS_KINDS = ("api", "relay", "worker", "cli")


def _db_timeouts(env: Mapping[str, str], d) -> dict[str, float]:
    """`DB_STATEMENT_TIMEOUT_<KIND>_S` and `DB_LOCK_TIMEOUT_<KIND>_S` of every process kind."""
    out = {}
    for kind in PROCESS_KINDS:
        for what in ("statement", "lock"):
            name = f"db_{what}_timeout_{kind}_s"
            out[name] = _env_float(env, name.upper(), getattr(d, name))
    return out


@dataclass(frozen=True)
class Settings:
    """Every knob of every process, with the contract's defaults."""

    # `production` unless told: Flower then refuses to start without FLOWER_BASIC_AUTH.
    # `development` is for a laptop. (Not FLOWER_*: Flower reads those as its own options.)
    orchestra_env: str = "production"
    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/orchestra"
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = ""  # empty: same as redis_url
    bind_host: str = "127.0.0.1"
    api_port: int = 8000
    relay_port: int = 8001
    flower_port: int = 5555
    flower_basic_auth: str = ""
    # Pub/sub channels are global to a Redis server (not per db), so every channel name
    # carries this prefix; tests give each run its own.
    channel_prefix: str = "orchestra"
    max_body_bytes: int = 256 * 1024
    # The largest `result` a run may store (its JSON, in bytes): it is kept on the job row
    # and in the completion event; a bigger one ends the attempt `failed` (RESULT_TOO_LARGE).
    max_result_bytes: int = 1024 * 1024
    # One run writes progress (and reads its job's cancel flag) at most this often; calls in
    # between are coalesced, the latest value wins and the outcome records what is pending.
    progress_min_interval_s: float = 0.25
    agent_heartbeat_timeout_s: float = 60.0
    # How often workers run each running agent's health hook (well under the timeout).
    agent_heartbeat_interval_s: float = 10.0
    # The longest a lifecycle hook or in-worker capability may run before it fails TIMEOUT.
    agent_command_timeout_s: float = 30.0
    # Log lines kept per agent; older ones are dropped as new ones arrive.
    agent_log_retain: int = 1000
    worker_lost_redelivery_s: float = 60.0
    retry_backoff_base_s: float = 2.0
    retry_backoff_max_s: float = 300.0
    default_max_retries: int = 3
    default_timeout_s: float = 3600.0
    # The longest `timeout_s` one job may ask for (and so hold a worker slot); larger is 422.
    max_timeout_s: float = 6 * 3600.0
    sweep_interval_s: float = 1.0
    # An event or dispatch younger than this is left to the process that made it.
    outbox_grace_s: float = 2.0
    dependency_timeout_s: float = 1.0
    log_level: str = "INFO"
    # `json`: one JSON object per line (for collectors); `text`: for humans at a terminal.
    log_format: str = "json"
    # Origins allowed to open the relay's Socket.IO (`*` or a comma list); empty: the relay's
    # own and the API's (BIND_HOST and ports, CONSOLE_RELAY_URL, API_CORS_ORIGINS).
    relay_cors_origins: str = ""
    # The relay's bounds: rooms one connection may join; sockets one key may hold across
    # every relay (counted in Redis); seconds a transport may stay open without a Socket.IO
    # connect; packets a client may owe before it is dropped (a client that stopped
    # reading); events per page of a replay; seconds between checks of connected keys in
    # Postgres (revocations a relay missed on Redis).
    relay_max_rooms_per_socket: int = 1000
    relay_max_sockets_per_key: int = 100
    relay_auth_timeout_s: float = 5.0
    relay_send_queue_max: int = 1000
    relay_replay_page: int = 500
    relay_key_recheck_s: float = 1.0
    # The relay the browser console connects to; empty: the console's own host, RELAY_PORT.
    console_relay_url: str = ""
    # Origins whose browser pages may call /api/v1 (comma-separated); empty: same origin only.
    api_cors_origins: str = ""
    relay_async_mode: str = "gevent"
    # Hosts the `http` generator may call (comma-separated); empty allows any public address.
    http_allowed_hosts: str = ""
    # `host[:port]` entries (comma-separated; no port: any port) that the `http` generator may
    # call although they are on a private or loopback address: an operator's own generation
    # service. Every other such address is refused; link-local and metadata ones always are.
    http_private_hosts: str = ""
    # The largest answer the `http` generator reads from a service (past it: a permanent
    # failure, RESPONSE_TOO_LARGE), so a service cannot fill a worker's memory.
    http_max_response_bytes: int = 1024 * 1024
    # The `http` generator's timeouts per request: to connect, and to wait for the answer.
    http_connect_timeout_s: float = 3.05
    http_read_timeout_s: float = 10.0
    # Its circuit breaker per host, shared by every worker through Redis: consecutive
    # failures that open it, and seconds it stays open before one trial call (half-open).
    breaker_fail_max: int = 5
    breaker_reset_timeout_s: float = 30.0
    # Where generators' artifacts go: `postgres` (a row's bytes) or `filesystem` (files in
    # `artifact_dir`, which the api and every worker must share). Either store's artifacts
    # stay readable after a switch.
    artifact_store: str = "postgres"
    artifact_dir: str = "var/artifacts"
    # Finished jobs (and their events), agents' events and finished agent commands older
    # than this are deleted by the sweep; 0 keeps all.
    retention_s: float = 30 * 86400.0
    # The audit trail (who did what to which agent) is kept longer, on its own; 0 keeps all.
    audit_retention_s: float = 365 * 86400.0
    # Requests per key on /api/v1, in Flask-Limiter's notation ("600/minute;50/second").
    rate_limit: str = "600/minute"
    # Failed authentications (no key, or one that is not valid) per client address on
    # /api/v1: random tokens share their address's bucket instead of each getting one.
    auth_fail_limit: str = "30/minute"
    # Proxies in front of the api whose `X-Forwarded-For` is trusted (0: use the peer's
    # address, for a client could write any header it likes).
    trusted_proxies: int = 0
    # Postgres `statement_timeout` and `lock_timeout` (seconds) of every connection, per
    # process kind: an api request or a relay read gives up fast (503) rather than queue
    # behind a lock; a worker (runs, agent commands, the sweeps and retention, in small
    # batches) has more room; `cli` is everything else (keys, scripts, bench fills).
    db_statement_timeout_api_s: float = 5.0
    db_lock_timeout_api_s: float = 2.0
    db_statement_timeout_relay_s: float = 5.0
    db_lock_timeout_relay_s: float = 2.0
    db_statement_timeout_worker_s: float = 60.0
    db_lock_timeout_worker_s: float = 10.0
    db_statement_timeout_cli_s: float = 600.0
    db_lock_timeout_cli_s: float = 30.0
    # How often (seconds, at most) the sweep counts jobs and agent commands by status for
    # `/metrics`, which reads that count from Redis instead of scanning at every scrape.
    metrics_counts_interval_s: float = 15.0

    def db_timeouts(self, kind: str) -> tuple[float, float]:
        """(statement_timeout, lock_timeout) in seconds of a process of `kind`."""
        if kind not in PROCESS_KINDS:
            raise ValueError(f"process kind must be one of {', '.join(PROCESS_KINDS)}")
        return (
            getattr(self, f"db_statement_timeout_{kind}_s"),
            getattr(self, f"db_lock_timeout_{kind}_s"),
        )

    @property
    def effective_broker_url(self) -> str:
        """The Celery broker: `BROKER_URL`, else `REDIS_URL`."""
        return self.broker_url or self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: `os.environ`, after loading `.env`)."""
        if env is None:
            from dotenv import load_dotenv

            load_dotenv(override=False)
            env = os.environ
        d = cls()
        return cls(
            orchestra_env=_env_choice(env, "ORCHESTRA_ENV", d.orchestra_env, ENVIRONMENTS),
            database_url=env.get("DATABASE_URL") or d.database_url,
            redis_url=env.get("REDIS_URL") or d.redis_url,
            broker_url=env.get("BROKER_URL", ""),
            bind_host=env.get("BIND_HOST") or d.bind_host,
            api_port=_env_int(env, "API_PORT", d.api_port),
            relay_port=_env_int(env, "RELAY_PORT", d.relay_port),
            flower_port=_env_int(env, "FLOWER_PORT", d.flower_port),
            flower_basic_auth=env.get("FLOWER_BASIC_AUTH", ""),
            channel_prefix=env.get("CHANNEL_PREFIX") or d.channel_prefix,
            max_body_bytes=_env_int(env, "MAX_BODY_BYTES", d.max_body_bytes),
            max_result_bytes=_env_int(env, "MAX_RESULT_BYTES", d.max_result_bytes),
            progress_min_interval_s=_env_float(
                env, "PROGRESS_MIN_INTERVAL_S", d.progress_min_interval_s
            ),
            agent_heartbeat_timeout_s=_env_float(
                env, "AGENT_HEARTBEAT_TIMEOUT_S", d.agent_heartbeat_timeout_s
            ),
            agent_heartbeat_interval_s=_env_float(
                env, "AGENT_HEARTBEAT_INTERVAL_S", d.agent_heartbeat_interval_s
            ),
            agent_command_timeout_s=_env_float(
                env, "AGENT_COMMAND_TIMEOUT_S", d.agent_command_timeout_s
            ),
            agent_log_retain=_env_int(env, "AGENT_LOG_RETAIN", d.agent_log_retain),
            worker_lost_redelivery_s=_env_float(
                env, "WORKER_LOST_REDELIVERY_S", d.worker_lost_redelivery_s
            ),
            retry_backoff_base_s=_env_float(env, "RETRY_BACKOFF_BASE_S", d.retry_backoff_base_s),
            retry_backoff_max_s=_env_float(env, "RETRY_BACKOFF_MAX_S", d.retry_backoff_max_s),
            default_max_retries=_env_int(env, "DEFAULT_MAX_RETRIES", d.default_max_retries),
            default_timeout_s=_env_float(env, "DEFAULT_TIMEOUT_S", d.default_timeout_s),
            max_timeout_s=_env_float(env, "MAX_TIMEOUT_S", d.max_timeout_s),
            sweep_interval_s=_env_float(env, "SWEEP_INTERVAL_S", d.sweep_interval_s),
            outbox_grace_s=_env_float(env, "OUTBOX_GRACE_S", d.outbox_grace_s),
            dependency_timeout_s=_env_float(env, "DEPENDENCY_TIMEOUT_S", d.dependency_timeout_s),
            log_level=env.get("LOG_LEVEL") or d.log_level,
            log_format=(env.get("LOG_FORMAT") or d.log_format).lower(),
            relay_cors_origins=env.get("RELAY_CORS_ORIGINS") or d.relay_cors_origins,
            relay_max_rooms_per_socket=_env_int(
                env, "RELAY_MAX_ROOMS_PER_SOCKET", d.relay_max_rooms_per_socket
            ),
            relay_max_sockets_per_key=_env_int(
                env, "RELAY_MAX_SOCKETS_PER_KEY", d.relay_max_sockets_per_key
            ),
            relay_auth_timeout_s=_env_float(env, "RELAY_AUTH_TIMEOUT_S", d.relay_auth_timeout_s),
            relay_send_queue_max=_env_int(env, "RELAY_SEND_QUEUE_MAX", d.relay_send_queue_max),
            relay_replay_page=_env_int(env, "RELAY_REPLAY_PAGE", d.relay_replay_page),
            relay_key_recheck_s=_env_float(env, "RELAY_KEY_RECHECK_S", d.relay_key_recheck_s),
            console_relay_url=env.get("CONSOLE_RELAY_URL", ""),
            api_cors_origins=env.get("API_CORS_ORIGINS", ""),
            relay_async_mode=env.get("RELAY_ASYNC_MODE") or d.relay_async_mode,
            http_allowed_hosts=env.get("HTTP_ALLOWED_HOSTS", ""),
            http_private_hosts=_env_hosts(env, "HTTP_PRIVATE_HOSTS"),
            http_max_response_bytes=_env_int(
                env, "HTTP_MAX_RESPONSE_BYTES", d.http_max_response_bytes
            ),
            http_connect_timeout_s=_env_float(
                env, "HTTP_CONNECT_TIMEOUT_S", d.http_connect_timeout_s
            ),
            http_read_timeout_s=_env_float(env, "HTTP_READ_TIMEOUT_S", d.http_read_timeout_s),
            breaker_fail_max=_env_int(env, "BREAKER_FAIL_MAX", d.breaker_fail_max),
            breaker_reset_timeout_s=_env_float(
                env, "BREAKER_RESET_TIMEOUT_S", d.breaker_reset_timeout_s
            ),
            artifact_store=_env_choice(env, "ARTIFACT_STORE", d.artifact_store, ARTIFACT_STORES),
            artifact_dir=env.get("ARTIFACT_DIR") or d.artifact_dir,
            rate_limit=env.get("RATE_LIMIT") or d.rate_limit,
            auth_fail_limit=env.get("AUTH_FAIL_LIMIT") or d.auth_fail_limit,
            trusted_proxies=_env_int(env, "TRUSTED_PROXIES", d.trusted_proxies),
            **_db_timeouts(env, d),
            metrics_counts_interval_s=_env_float(
                env, "METRICS_COUNTS_INTERVAL_S", d.metrics_counts_interval_s
            ),
            retention_s=_env_float(env, "RETENTION_S", d.retention_s),
            audit_retention_s=_env_float(env, "AUDIT_RETENTION_S", d.audit_retention_s),
        )

    def with_(self, **changes) -> Settings:
        """A copy with some fields changed (tests pass their own settings)."""
        return replace(self, **changes)

    def as_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        out = {}
        for f in fields(self):
            out[f.name.upper()] = str(getattr(self, f.name))
        return out


_current: Settings | None = None


def install(settings: Settings) -> Settings:
    """Make `settings` this process's settings (done once, by the entry point)."""
    global _current
    _current = settings
    return settings


def current() -> Settings:
    """This process's settings (the defaults until an entry point installs its own)."""
    return _current or Settings()
