"""Starting and stopping our processes from the Procfile (tests, bench): one way to do it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from app.config import Settings
from scripts.sandbox import ROOT

log = logging.getLogger(__name__)

VENV_BIN = ROOT / ".venv" / "bin"
PORT_VARS = ("API_PORT", "RELAY_PORT", "FLOWER_PORT")


def read_procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """The Procfile's commands by process name, parsed as honcho does."""
    commands = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if sep:
            commands[name.strip()] = command.strip()
    return commands


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of a child process: ours, then the settings, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in PORT_VARS}
    env.update(settings.as_env())
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ProcessDied(RuntimeError):
    """A process that was needed exited early."""


@dataclass
class Proc:
    """One started process: `sh -c "exec command"`, leader of its own process group."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    port: int | None = None

    def alive(self) -> bool:
        """Whether the main process still runs."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of its output, to explain a failure."""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check(self) -> None:
        """Raise `ProcessDied` (with its last output) if it is no longer running."""
        code = self.popen.poll()
        if code is not None:
            raise ProcessDied(f"{self.name} exited with {code}:\n{self.log_tail()}")


def start(name: str, command: str, env: dict[str, str], log_path: Path, port=None) -> Proc:
    """Start `command` in a new session; its output goes to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as out:
        popen = subprocess.Popen(
            # `exec`: the program replaces the shell (dash would not), so our SIGTERM reaches
            # Celery's or gunicorn's main process, which then stops its children in order.
            ["sh", "-c", f"exec {command}"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # A session of its own: one killpg reaches Celery and its pool children.
            start_new_session=True,
        )
    log.info("started %s (pid %d): %s", name, popen.pid, command)
    return Proc(name, popen, log_path, port)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the group; False when nobody is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _group_gone(pgid: int, timeout_s: float) -> bool:
    """Wait until no process of the group is left (pool children can outlive the leader)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _signal_group(pgid, 0):
            return True
        time.sleep(0.05)
    return False


def kill(proc: Proc) -> None:
    """SIGKILL the whole group at once, as a crash or an OOM killer would."""
    _signal_group(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(10)  # reap the leader first: a zombie still counts as one of the group
    _group_gone(proc.popen.pid, 10.0)


def stop(proc: Proc, timeout_s: float = 10.0) -> None:
    """TERM the main process (a warm shutdown), then KILL whatever is left of its group."""
    pgid = proc.popen.pid  # a session leader: its pid is the group's id
    # Only the main process: a TERM to the pool children too would make Celery report them
    # lost mid-task instead of shutting them down itself.
    if proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
    try:
        proc.popen.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("%s ignored SIGTERM for %.0f s: SIGKILL", proc.name, timeout_s)
    if not _group_gone(pgid, 2.0):
        _signal_group(pgid, signal.SIGKILL)
        _group_gone(pgid, 5.0)
    if proc.popen.poll() is None:
        proc.popen.wait(5)
