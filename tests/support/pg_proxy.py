"""A TCP proxy in front of the real Postgres that can lose a COMMIT's answer, or the COMMIT.

The ambiguous end of a transaction is the connection dropping while COMMIT is under way:
the client cannot tell whether it committed. The proxy makes that happen at the right moment
on a real connection to the real server. Armed with `lose_answer` it forwards the COMMIT
that follows a statement naming `after` and, once the server answered (so the commit is
durable), closes the client's side instead of passing the answer on; with `lose_commit` it
closes both sides before the server sees the COMMIT (so the transaction is rolled back).

Hand-written: a fault at one protocol message needs a look into the stream, which no
off-the-shelf proxy (toxiproxy and the like, none installed here) offers. It finds the
marker statement by its text in what the client sends (psycopg's Parse message carries it
until the statement is prepared: a connection of the proxy's runs it fewer than five times),
and COMMIT as the simple-query message psycopg sends it in (`Q` + length + text); the
connection must not use SSL (`sslmode=disable`), or the stream is opaque.
"""

from __future__ import annotations

import socket
import threading

COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"  # a simple query: type, length 4 + 7, "COMMIT\0"


class PgProxy:
    """Listens on a free loopback port and forwards to Postgres at `target`."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: tuple[str, bytes] | None = None
        self.dropped = threading.Event()  # set once the armed fault happened
        threading.Thread(target=self._accept, daemon=True, name="pg-proxy").start()

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def arm(self, mode: str, after: bytes) -> None:
        """Act on the next COMMIT of a connection that sent a statement holding `after`."""
        assert mode in ("lose_answer", "lose_commit")
        with self._lock:
            self._armed, self.dropped = (mode, after), threading.Event()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            _Pair(self, client, server).start()

    def take(self, marked: bool, chunk: bytes) -> str | None:
        """The fault to apply to this client chunk (once), if the proxy is armed for it."""
        with self._lock:
            if self._armed is None or not marked or COMMIT not in chunk:
                return None
            mode, self._armed = self._armed[0], None
            return mode

    def marker(self) -> bytes | None:
        with self._lock:
            return None if self._armed is None else self._armed[1]


class _Pair:
    """One client connection and its server connection, a thread per direction."""

    def __init__(self, proxy: PgProxy, client: socket.socket, server: socket.socket):
        self.proxy, self.client, self.server = proxy, client, server
        self.lose_next_answer = threading.Event()
        self.marked = False  # this connection sent the statement the fault waits for

    def start(self) -> None:
        threading.Thread(target=self._upstream, daemon=True).start()
        threading.Thread(target=self._downstream, daemon=True).start()

    def _close(self) -> None:
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _upstream(self) -> None:
        try:
            while chunk := self.client.recv(65536):
                marker = self.proxy.marker()
                if marker is not None and marker in chunk:
                    self.marked = True
                fault = self.proxy.take(self.marked, chunk)
                if fault == "lose_commit":
                    self._close()  # the server never sees COMMIT: it rolls back
                    self.proxy.dropped.set()
                    return
                if fault == "lose_answer":
                    self.lose_next_answer.set()
                self.server.sendall(chunk)
        except OSError:
            pass
        self._close()

    def _downstream(self) -> None:
        try:
            while chunk := self.server.recv(65536):
                if self.lose_next_answer.is_set():
                    # The server committed and said so; the client never hears it.
                    self._close()
                    self.proxy.dropped.set()
                    return
                self.client.sendall(chunk)
        except OSError:
            pass
        self._close()
