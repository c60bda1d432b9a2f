"""The container deployment (Dockerfile, docker-compose.yml) stays in step with the Procfile."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import fields
from functools import cache
from pathlib import Path

import pytest
import yaml

from app.config import Settings
from scripts.procfile import read_procfile

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("api", "relay", "worker", "beat", "flower")
PUBLISHED_PORTS = {"api": 8000, "relay": 8001, "flower": 5555}
# Variables the compose file may set although Settings.from_env does not read them.
DOCUMENTED_EXTRAS = {
    "API_WORKERS": "gunicorn workers of the api, read by the Procfile's api line",
}
_SETTINGS_READ = re.compile(r'(?:env\.get\(|_env_(?:int|float)\(\s*env,\s*)"([A-Z0-9_]+)"')
_COMPOSE_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


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
    """`value` as compose renders it with none of its `${VAR:-default}` variables set."""
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
    """The variable names Settings.from_env reads, parsed from app/config.py's source."""
    return set(_SETTINGS_READ.findall((ROOT / "app" / "config.py").read_text()))


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


def docker_compose_available() -> bool:
    """Whether `docker compose` (the v2 plugin) runs here."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


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
    assert settings.database_url.startswith("postgresql+psycopg2://")
    assert settings.database_url.endswith("@postgres:5432/orchestra")
    assert settings.redis_url == "redis://redis:6379/0"
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


def test_worker_scales():
    """The worker publishes no port and fixes no container name or hostname."""
    worker = service("worker")
    assert not {"ports", "container_name", "hostname"} & set(worker)


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


def test_flower_requires_basic_auth():
    """Flower gets a user:password from compose, which a deployer can override."""
    raw = environment("flower")["FLOWER_BASIC_AUTH"]
    assert raw.startswith("${FLOWER_BASIC_AUTH:-")
    user, _, password = with_compose_defaults(raw).partition(":")
    assert user and password


def test_compose_sets_only_variables_the_processes_read():
    """Every variable set for an app service is read by Settings.from_env or documented here."""
    known = config_env_names() | set(DOCUMENTED_EXTRAS)
    for name in ("migrate", *APP_SERVICES):
        assert set(environment(name)) <= known, name


def test_config_parser_finds_the_settings_variables():
    """The source parser sees the variables of real Settings fields, the compose ones included."""
    names = config_env_names()
    assert {"DATABASE_URL", "REDIS_URL", "BIND_HOST", "FLOWER_BASIC_AUTH"} <= names
    assert {name.lower() for name in names} <= {f.name for f in fields(Settings)}


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
    """`docker compose config -q` accepts the file, where the docker CLI has the compose plugin."""
    if not docker_compose_available():
        pytest.skip("`docker compose version` fails here (no docker CLI or no compose plugin)")
    result = subprocess.run(
        ["docker", "compose", "-f", "docker-compose.yml", "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
