"""A PostgreSQL server of a test's own, so the test can crash and restart it."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

from scripts.sandbox import free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def available() -> bool:
    """initdb and pg_ctl exist, and we may run them as the `postgres` user."""
    return bool(_bin("initdb") and _bin("pg_ctl") and shutil.which("runuser")) and os.geteuid() == 0


class PrivatePostgres:
    """initdb in a temporary folder, on a free port; `crash()` is an immediate shutdown."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="orchestra-pg-")
        shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres")

    @property
    def data(self) -> str:
        return os.path.join(self.dir, "data")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", _bin(tool), *args],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "log"),
                  "-w", "start")

    def crash(self) -> None:
        """Stop at once, as a crash would (open transactions are lost, connections cut)."""
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def destroy(self) -> None:
        try:
            self.crash()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
