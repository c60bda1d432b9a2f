"""One `Settings` object: every setting declared once, read from the environment in one place.

Each field is one environment variable (its name upper-cased), with its type, default and
description; `docs/configuration.md` is generated from these declarations (`make docs`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources import PydanticBaseSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

# The artifact stores (`app/artifacts.py`): a row's bytes, or files under ARTIFACT_DIR.
ARTIFACT_STORES = ("postgres", "filesystem")
# Where a process runs (ORCHESTRA_ENV): only `development` relaxes the safe defaults.
ENVIRONMENTS = ("production", "development")
# The process roles with Postgres timeouts of their own (`db_*_timeout_<role>_s`).
PROCESS_ROLES = ("api", "relay", "worker", "cli")

# Variables the processes' command lines read (the Procfile, docker-compose.yml), not Settings:
# name -> (default, description). Listed here so that docs/configuration.md has them too.
COMMAND_LINE_VARIABLES = {
    "API_WORKERS": ("2", "gunicorn worker processes of the api (the Procfile's `api` line)."),
    "RELAY_MAX_CLIENTS": (
        "10000",
        "Socket.IO clients one relay process admits at once (gunicorn `--worker-connections`).",
    ),
    "IO_CONCURRENCY": (
        "200",
        "Runs one `io` worker (gevent pool) holds at once: jobs of generators that wait on a "
        "remote service (`http`, `chat`).",
    ),
}


# Settings whose values are secrets: a refusal names the variable, never repeats its value.
SECRET_VARIABLES = frozenset({"PROVIDER_KEY_SECRETS", "FLOWER_BASIC_AUTH"})


class SettingsError(ValueError):
    """An environment variable with a value its setting refuses; the message names it."""


def _check_hosts(value: str) -> str:
    # `host[:port]` entries; a bad one would otherwise surface only at the first `http` job.
    for entry in filter(None, (e.strip() for e in value.split(","))):
        parts = urlsplit(f"//{entry}")
        try:
            parts.port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError(f"{entry!r} has no valid port") from None
        if not parts.hostname or parts.path or parts.username:
            raise ValueError(f"{entry!r} is not host[:port]")
    return value


# The driver every process uses: psycopg 3 prepares a statement run often on the server (a
# job's statements are planned once per connection, not at every run) and cooperates with
# gevent by itself (the relay's greenlets).
_PSYCOPG = "postgresql+psycopg://"


def _with_psycopg(url: str) -> str:
    """The URL with psycopg 3 as its driver, for the spellings of PostgreSQL's URL."""
    for scheme in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(scheme):
            return _PSYCOPG + url[len(scheme):]
    return url


def _check_rate(value: str) -> str:
    from limits import parse

    try:
        parse(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a rate such as 10/second or 600/minute") from None
    return value


@functools.lru_cache(maxsize=8)
def host_rates(value: str) -> dict[str, str]:
    """`host=rate,...` (HTTP_HOST_RATES) as a dict, each rate checked."""
    rates = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        host, sep, rate = item.partition("=")
        if not sep or not host.strip():
            raise ValueError(f"{item!r} is not host=rate")
        rates[host.strip().lower()] = _check_rate(rate.strip())
    return rates


@functools.lru_cache(maxsize=8)
def fernet_keys(value: str) -> tuple[bytes, ...]:
    """PROVIDER_KEY_SECRETS as Fernet keys, first the one that encrypts; each checked (the
    message names an entry by its place, never its value: it is a secret)."""
    from cryptography.fernet import Fernet

    keys = tuple(k.strip().encode() for k in value.split(",") if k.strip())
    for place, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError:
            raise ValueError(f"entry {place} is not a Fernet key (32 url-safe base64-encoded "
                             "bytes)") from None
    return keys


def _db_timeout(what: str, role: str, default: float, why: str):
    return Field(default, description=f"Postgres `{what}_timeout` (seconds) of every connection "
                                      f"of a `{role}` process: {why}.")


_DB_WHY = {
    "api": "an api request gives up fast (503) rather than queue behind a lock",
    "relay": "a relay read gives up fast rather than queue behind a lock",
    "worker": "runs, agent commands, the sweeps and retention (in small batches) have more room",
    "cli": "everything else: keys, scripts, bench fills",
}


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (`os.environ` or a test's
    dict), reading only our exact upper-case names: `api_port` in the environment is not
    API_PORT (the library alone would match names case-insensitively)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]):
        self._env = {name: env[name] for name in env_names() if name in env}
        super().__init__(settings_cls, case_sensitive=False, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._env, False, True, None)


class Settings(BaseSettings):
    """Every knob of every process, with its default. Built from keyword arguments (tests)
    or from the environment (`from_env`); never changed after (frozen)."""

    # Only keyword arguments here: the environment is read by `from_env` alone, so that
    # `Settings(...)` in a test means exactly what it says and `current()` stays cheap.
    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=False)

    orchestra_env: Literal[ENVIRONMENTS] = Field(
        "production",
        description="Where the process runs. Outside `development` Flower refuses to start "
        "without `FLOWER_BASIC_AUTH`; `development` is for a laptop. (Not `FLOWER_*`: Flower "
        "reads those as its own options.)",
    )
    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/orchestra",
        description="PostgreSQL, as an SQLAlchemy URL. The driver is psycopg 3 "
        "(`postgresql+psycopg://`); a `postgresql://`, `postgres://` or "
        "`postgresql+psycopg2://` URL is read as that.",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis for pub/sub and rate limits (and the broker unless `BROKER_URL` is "
        "set). A password goes in the URL (`redis://:pw@host:6379/0`); `rediss://` is TLS, the "
        "server's certificate verified unless `?ssl_cert_reqs=none`, the CA (and a client "
        "certificate) named by `?ssl_ca_certs=`, `ssl_certfile=`, `ssl_keyfile=`.",
    )
    broker_url: str = Field(
        "", description="The Celery broker (same URL rules as `REDIS_URL`); empty: `REDIS_URL`."
    )
    bind_host: str = Field("127.0.0.1", description="The address the api, relay and Flower bind.")
    api_port: int = Field(8000, description="The api's port.")
    relay_port: int = Field(8001, description="The relay's port.")
    flower_port: int = Field(5555, description="Flower's port.")
    flower_basic_auth: str = Field(
        "",
        description="`user:password` for Flower: required unless `ORCHESTRA_ENV=development` "
        "(`make run` generates one).",
    )
    channel_prefix: str = Field(
        "orchestra",
        description="Prefix of every pub/sub channel and marker key: pub/sub channels are "
        "global to a Redis server (not per db), so tests give each run its own.",
    )
    max_body_bytes: int = Field(256 * 1024, description="The largest request body.")
    max_result_bytes: int = Field(
        1024 * 1024,
        description="The largest `result` a run may store (its JSON, in bytes): it is kept on "
        "the job row and in the completion event; a bigger one ends the attempt `failed` "
        "(`RESULT_TOO_LARGE`).",
    )
    progress_min_interval_s: float = Field(
        0.25,
        description="A run writes progress (and reads its job's cancel flag) at most this "
        "often; calls in between are coalesced, the latest value wins and the outcome records "
        "what is pending.",
    )
    agent_heartbeat_timeout_s: float = Field(
        60.0,
        description="A running agent without a healthy heartbeat for this long becomes "
        "`inactive`.",
    )
    agent_heartbeat_interval_s: float = Field(
        10.0,
        description="How often workers run each running agent's health hook (well under the "
        "timeout).",
    )
    agent_command_timeout_s: float = Field(
        30.0,
        description="The longest a lifecycle hook or in-worker capability may run before it "
        "fails `TIMEOUT`; also bounds one heartbeat pass.",
    )
    agent_log_retain: int = Field(
        1000, description="Log lines kept per agent; older ones are dropped as new ones arrive."
    )
    worker_lost_redelivery_s: float = Field(
        60.0, description="A job whose worker died runs again within this time."
    )
    worker_task_events: bool = Field(
        False,
        description="Workers send Celery's task events from the start. Off, they send none "
        "until Flower runs: Flower turns them on in every worker (its `enable_events` "
        "broadcast, every 5 s) and they stay on until the worker restarts. Each job's "
        "events cost its worker's main process ~1.5 ms of CPU.",
    )
    retry_backoff_base_s: float = Field(
        2.0, description="Base of the exponential backoff (with jitter) between attempts."
    )
    retry_backoff_max_s: float = Field(300.0, description="The longest backoff between attempts.")
    default_max_retries: int = Field(
        3, description="A job's `max_retries` when it gives none (3: up to 4 attempts)."
    )
    default_timeout_s: float = Field(
        3600.0, description="A job's `timeout_s` (per attempt) when it gives none."
    )
    max_timeout_s: float = Field(
        6 * 3600.0,
        description="The longest `timeout_s` one job may ask for (and so hold a worker slot); "
        "larger is a 422.",
    )
    sweep_interval_s: float = Field(1.0, description="The beat sweep's period.")
    dispatch_group_max: int = Field(
        50,
        ge=1,
        le=1000,
        description="Jobs of an instant generator (`echo`) sent together (a batch) share "
        "one Celery message, this many at most, and a worker runs and commits them in one "
        "transaction; 1 gives every job a message of its own.",
    )
    scheduler_ahead: int = Field(
        8,
        ge=1,
        le=10000,
        description="Jobs the scheduler lets wait on the broker at once, across all tenants "
        "(a shared message of instant jobs counts as one): how far a tenant's backlog can be "
        "ahead of another tenant's next job. About the workers' total concurrency: fewer "
        "leaves slots idle, more makes other tenants wait behind one tenant's backlog.",
    )
    scheduler_lookahead: int = Field(
        1000,
        ge=1,
        le=100000,
        description="How many of a tenant's waiting jobs, in its order (priority, then age), "
        "one admission pass looks at; a job further back waits until it is within them, "
        "whatever its concurrency key.",
    )
    tenant_weight: float = Field(
        1.0,
        gt=0,
        description="A tenant's share of the workers against other tenants' (per tenant: "
        "`flask --app api scheduling limits`): a tenant of weight 2 gets twice the slots "
        "of one of weight 1 while both have work waiting.",
    )
    tenant_max_running: int = Field(
        100,
        ge=0,
        description="How many of one tenant's jobs may hold a slot (on the broker or "
        "running) at once; more wait `queued` in Postgres. Per tenant: `scheduling limits`.",
    )
    tenant_max_priority: int = Field(
        9,
        ge=0,
        le=9,
        description="The highest `priority` a tenant's submission may ask for (9 the most "
        "urgent); a higher one is refused. Per tenant: `scheduling limits`.",
    )
    concurrency_key_limit: int = Field(
        10,
        ge=0,
        description="How many jobs with the same `concurrency_key` (and an agent's jobs) "
        "may hold a slot at once, unless the tenant set a limit for that key "
        "(`PUT /api/v1/concurrency-keys/{key}`) or has its own default (`scheduling limits`).",
    )
    outbox_grace_s: float = Field(
        2.0,
        description="An event or dispatch younger than this is left to the process that made "
        "it; older, the sweep takes over.",
    )
    dependency_timeout_s: float = Field(
        1.0, description="Timeout of each readiness check and Redis call."
    )
    log_level: str = Field("INFO", description="The logging level.")
    log_format: str = Field(
        "json",
        description="`json`: one JSON object per line (for collectors); `text`: for humans at "
        "a terminal.",
    )
    relay_cors_origins: str = Field(
        "",
        description="Origins allowed to open the relay's Socket.IO (`*` or a comma list); "
        "empty: the relay's own and the API's (`BIND_HOST` with `RELAY_PORT`/`API_PORT`, and "
        "`localhost` on a loopback bind; the host a request came to with those ports; "
        "`CONSOLE_RELAY_URL`'s origin; `API_CORS_ORIGINS`).",
    )
    relay_max_rooms_per_socket: int = Field(
        1000,
        description="Rooms one Socket.IO connection may be in (past it: `TOO_MANY_ROOMS` in "
        "the ack).",
    )
    relay_max_sockets_per_key: int = Field(
        100,
        description="Connections one API key may hold across every relay (counted in Redis; "
        "per process while Redis is away).",
    )
    relay_auth_timeout_s: float = Field(
        5.0,
        description="A transport without a successful Socket.IO connect is closed after this "
        "long.",
    )
    relay_send_queue_max: int = Field(
        1000,
        description="Packets a client may owe (queued, not yet written) before it is dropped: "
        "a client that stopped reading.",
    )
    relay_replay_page: int = Field(
        500,
        description="Events per page of a replay or gap fill (one short query each; at most "
        "half of `RELAY_SEND_QUEUE_MAX`).",
    )
    auth_cache_s: float = Field(
        10.0,
        ge=0,
        description="How long an api process may trust a key it verified in Postgres while "
        "the revocation generation in Redis is unchanged (every revocation through the CLI "
        "moves it, so those hold at the next request); bounds a revocation written in SQL "
        "alone. 0: every request reads Postgres.",
    )
    relay_key_recheck_s: float = Field(
        1.0,
        description="How often each relay rechecks the keys of its connections in Postgres "
        "(a revocation notice it missed on Redis).",
    )
    console_relay_url: str = Field(
        "",
        description="The relay the browser console connects to; empty: the console's own "
        "host, `RELAY_PORT`.",
    )
    api_cors_origins: str = Field(
        "",
        description="Origins whose browser pages may call `/api/v1` (comma list; Flask-Cors); "
        "empty: same origin only.",
    )
    relay_async_mode: str = Field("gevent", description="Flask-SocketIO's async mode of the relay.")
    http_allowed_hosts: str = Field(
        "",
        description="Hosts the `http` generator may call (comma list); empty: any host on a "
        "public address. A listed host on a private address needs `HTTP_PRIVATE_HOSTS` too.",
    )
    http_private_hosts: str = Field(
        "",
        description="`host[:port]` entries (comma list; no port: any port) that the `http` "
        "generator may call although they are on a private or loopback address: an operator's "
        "own generation service. Every other such address is refused (`ADDRESS_NOT_ALLOWED`); "
        "link-local and metadata ones always are.",
    )
    http_max_response_bytes: int = Field(
        1024 * 1024,
        description="The largest answer the `http` generator reads from a service (past it: a "
        "permanent failure, `RESPONSE_TOO_LARGE`), so a service cannot fill a worker's memory.",
    )
    http_connect_timeout_s: float = Field(
        3.05, description="The `http` generator's connect timeout per request (transient: retried)."
    )
    http_read_timeout_s: float = Field(
        10.0, description="The `http` generator's read timeout per request (transient: retried)."
    )
    breaker_fail_max: int = Field(
        5,
        description="The `http` generator's circuit breaker per host (shared by every worker "
        "through Redis): consecutive failures that open it.",
    )
    breaker_reset_timeout_s: float = Field(
        30.0, description="Seconds the circuit breaker stays open before one trial call."
    )
    http_host_rate: str = Field(
        "",
        description="The rate of the `http` generator's calls to one host, shared by every "
        "worker (`limits` notation: `10/second`, `600/minute`; empty: unlimited). A job that "
        "finds its host's rate used up waits `queued` until the window has room, its attempt "
        "not spent.",
    )
    http_host_rates: str = Field(
        "",
        description="Per-host rates instead of `HTTP_HOST_RATE`: `host[:port]=rate`, comma "
        "separated (`api.example.com=5/second,127.0.0.1:9000=100/minute`).",
    )
    http_max_retry_after_s: float = Field(
        600.0,
        gt=0,
        description="The longest wait a service's `Retry-After` (on 429 or 503) may ask for; a "
        "longer one is cut to this.",
    )
    http_max_hold_s: float = Field(
        3600.0,
        gt=0,
        description="A job held by its host (`Retry-After`, the shared rate) waits without "
        "spending attempts until it is this old; after that a hold is a transient failure.",
    )
    artifact_store: Literal[ARTIFACT_STORES] = Field(
        "postgres",
        description="Where generators' artifacts go: `postgres` (a row's bytes) or `filesystem` "
        "(files in `ARTIFACT_DIR`, which the api and every worker must share). Either store's "
        "artifacts stay readable after a switch.",
    )
    artifact_dir: str = Field("var/artifacts", description="The filesystem store's directory.")
    retention_s: float = Field(
        30 * 86400.0,
        description="Finished jobs (with their events and artifacts), agents' events and "
        "finished agent commands older than this are deleted by the sweep; 0 keeps all.",
    )
    audit_retention_s: float = Field(
        365 * 86400.0,
        description="The audit trail (who did what to which agent) is kept longer, on its "
        "own; 0 keeps all.",
    )
    rate_limit: str = Field(
        "600/minute",
        description="Requests per verified API key on `/api/v1`, all routes together, in "
        "Flask-Limiter's notation (`600/minute;50/second`); over it: 429 with `Retry-After`.",
    )
    auth_fail_limit: str = Field(
        "30/minute",
        description="Failed authentications (no key, or one that is not valid) per client "
        "address on `/api/v1`: random tokens share their address's bucket instead of each "
        "getting one. A valid key is never counted here.",
    )
    trusted_proxies: int = Field(
        0,
        description="Proxies in front of the api whose `X-Forwarded-For` gives the client's "
        "address; 0: the peer's address (a client could write any header it likes).",
    )
    db_statement_timeout_api_s: float = _db_timeout("statement", "api", 5.0, _DB_WHY["api"])
    db_lock_timeout_api_s: float = _db_timeout("lock", "api", 2.0, _DB_WHY["api"])
    db_statement_timeout_relay_s: float = _db_timeout("statement", "relay", 5.0, _DB_WHY["relay"])
    db_lock_timeout_relay_s: float = _db_timeout("lock", "relay", 2.0, _DB_WHY["relay"])
    db_statement_timeout_worker_s: float = _db_timeout(
        "statement", "worker", 60.0, _DB_WHY["worker"]
    )
    db_lock_timeout_worker_s: float = _db_timeout("lock", "worker", 10.0, _DB_WHY["worker"])
    db_statement_timeout_cli_s: float = _db_timeout("statement", "cli", 600.0, _DB_WHY["cli"])
    db_lock_timeout_cli_s: float = _db_timeout("lock", "cli", 30.0, _DB_WHY["cli"])
    metrics_counts_interval_s: float = Field(
        15.0,
        description="How often (seconds, at most) the sweep counts jobs and agent commands by "
        "status for `/metrics`, which reads that count from Redis instead of scanning at every "
        "scrape.",
    )
    output_flush_interval_s: float = Field(
        0.1,
        gt=0,
        le=10,
        description="A streamed output (`ctx.append`) is written at most this often (seconds) "
        "per running job, as one `job.output.appended` event of what was appended meanwhile; "
        "the first append is written at once.",
    )
    output_flush_bytes: int = Field(
        4096,
        ge=1,
        description="A streamed output is written sooner than OUTPUT_FLUSH_INTERVAL_S once "
        "this many bytes wait.",
    )
    max_output_bytes: int = Field(
        1024 * 1024,
        ge=1,
        description="The most a job's attempt may stream as output (text and deltas, UTF-8 "
        "bytes); past it the attempt fails, `OUTPUT_TOO_LARGE`.",
    )
    provider_key_secrets: str = Field(
        "",
        repr=False,  # a secret: never in a printed Settings
        description="Fernet keys (each 32 url-safe base64-encoded bytes: `python -c 'from "
        "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`), comma "
        "separated, that encrypt the API keys of chat providers (`PUT /api/v1/providers/"
        "{name}`) in Postgres: the first encrypts, every one decrypts. To rotate, put a new key "
        "first and keep the old one after it until `flask --app api providers reseal` has "
        "re-encrypted every stored key. The api and every worker need the same list. Empty: no "
        "provider key can be stored (409).",
    )
    metrics_tenant_labels: bool = Field(
        False,
        description="Whether `/metrics` shows the scheduler's gauges per tenant (a `tenant` "
        "label with its name) instead of summed over tenants. `/metrics` takes no key: turn "
        "this on only where no tenant can reach it (a private port or network).",
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value):
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _psycopg(cls, value: str) -> str:
        return _with_psycopg(value)

    @field_validator("http_private_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        return _check_hosts(value)

    @field_validator("http_host_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        return _check_rate(value) if value else value

    @field_validator("provider_key_secrets")
    @classmethod
    def _fernet_keys(cls, value: str) -> str:
        fernet_keys(value)
        return value

    @field_validator("http_host_rates")
    @classmethod
    def _rates(cls, value: str) -> str:
        host_rates(value)
        return value

    def host_rate(self, host: str) -> str:
        """The shared rate of the `http` generator's calls to `host` ("" for none)."""
        return host_rates(self.http_host_rates).get(host.lower(), self.http_host_rate)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, **_others
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    def db_timeouts(self, role: str) -> tuple[float, float]:
        """(statement_timeout, lock_timeout) in seconds of a process of `role`."""
        if role not in PROCESS_ROLES:
            raise ValueError(f"process role must be one of {', '.join(PROCESS_ROLES)}")
        return (
            getattr(self, f"db_statement_timeout_{role}_s"),
            getattr(self, f"db_lock_timeout_{role}_s"),
        )

    @property
    def effective_broker_url(self) -> str:
        """The Celery broker: `BROKER_URL`, else `REDIS_URL`."""
        return self.broker_url or self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: `os.environ`, after loading `.env`). An empty
        variable means the default; a bad value raises SettingsError naming the variable."""
        if env is None:
            from dotenv import load_dotenv

            load_dotenv(override=False)
            env = os.environ
        try:
            return cls(**_MappingSource(cls, env)())
        except ValidationError as exc:
            raise SettingsError(_explain(exc, env)) from None

    def with_(self, **changes) -> Settings:
        """A copy with some fields changed, validated (tests pass their own settings)."""
        return type(self)(**{**self.__dict__, **changes})

    def as_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        return {name.upper(): str(value) for name, value in self.__dict__.items()}


def env_names() -> list[str]:
    """Every setting's environment variable, in declaration order."""
    return [name.upper() for name in Settings.model_fields]


def _explain(exc: ValidationError, env: Mapping[str, str]) -> str:
    """One line per refused variable: its name, the reason and the value it had."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]).upper() if error["loc"] else "settings"
        reason = error["msg"].removeprefix("Value error, ")
        got = "withheld" if name in SECRET_VARIABLES else repr(env.get(name))
        lines.append(f"{name}: {reason} (got {got})")
    return "; ".join(lines)


_current: Settings | None = None
_defaults: Settings | None = None


def install(settings: Settings) -> Settings:
    """Make `settings` this process's settings (done once, by the entry point)."""
    global _current
    _current = settings
    return settings


def current() -> Settings:
    """This process's settings (the defaults until an entry point installs its own)."""
    return _current or _default()


def _default() -> Settings:
    # Built once: a Settings is frozen, and the hot path calls current() often.
    global _defaults
    if _defaults is None:
        _defaults = Settings()
    return _defaults
