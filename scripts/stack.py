"""A stack of real processes (the Procfile's own commands, on free ports), for tests and bench."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from scripts import procfile
from scripts.procfile import Proc
from scripts.sandbox import free_port

VENV_BIN = str(procfile.VENV_BIN)
_PORT_VAR = {"api": "API_PORT", "relay": "RELAY_PORT", "flower": "FLOWER_PORT"}


def wait_until(check, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll `check()` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last one
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


@dataclass
class Stack:
    """A set of Orchestra processes sharing one database and one Redis db."""

    env: dict
    procs: list[Proc] = field(default_factory=list)
    logdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orchestra-e2e-")))
    stopped: bool = False

    def start(self, name: str, port: int | None = None, **extra_env) -> Proc:
        """Start one Procfile process; api, relay and flower get `port`, else a free one.

        A given port lets a test restart a process where its clients expect it, or tell one
        process of another's address before that one starts.
        """
        if self.stopped:  # a process started now would outlive the stack, unseen
            raise RuntimeError(f"stack already stopped: not starting {name}")
        env = {**self.env, **{k: str(v) for k, v in extra_env.items()}}
        if name in _PORT_VAR:
            port = port or free_port()
            env[_PORT_VAR[name]] = str(port)
        command = procfile.read_procfile()[name]
        log_path = self.logdir / f"{name}-{len(self.procs)}.log"
        proc = procfile.start(name, command, env, log_path, port)
        self.procs.append(proc)
        return proc

    def procs_named(self, name: str) -> list[Proc]:
        """The started processes of one Procfile name, oldest first."""
        return [p for p in self.procs if p.name == name]

    def url(self, proc: Proc) -> str:
        return f"http://127.0.0.1:{proc.port}"

    def wait_http(self, proc: Proc, path: str = "/health/liveness", timeout: float = 30):
        """Wait until the process answers 200 on `path`."""

        def up():
            proc.check()
            return requests.get(self.url(proc) + path, timeout=1).status_code == 200

        wait_until(up, timeout, 0.2, f"{proc.name} on :{proc.port}")

    def kill(self, proc: Proc) -> None:
        """SIGKILL a process and its children (a worker and its pool), as a crash would."""
        procfile.kill(proc)

    def stop(self) -> None:
        """Stop every process: a warm shutdown for all at once, then KILL what lingers."""
        self.stopped = True
        for proc in self.procs:
            if proc.alive():
                proc.popen.terminate()
        for proc in reversed(self.procs):
            procfile.stop(proc)

    def logs(self) -> str:
        """The tail of every process's log, for a failing test's report."""
        return "\n".join(f"===== {p.name} ({p.log_path})\n{p.log_tail()}" for p in self.procs)


def stack_env(settings, **extra) -> dict:
    """The environment of a stack process for these settings (ports are given per process)."""
    env = procfile.child_env(settings)
    for var in procfile.PORT_VARS:
        env.pop(var, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env
