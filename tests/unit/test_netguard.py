"""The address check of outbound calls, over a table of addresses and odd ways to write them.

Only the check itself: no request is sent anywhere. Every host here is an address literal (the
system resolver reads `127.1` or `0x7f000001` without asking DNS) or `localhost` (from
/etc/hosts).
"""

from __future__ import annotations

import ipaddress

import pytest

from app import netguard
from app.config import Settings

PRIVATE_ONES = [
    "http://127.0.0.1/", "http://127.1/", "http://0x7f000001/", "http://2130706433/",
    "http://0177.0.0.1/", "http://127.0.0.2:8000/", "http://localhost/", "http://[::1]/",
    "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[::127.0.0.1]/",
    "http://[64:ff9b::127.0.0.1]/", "http://[2002:7f00:1::]/", "http://10.1.2.3/",
    "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/", "http://198.18.0.1/",
    "http://192.0.0.8/", "http://192.88.99.1/", "http://240.0.0.1/", "http://[fc00::1]/",
    "http://[fd12:3456::1]/", "http://[2001::1]/", "http://[2001:db8::1]/",
    "http://[64:ff9b:1::1]/", "http://[fec0::1]/", "https://[::ffff:10.0.0.1]:8443/",
]
NEVER_ONES = [
    "http://169.254.169.254/latest/meta-data/", "http://169.254.170.2/", "http://169.254.0.1/",
    "http://0xa9fea9fe/", "http://2852039166/", "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:a9fe:a9fe::]/", "http://[fe80::1]/",
    "http://[fe80::1%25lo]/", "http://[fd00:ec2::254]/", "http://100.100.100.200/",
    "http://168.63.129.16/", "http://192.0.0.192/", "http://0.0.0.0:8000/", "http://0/",
    "http://[::]/", "http://224.0.0.1/", "http://[ff02::1]/", "http://255.255.255.255/",
]
PUBLIC_ONES = [
    "http://8.8.8.8/", "https://1.1.1.1:8443/x", "http://[2606:4700::1111]/",
    "http://[::ffff:8.8.8.8]/", "http://[64:ff9b::808:808]/", "http://[2002:808:808::]/",
]


@pytest.mark.parametrize("url", PRIVATE_ONES + NEVER_ONES)
def test_private_loopback_link_local_and_metadata_addresses_are_refused(url):
    with pytest.raises(netguard.AddressNotAllowed):
        netguard.check_url(url, "")


@pytest.mark.parametrize("url", PUBLIC_ONES)
def test_public_addresses_pass(url):
    netguard.check_url(url, "")


@pytest.mark.parametrize("url", NEVER_ONES)
def test_link_local_metadata_and_the_like_are_refused_even_when_listed(url):
    host, port = netguard.target(url)
    listed = f"[{host}]" if ":" in host else host
    with pytest.raises(netguard.AddressNotAllowed, match="never allowed"):
        netguard.check_url(url, f"{listed}:{port},{listed}")


@pytest.mark.parametrize("spec,url,allowed", [
    ("127.0.0.1:8080", "http://127.0.0.1:8080/generate", True),
    ("127.0.0.1:8080", "http://127.0.0.1:8081/generate", False),  # the API next door
    ("127.0.0.1:8080", "http://localhost:8080/", False),  # another name: not listed
    ("127.0.0.1:8080", "http://2130706433:8080/", False),
    ("127.0.0.1:8080", "http://127.1:8080/", False),
    ("localhost:8080", "http://LOCALHOST.:8080/", True),
    ("127.0.0.1", "http://127.0.0.1:5555/", True),  # no port: any port of the host
    ("[::1]:9000", "http://[::1]:9000/", True),
    ("[::1]:9000", "http://[::1]:9001/", False),
    ("10.0.0.5:443", "https://10.0.0.5/", True),  # the scheme's own port
    ("10.0.0.5:443", "http://10.0.0.5/", False),
    (" 10.0.0.5:80 , 127.0.0.1:1 ", "http://10.0.0.5/", True),
])
def test_private_hosts_are_allowed_by_host_and_port(spec, url, allowed):
    if allowed:
        netguard.check_url(url, spec)
    else:
        with pytest.raises(netguard.AddressNotAllowed):
            netguard.check_url(url, spec)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///x"])
def test_only_http_urls_with_a_host_are_called(url):
    with pytest.raises(netguard.AddressNotAllowed):
        netguard.check_url(url, "")


def test_the_refusal_tells_the_tenant_the_kind_and_the_operator_the_address():
    with pytest.raises(netguard.AddressNotAllowed) as refused:
        netguard.check_address("gen.internal", 80, ipaddress.ip_address("10.0.0.7"), "")
    assert refused.value.target == "gen.internal:80"
    assert refused.value.reason == "a private address, not in HTTP_PRIVATE_HOSTS"
    assert "10.0.0.7" not in refused.value.reason and "10.0.0.7" in str(refused.value)


def test_every_resolved_address_is_checked(monkeypatch):
    """A name with a public and a private address is refused: a connection may use either.
    (The resolver stands in for DNS here, which no test may ask.)"""
    answers = [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")]
    monkeypatch.setattr(netguard, "resolve", lambda host, port: answers)
    with pytest.raises(netguard.AddressNotAllowed, match="private"):
        netguard.check_url("https://gen.example/", "")
    answers.pop()
    netguard.check_url("https://gen.example/", "")


def test_literals_skip_the_resolver_and_names_go_through_it():
    assert netguard.resolve("[::1]", 80) == [ipaddress.ip_address("::1")]
    assert netguard.resolve("fe80::1%lo", 80) == [ipaddress.ip_address("fe80::1")]
    assert ipaddress.ip_address("127.0.0.1") in netguard.resolve("localhost", 80)
    assert netguard.resolve("0x7f000001", 80) == [ipaddress.ip_address("127.0.0.1")]


@pytest.mark.parametrize("url,redacted,name", [
    ("http://alice:s3cret@gen.example:8080/v1?q=1", "http://gen.example:8080/v1?q=1",
     "gen.example:8080"),
    ("https://tok@gen.example/", "https://gen.example/", "gen.example"),
    ("http://a:b@c@[::1]:9/", "http://[::1]:9/", "[::1]:9"),
    ("http://gen.example/", "http://gen.example/", "gen.example"),
])
def test_credentials_are_stripped_from_urls_and_names(url, redacted, name):
    assert netguard.redact(url) == redacted and netguard.service_name(url) == name


def test_the_http_settings_read_the_environment_and_refuse_bad_entries():
    s = Settings.from_env({"HTTP_PRIVATE_HOSTS": "gen.internal:8080,[::1]",
                           "HTTP_MAX_RESPONSE_BYTES": "4096"})
    assert (s.http_private_hosts, s.http_max_response_bytes) == ("gen.internal:8080,[::1]", 4096)
    assert netguard.private_hosts(s.http_private_hosts) == {("gen.internal", 8080), ("::1", None)}
    assert Settings.from_env({}).http_max_response_bytes == 1024 * 1024
    for bad in ("gen.internal:http", "user@gen.internal", "gen.internal/path"):
        with pytest.raises(ValueError, match="HTTP_PRIVATE_HOSTS"):
            Settings.from_env({"HTTP_PRIVATE_HOSTS": bad})
