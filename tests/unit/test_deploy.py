"""The container deployment (Dockerfile, docker-compose.yml) stays in step with the Procfile."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

import celeryconfig
from app.config import COMMAND_LINE_VARIABLES, Settings, env_names
from app.outbox import names
from scripts.procfile import read_procfile

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("api", "relay", "worker", "io", "system", "beat", "flower")
# What `docker-compose config` is given for the variables compose requires (`${VAR:?...}`).
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "REDIS_PASSWORD": "redis-secret",
    "FLOWER_BASIC_AUTH": "ops:flower-secret",
    "PROVIDER_KEY_SECRETS": "u3EOXOlfgZmI_m6lnTBArkR4Ls4d7X7q8Q0ZJQqQZ4M=",
}
PUBLISHED_PORTS = {"api": 8000, "relay": 8001, "flower": 5555}
# Variables the compose file may set although Settings.from_env does not read them: those
# app/config.py documents as read by the command lines.
DOCUMENTED_EXTRAS = COMMAND_LINE_VARIABLES
_COMPOSE_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")
_COMPOSE_REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")


@cache
def procfile() -> dict[str, str]:
    """The Procfile's processes, name to command (the parser the tests and bench use)."""
    return read_procfile()


@cache
def compose() -> dict:
    """docker-compose.yml, anchors and merge keys resolved by PyYAML."""
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def service(name: str) -> dict:
    """One compose service."""
    return compose()["services"][name]


def environment(name: str) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or a list."""
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def with_compose_defaults(value: str) -> str:
    """`value` as compose renders it with none of its `${VAR:-default}` variables set, and
    the required ones (`${VAR:?message}`) given as in REQUIRED_SECRETS."""
    value = _COMPOSE_REQUIRED.sub(lambda m: REQUIRED_SECRETS[m.group(1)], value)
    return _COMPOSE_DEFAULT.sub(lambda m: m.group(2), value)


def compose_literal(value: str) -> str:
    """What compose hands the container for `value`, which must not be interpolated at all."""
    parts = re.split(r"(\$\$)", value)
    unescaped = [part for part in parts if part != "$$" and "$" in part]
    assert not unescaped, f"compose would interpolate the bare $ in {unescaped} of {value!r}"
    return "".join("$" if part == "$$" else part for part in parts)


def shell_command(command: list[str] | str) -> str:
    """The script of a `["sh", "-c", script]` command."""
    assert isinstance(command, list) and len(command) == 3, command
    assert command[:2] == ["sh", "-c"], command
    return command[2]


def config_env_names() -> set[str]:
    """The variable names Settings.from_env reads: one per declared setting."""
    return set(env_names())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = (line.strip().split(None, 1) for line in joined.splitlines() if line.strip())
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def dockerfile_args(instruction: str) -> list[str]:
    """The arguments of every occurrence of one Dockerfile instruction."""
    return [args for name, args in dockerfile_instructions() if name == instruction]


def compose_cli() -> list[str] | None:
    """A compose CLI that validates without an engine: the v2 plugin, else Debian's
    `docker-compose` (`make compose` installs it)."""
    if shutil.which("docker") is not None:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`compose config -q` on our file with exactly the secrets in `env`."""
    cli = compose_cli()
    if cli is None:
        if os.environ.get("CI"):
            pytest.fail("no compose CLI under CI: `make compose` installs docker-compose")
        pytest.skip("no compose CLI here (`make compose` installs docker-compose)")
    base = {k: v for k, v in os.environ.items() if k not in REQUIRED_SECRETS}
    return subprocess.run(
        [*cli, "-f", "docker-compose.yml", "config", "-q"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_has_every_service():
    """The infrastructure, the one-shot migration and every Procfile process are services."""
    expected = {"postgres", "redis", "migrate", *APP_SERVICES}
    assert expected <= set(compose()["services"])
    assert set(procfile()) == set(APP_SERVICES)


def test_migrate_is_a_one_shot_alembic_upgrade():
    """migrate runs `alembic upgrade head` once, after Postgres is healthy, and is not restarted."""
    migrate = service("migrate")
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "build" in migrate


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_waits_for_migration_and_redis(name):
    """Each app process is built here and starts after the schema is migrated and Redis is up."""
    app_service = service(name)
    assert "build" in app_service
    assert app_service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app_service["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_reaches_the_compose_databases(name):
    """Each app process talks to the compose Postgres and Redis and listens on every interface."""
    settings = Settings.from_env(
        {k: with_compose_defaults(v) for k, v in environment(name).items()}
    )
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.database_url.endswith("@postgres:5432/orchestra")
    assert settings.redis_url == "redis://:redis-secret@redis:6379/0"
    assert settings.bind_host == "0.0.0.0"


def test_infrastructure_is_durable_and_health_checked():
    """Postgres and Redis keep their data in named volumes and report their health."""
    postgres, redis = service("postgres"), service("redis")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    assert "--appendonly yes" in " ".join(redis["command"])
    volumes = set(compose()["volumes"])
    for infra in (postgres, redis):
        assert infra["volumes"][0].split(":")[0] in volumes


@pytest.mark.parametrize("name", sorted(procfile()))
def test_service_runs_its_procfile_command(name):
    """The compose command, once compose has undone its `$$` escaping, is the Procfile line."""
    script = shell_command(service(name)["command"])
    assert compose_literal(script) == procfile()[name]


def test_compose_literal_rejects_an_unescaped_dollar():
    """A `${VAR}` left unescaped would be expanded by compose on the host, so it is caught."""
    assert compose_literal("worker-$$$$@%h $${PORT:-1}") == "worker-$$@%h ${PORT:-1}"
    with pytest.raises(AssertionError):
        compose_literal("--bind ${BIND_HOST:-127.0.0.1}")


@pytest.mark.parametrize("name", ["worker", "io", "system"])
def test_workers_scale(name):
    """The workers publish no port and fix no container name or hostname."""
    worker = service(name)
    assert not {"ports", "container_name", "hostname"} & set(worker)


def queues_of(name: str) -> set[str]:
    """The queues a Procfile worker line consumes (`-Q a,b`)."""
    match = re.search(r"(?:^|\s)-Q\s+(\S+)", procfile()[name])
    assert match, f"{name} names no queues: {procfile()[name]}"
    return set(match.group(1).split(","))


def test_system_work_has_a_worker_of_its_own():
    """Sweeps and heartbeats are consumed only by `system`; tenants' jobs and commands only
    by `worker` and `io`: a tenant that fills the workers' pools cannot hold up the system's
    work."""
    assert queues_of("system") == set(names.SYSTEM_QUEUES)
    assert queues_of("worker") | queues_of("io") == set(names.TENANT_QUEUES)
    assert not queues_of("worker") & queues_of("io")
    assert set(names.TENANT_QUEUES) == {names.JOBS_QUEUE, names.IO_QUEUE, names.AGENTS_QUEUE}


def test_the_io_worker_runs_a_gevent_pool_of_its_own():
    """The `io` queue's worker is a gevent pool as large as IO_CONCURRENCY; only the kinds
    that wait on a remote service are sent to it."""
    from app import generators, jobs

    assert re.search(r"-P gevent -c \$\{IO_CONCURRENCY:-200\}", procfile()["io"])
    io_kinds = {k for k in generators.all_generators() if jobs.queue_of(k) == names.IO_QUEUE}
    assert io_kinds == {"http", "chat"}
    assert jobs.queue_of("sleep") == jobs.queue_of("echo") == names.JOBS_QUEUE


def _route(task: str) -> str:
    from workers import app

    return app.amqp.router.route({}, task)["queue"].name


def test_the_system_tasks_are_routed_to_the_system_worker():
    """The beat's two tasks go to the system's queues, tenants' work to the tenants'."""
    assert _route(names.SWEEP) == names.SWEEPS_QUEUE
    assert _route(names.HEARTBEAT) == names.HEARTBEATS_QUEUE
    assert _route(names.RUN_JOB) == names.JOBS_QUEUE
    assert _route(names.RUN_COMMAND) == names.AGENTS_QUEUE
    system = set(names.SYSTEM_QUEUES)
    assert {_route(names.SWEEP), _route(names.HEARTBEAT)} <= system


def test_the_heartbeat_pass_is_bounded_by_the_command_timeout():
    """A health hook is plugin code: a pass that hangs is ended after the command timeout
    (plus the grace), so it holds one of the system worker's two slots at most that long."""
    s = Settings(agent_command_timeout_s=12)
    options = celeryconfig.from_settings(s)["beat_schedule"]["agent-heartbeats"]["options"]
    assert options["soft_time_limit"] == 12
    assert options["time_limit"] == 12 + names.HARD_LIMIT_GRACE_S
    assert "--concurrency 2" in procfile()["system"]


@pytest.mark.parametrize(("name", "port"), sorted(PUBLISHED_PORTS.items()))
def test_http_services_publish_their_port(name, port):
    """api, relay and Flower are reachable from the host on their contract ports."""
    assert f"{port}:{port}" in [str(mapping) for mapping in service(name)["ports"]]


def test_api_healthcheck_uses_readiness():
    """The api's healthcheck asks /health/readiness with Python, as the slim image has no curl."""
    test = service("api")["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "/health/readiness" in test[3]
    compile(test[3], "<healthcheck>", "exec")


def test_flower_requires_basic_auth_and_ships_none():
    """Compose hands Flower the deployer's user:password and has no default of its own."""
    raw = environment("flower")["FLOWER_BASIC_AUTH"]
    assert _COMPOSE_REQUIRED.fullmatch(raw), raw
    assert _COMPOSE_REQUIRED.match(raw).group(1) == "FLOWER_BASIC_AUTH"


def test_compose_ships_no_default_password():
    """No `${...:-default}` gives a password, secret or login a value of ours."""
    text = (ROOT / "docker-compose.yml").read_text()
    defaults = {m.group(1) for m in _COMPOSE_DEFAULT.finditer(text)}
    assert not {v for v in defaults if re.search("PASSWORD|SECRET|AUTH|KEY", v)}, defaults
    assert set(REQUIRED_SECRETS) <= {m.group(1) for m in _COMPOSE_REQUIRED.finditer(text)}


def test_compose_redis_needs_its_password():
    """Redis requires the password that every app service's REDIS_URL carries, and its
    healthcheck authenticates with it."""
    redis = service("redis")
    command = [with_compose_defaults(part) for part in redis["command"]]
    assert command[command.index("--requirepass") + 1] == REQUIRED_SECRETS["REDIS_PASSWORD"]
    assert with_compose_defaults(redis["environment"]["REDISCLI_AUTH"]) == "redis-secret"
    for name in ("migrate", *APP_SERVICES):
        url = with_compose_defaults(environment(name)["REDIS_URL"])
        assert url.startswith(f"redis://:{REQUIRED_SECRETS['REDIS_PASSWORD']}@redis:"), name


def test_compose_sets_only_variables_the_processes_read():
    """Every variable set for an app service is read by Settings.from_env or documented here."""
    known = config_env_names() | set(DOCUMENTED_EXTRAS)
    for name in ("migrate", *APP_SERVICES):
        assert set(environment(name)) <= known, name


def test_config_parser_finds_the_settings_variables():
    """The declared names are the variables of real Settings fields, the compose ones included."""
    names = config_env_names()
    assert {"DATABASE_URL", "REDIS_URL", "BIND_HOST", "FLOWER_BASIC_AUTH"} <= names
    assert {name.lower() for name in names} <= set(Settings.model_fields)


def test_dockerfile_default_command_is_the_api():
    """The image's CMD is the Procfile's api line, run by the shell."""
    (cmd,) = dockerfile_args("CMD")
    assert shell_command(json.loads(cmd)) == procfile()["api"]


def test_dockerfile_base_user_and_ports():
    """The image (the last stage) is python:3.11-slim, runs as a non-root user and exposes the
    three ports."""
    assert dockerfile_args("FROM")[-1] == "python:3.11-slim"
    users = dockerfile_args("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert set(" ".join(dockerfile_args("EXPOSE")).split()) == {"8000", "8001", "5555"}
    assert any(
        "--no-cache-dir" in run and "requirements.txt" in run for run in dockerfile_args("RUN")
    )


def test_docker_compose_config_is_valid():
    """`compose config -q` accepts the file once the deployer's secrets are set."""
    result = compose_config(REQUIRED_SECRETS)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(REQUIRED_SECRETS))
def test_docker_compose_refuses_without_a_secret(missing):
    """Without one of the secrets compose does not start anything, and says which."""
    result = compose_config({k: v for k, v in REQUIRED_SECRETS.items() if k != missing})
    assert result.returncode != 0
    assert missing in result.stderr
