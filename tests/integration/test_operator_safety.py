"""Safe defaults for operators, each shown with the real program: `make`'s secret files,
Flower's refusal to start without a login, beat's schedule kept in memory."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest
import redis
import requests

from app.outbox import names
from scripts import procfile
from scripts.sandbox import ROOT, free_port
from tests.support.stack import wait_until


def _env(settings, **extra) -> dict[str, str]:
    """A child's environment for these settings, able to import our code from any directory."""
    env = procfile.child_env(settings)
    env.pop("FLOWER_BASIC_AUTH", None)
    env.pop("ORCHESTRA_ENV", None)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _make(target: str, cwd, env) -> subprocess.CompletedProcess:
    """`make <target>` of our Makefile, run in `cwd` with a umask that lets the world read
    (as most logins have), `db` taken as done (the test's database is migrated)."""
    return subprocess.run(
        ["make", "-s", "-f", str(ROOT / "Makefile"), "-o", "db", f"BIN={ROOT / '.venv/bin'}",
         f"PYTHON={sys.executable}", target],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: os.umask(0o022),
    )


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_writes_the_demo_key_readable_by_its_owner_only(domain, tmp_path):
    """`.demo-key` holds a live API key: 0600 although the umask would give 0644."""
    result = _make(".demo-key", tmp_path, _env(domain))
    assert result.returncode == 0, result.stderr
    key = tmp_path / ".demo-key"
    assert _mode(key) == 0o600
    assert not (tmp_path / ".demo-key.tmp").exists()
    from app import tenants

    assert tenants.authenticate(key.read_text().strip()) is not None


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_generates_flowers_password_readable_by_its_owner_only(domain, tmp_path):
    """No password ships with the code: `make run` makes one (kept in .flower-password)."""
    result = _make(".flower-password", tmp_path, _env(domain))
    assert result.returncode == 0, result.stderr
    secret = tmp_path / ".flower-password"
    assert _mode(secret) == 0o600
    assert len(secret.read_text().strip()) >= 20
    again = tmp_path / "again"
    again.mkdir()
    _make(".flower-password", again, _env(domain))
    assert (again / ".flower-password").read_text() != secret.read_text()  # random each time


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_generates_the_provider_key_secret_readable_by_its_owner_only(domain, tmp_path):
    """The secret that encrypts chat providers' keys ships with nothing: `make run` makes a
    Fernet key (kept in .provider-key-secret) that the settings accept."""
    from app.config import Settings

    result = _make(".provider-key-secret", tmp_path, _env(domain))
    assert result.returncode == 0, result.stderr
    secret = tmp_path / ".provider-key-secret"
    assert _mode(secret) == 0o600
    value = secret.read_text().strip()
    assert Settings.from_env({"PROVIDER_KEY_SECRETS": value}).provider_key_secrets == value


def _flower(settings, tmp_path, **extra) -> procfile.Proc:
    """Flower from its Procfile line, as `make run` and compose start it."""
    port = free_port()
    env = _env(settings, FLOWER_PORT=str(port), **extra)
    command = procfile.read_procfile()["flower"]
    return procfile.start("flower", command, env, tmp_path / "flower.log", port)


def test_flower_refuses_to_start_without_a_login_outside_development(domain, tmp_path):
    flower = _flower(domain, tmp_path)
    try:
        code = flower.popen.wait(60)
    finally:
        procfile.stop(flower)
    assert code != 0
    log = flower.log_path.read_text()
    assert "refusing to start without a login" in log and "FLOWER_BASIC_AUTH" in log


@pytest.mark.parametrize("extra", [{"FLOWER_BASIC_AUTH": ""}, {"FLOWER_BASIC_AUTH": "ops:"}])
def test_an_empty_login_is_no_login(domain, tmp_path, extra):
    flower = _flower(domain, tmp_path, **extra)
    try:
        assert flower.popen.wait(60) != 0
    finally:
        procfile.stop(flower)


@pytest.mark.parametrize(
    "extra",
    [{"FLOWER_BASIC_AUTH": "ops:s3cret"}, {"ORCHESTRA_ENV": "development"}],
    ids=["with-a-login", "in-development"],
)
def test_flower_starts_with_a_login_or_in_development(domain, tmp_path, extra):
    flower = _flower(domain, tmp_path, **extra)
    try:
        url = f"http://127.0.0.1:{flower.port}/healthcheck"

        def up():
            flower.check()
            return requests.get(url, timeout=1).status_code == 200

        wait_until(up, 60, 0.3, "flower to answer")
    finally:
        procfile.stop(flower)


def test_beat_keeps_no_schedule_file(domain, tmp_path):
    """Beat, run from its Procfile line, sends its sweeps and writes no schedule file: not in
    its working directory, not in its temporary directory."""
    workdir, tmpdir = tmp_path / "cwd", tmp_path / "tmp"
    workdir.mkdir()
    tmpdir.mkdir()
    broker = redis.Redis.from_url(domain.effective_broker_url)
    broker.delete(names.SWEEPS_QUEUE)
    command = procfile.read_procfile()["beat"]
    env = _env(domain, TMPDIR=str(tmpdir))
    beat = subprocess.Popen(
        ["sh", "-c", f"exec {command}"], cwd=workdir, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    proc = procfile.Proc("beat", beat, tmp_path / "beat.log")
    try:
        # The positive signal: beat has ticked (and would have saved its schedule by now).
        wait_until(lambda: broker.llen(names.SWEEPS_QUEUE) >= 2, 60, 0.2, "two sweeps")
    finally:
        procfile.stop(proc)
        broker.delete(names.SWEEPS_QUEUE)
    assert list(workdir.iterdir()) == [] and list(tmpdir.iterdir()) == []
