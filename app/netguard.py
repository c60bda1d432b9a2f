"""Which addresses outbound calls on a tenant's behalf may reach (no server-side request forgery).

Deny by default: a host is resolved once and every address it resolves to must be public. An
address that is loopback, private, shared (100.64/10), reserved or otherwise not global is
refused unless its `host[:port]` is listed in `HTTP_PRIVATE_HOSTS` (an operator's own service);
link-local, multicast, unspecified and cloud-metadata addresses are refused always. IPv4 forms
inside IPv6 (mapped, 6to4, NAT64) are judged by the IPv4 address they carry.

The check runs twice: on the resolved addresses before a request (a clear, early refusal, also
of addresses that would only time out), and on the peer of every socket the guarded session
connects, before a byte is sent, so a name that resolves differently the second time (DNS
rebinding) still cannot reach a refused address. The host stays the URL's, so TLS SNI and the
certificate check are done on the hostname as usual.

Hand-written on `ipaddress` and urllib3's connection classes: requests-hardened (the kept
library for this) has a fixed policy (private and loopback all or nothing, no `host:port`
exceptions, no separate never-allowed class) and judges only the first resolved address;
advocate has not been released since 2020 and predates urllib3 2.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from app import config

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = {"http": 80, "https": 443}

# Cloud instance metadata and platform endpoints. Most are link-local anyway; these are not:
# AWS's IPv6 IMDS (a ULA), Alibaba's (shared space), Azure's WireServer (a public address),
# Oracle's legacy one.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.169.253",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
        "192.0.0.192",
    )
)
# Not global, yet Python 3.11's `ipaddress` calls them global or misses them (cpython#113171).
NOT_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in ("192.88.99.0/24", "192.0.0.0/24", "64:ff9b:1::/48", "5f00::/16", "2001:20::/28",
              "3fff::/20")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
BROADCAST = ipaddress.ip_address("255.255.255.255")


class Verdict(enum.Enum):
    PUBLIC = "public"
    PRIVATE = "private"  # refused unless its host:port is in HTTP_PRIVATE_HOSTS
    NEVER = "never"  # refused always


# What is never allowed, by the class `address_class()` names; every other but `public` is private.
NEVER_CLASSES = frozenset({"metadata", "link-local", "multicast", "unspecified", "broadcast"})


class AddressNotAllowed(Exception):
    """A host or a connection's peer is an address this deployment does not call.

    `target` (`host:port`) and `reason` are fit for the job's error; `str()` also names the
    address, for the operator's log (it would tell a tenant what an internal name resolves to).
    """

    def __init__(self, target: str, reason: str, ip: IP | None = None):
        self.target, self.reason, self.ip = target, reason, ip
        super().__init__(f"{target}: {reason}" + (f" ({ip})" if ip is not None else ""))


def embedded_ipv4(ip: IP) -> IP:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), else `ip` itself."""
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_class(ip: IP) -> str:
    """What an address is, for the check and for the refusal's message."""
    ip = embedded_ipv4(ip)
    checks = (
        ("metadata", ip in METADATA),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("broadcast", ip == BROADCAST),
        ("loopback", ip.is_loopback),
        ("private", ip.is_private or getattr(ip, "is_site_local", False)),
        ("reserved", ip.is_reserved),
        ("non-global", not ip.is_global or any(ip in n for n in NOT_GLOBAL)),
    )
    return next((name for name, hit in checks if hit), "public")


def verdict(ip: IP) -> Verdict:
    """How an address is treated: public, private (allowed by exception), or never."""
    found = address_class(ip)
    if found == "public":
        return Verdict.PUBLIC
    return Verdict.NEVER if found in NEVER_CLASSES else Verdict.PRIVATE


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@lru_cache(maxsize=16)
def private_hosts(spec: str) -> frozenset[tuple[str, int | None]]:
    """`HTTP_PRIVATE_HOSTS` (`host[:port]`, comma-separated) as (host, port or None) pairs."""
    out = set()
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        parts = urlsplit(f"//{entry}")
        out.add((_normal_host(parts.hostname or ""), parts.port))
    return frozenset(out)


def check_address(host: str, port: int, ip: IP, spec: str) -> None:
    """Refuse `ip` (an address of `host`:`port`) unless it is public or listed as private."""
    found = verdict(ip)
    if found is Verdict.PUBLIC:
        return
    listed = private_hosts(spec)
    name = _normal_host(host)
    if found is Verdict.PRIVATE and ((name, port) in listed or (name, None) in listed):
        return
    where = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
    why = "never allowed" if found is Verdict.NEVER else "not in HTTP_PRIVATE_HOSTS"
    raise AddressNotAllowed(where, f"a {address_class(ip)} address, {why}", ip)


def _literal(host: str) -> IP | None:
    try:
        return ipaddress.ip_address(_normal_host(host).split("%")[0])
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[IP]:
    """Every address `host` resolves to (the system resolver also reads `127.1`, `0x7f000001`).

    Raises `socket.gaierror` when the name does not resolve.
    """
    literal = _literal(host)
    if literal is not None:
        return [literal]
    infos = socket.getaddrinfo(_normal_host(host), port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def target(url: str) -> tuple[str, int]:
    """The host and port a URL connects to (its scheme's port when it names none)."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise AddressNotAllowed(redact(url), "not an http(s) URL with a host")
    return parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]


def check_url(url: str, spec: str | None = None) -> None:
    """Resolve the URL's host once and refuse it if any of its addresses is refused."""
    spec = config.current().http_private_hosts if spec is None else spec
    host, port = target(url)
    for ip in resolve(host, port):
        check_address(host, port, ip, spec)


def redact(url: str) -> str:
    """The URL without `user:password@`, fit for names, events and log lines."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed `[`: nothing of it is worth repeating
        return "(not a valid URL)"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def service_name(url: str) -> str:
    """`host[:port]` of a URL as written, without credentials."""
    try:
        return urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        return "(not a valid URL)"


class _PeerChecked:
    """A connection that checks the address it actually reached before anything is sent."""

    def _new_conn(self):
        sock = super()._new_conn()
        try:
            peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%")[0])
            check_address(self.host, self.port, peer, config.current().http_private_hosts)
        except BaseException:
            sock.close()
            raise
        return sock


class _CheckedHTTPConnection(_PeerChecked, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_PeerChecked, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class CheckedAdapter(HTTPAdapter):
    """requests' adapter whose every connection passes `check_address` on its peer."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CheckedHTTPPool,
                                                   "https": _CheckedHTTPSPool}


class _Session(requests.Session):
    def get_redirect_target(self, resp):
        # Told not to follow a redirect, requests still reads its whole body to prepare
        # `Response.next`: unbounded. Callers follow redirects themselves, each checked.
        return None


def session() -> requests.Session:
    """A requests session whose connections are checked; no proxies or netrc from the env.

    (A proxy would be the peer of every connection, and the check would judge it instead of
    the target.) It follows no redirects by itself: callers check each target first.
    """
    s = _Session()
    s.trust_env = False
    adapter = CheckedAdapter()
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s
