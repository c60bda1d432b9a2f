"""A test service run as a child process on a port of its own (`python -m MODULE PORT`),
started and stopped by the tests, and told what to do over HTTP (`/_control`, `/_stats`)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import requests

from scripts import procfile
from scripts.sandbox import free_port


class ServiceProcess:
    """`MODULE` and `NAME` name the service; `start()` waits until `/_stats` answers."""

    MODULE = ""
    NAME = ""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: procfile.Proc | None = None
        self._logdir = Path(tempfile.mkdtemp(prefix=f"orchestra-{self.NAME}-"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20):
        """Start the process (again, on the same port) and wait until it answers."""
        command = f"{sys.executable} -m {self.MODULE} {self.port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = procfile.start(self.NAME, command, env, self._logdir / "log", self.port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.check()
            try:
                requests.get(f"{self.url}/_stats", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"{self.NAME} did not answer on :{self.port}")

    def stop(self) -> None:
        """Stop the process: its port refuses connections until `start()`."""
        if self.proc is not None:
            procfile.stop(self.proc)
            self.proc = None

    def control(self, **changes) -> dict:
        """Tell the service how to behave from now on."""
        return requests.post(f"{self.url}/_control", json=changes, timeout=5).json()

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_stats", timeout=5).json()


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and reads a JSON body; it logs nothing."""

    def answer_json(self, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def log_message(self, *args):
        pass
