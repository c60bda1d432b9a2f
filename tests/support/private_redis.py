"""A redis-server of a test's own on the loopback: with a password, and with TLS on demand
(a throw-away CA and server certificate made by the `openssl` CLI)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from scripts.sandbox import free_port
from tests.support.stack import wait_until


def available(tls: bool = False) -> bool:
    """redis-server exists (and openssl, for TLS)."""
    return shutil.which("redis-server") is not None and (not tls or bool(shutil.which("openssl")))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate it signed, for 127.0.0.1 (IP SAN) and localhost."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=orchestra-test-ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem",
             cwd=folder)
    return {name: folder / f"{name}.pem" for name in ("ca", "server")} | {
        "key": folder / "server.key"
    }


class PrivateRedis:
    """redis-server on a free loopback port, requiring `password`; TLS-only when `tls`."""

    def __init__(self, password: str, tls: bool = False):
        self.password, self.tls = password, tls
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="orchestra-redis-"))
        self.certs = make_certificates(self.dir) if tls else {}
        self.proc: subprocess.Popen | None = None

    def _args(self) -> list[str]:
        args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--requirepass", self.password]
        if not self.tls:
            return ["--port", str(self.port), *args]
        return ["--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.certs["server"]),
                "--tls-key-file", str(self.certs["key"]),
                "--tls-ca-cert-file", str(self.certs["ca"]),
                "--tls-auth-clients", "no", *args]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", *self._args()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: self.client().ping(), 10, 0.1, "private redis")

    def url(self, query: str = "") -> str:
        """The URL our processes are given: the password in it, and for TLS `rediss://`."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://:{self.password}@127.0.0.1:{self.port}/0{query}"

    def trusting_url(self) -> str:
        """A TLS URL that names the test CA (so the server's certificate verifies)."""
        return self.url(f"?ssl_ca_certs={self.certs['ca']}")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.trusting_url() if self.tls else self.url())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
