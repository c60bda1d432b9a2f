"""The bench's processes: the shared Procfile runner, with logs under bench/results/logs."""

from __future__ import annotations

from scripts.procfile import Proc, ProcessDied, child_env, read_procfile, stop
from scripts.procfile import start as _start
from scripts.sandbox import ROOT

LOG_DIR = ROOT / "bench" / "results" / "logs"

__all__ = ["Proc", "ProcessDied", "child_env", "read_procfile", "start", "stop"]


def start(name: str, command: str, env: dict[str, str]) -> Proc:
    """Start `command` with its output in `bench/results/logs/<name>.log`."""
    return _start(name, command, env, LOG_DIR / f"{name}.log")
