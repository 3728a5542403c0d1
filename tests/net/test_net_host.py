"""parse_url_host, parse_destination and parse_host: what host a string names."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from aegis.net import Host, HostKind, parse_destination, parse_host, parse_url_host


@pytest.mark.parametrize(
    ("url", "name", "kind", "port"),
    [
        ("https://Example.COM/a?b#c", "example.com", HostKind.DOMAIN, 443),
        ("http://example.com/", "example.com", HostKind.DOMAIN, 80),
        ("http://example.com:80/", "example.com", HostKind.DOMAIN, 80),
        ("http://example.com:8080/", "example.com", HostKind.DOMAIN, 8080),
        ("ws://example.com/", "example.com", HostKind.DOMAIN, 80),
        ("wss://example.com/", "example.com", HostKind.DOMAIN, 443),
        ("ftp://example.com/", "example.com", HostKind.DOMAIN, 21),
        ("file://server/share", "server", HostKind.DOMAIN, None),
        ("https://bücher.de/", "xn--bcher-kva.de", HostKind.DOMAIN, 443),
        ("http://example.com./", "example.com.", HostKind.DOMAIN, 80),
        ("http://10.0.0.1/", "10.0.0.1", HostKind.IPV4, 80),
        ("http://[2001:DB8::1]:8080/", "[2001:db8::1]", HostKind.IPV6, 8080),
        ("redis://Cache.Internal:6379/0", "Cache.Internal", HostKind.OPAQUE, 6379),
        ("redis://cache/0", "cache", HostKind.OPAQUE, None),
        ("foo://[::1]/", "[::1]", HostKind.IPV6, None),
    ],
)
def test_parse_url_host(url: str, name: str, kind: HostKind, port: int | None) -> None:
    host = parse_url_host(url)
    assert host is not None
    assert (host.name, host.kind, host.port) == (name, kind, port)


def test_ip_hosts_carry_their_address() -> None:
    v4 = parse_url_host("http://10.0.0.1/")
    v6 = parse_url_host("http://[::1]/")
    assert v4 is not None
    assert v4.ip == IPv4Address("10.0.0.1")
    assert v6 is not None
    assert v6.ip == IPv6Address("::1")
    domain = parse_url_host("http://example.com/")
    assert domain is not None
    assert domain.ip is None


def test_relative_url_with_base() -> None:
    host = parse_url_host("/path", "https://api.example.com:8443/x")
    assert host == Host("api.example.com", HostKind.DOMAIN, None, 8443)
    assert parse_url_host("//other.example/", "https://api.example.com/") == Host(
        "other.example", HostKind.DOMAIN, None, 443
    )


@pytest.mark.parametrize(
    "url",
    ["", "example.com", "/relative", "http://", "http://exa mple.com/", "mailto:a@b.c",
     "file:///etc/passwd", "data:text/plain,hi", "http://[::1/", "http://a:99999/",
     "https://xn--/", "http://ex\ud800.com/"],
)  # fmt: skip
def test_parse_url_host_none(url: str) -> None:
    assert parse_url_host(url) is None


def test_match_name_strips_one_trailing_dot() -> None:
    assert Host("example.com.", HostKind.DOMAIN, None, None).match_name == "example.com"
    assert Host("example.com..", HostKind.DOMAIN, None, None).match_name == "example.com."
    assert Host("example.com", HostKind.DOMAIN, None, None).match_name == "example.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("api.example.com", Host("api.example.com", HostKind.DOMAIN, None, None)),
        ("API.example.com:443", Host("api.example.com", HostKind.DOMAIN, None, 443)),
        ("api.example.com:80", Host("api.example.com", HostKind.DOMAIN, None, 80)),
        ("api.example.com:0080", Host("api.example.com", HostKind.DOMAIN, None, 80)),
        ("api.example.com:", Host("api.example.com", HostKind.DOMAIN, None, None)),
        ("10.1.2.3:22", Host("10.1.2.3", HostKind.IPV4, IPv4Address("10.1.2.3"), 22)),
        ("[::1]:8080", Host("[::1]", HostKind.IPV6, IPv6Address("::1"), 8080)),
        ("[::1]", Host("[::1]", HostKind.IPV6, IPv6Address("::1"), None)),
        ("https://api.example.com/v1", Host("api.example.com", HostKind.DOMAIN, None, 443)),
        ("HTTP://api.example.com:81", Host("api.example.com", HostKind.DOMAIN, None, 81)),
        # Opaque hosts are re-read as network hosts: a destination is an endpoint.
        ("ssh://git@HOST.example", Host("host.example", HostKind.DOMAIN, None, None)),
        ("redis://10.0.0.1:6379", Host("10.0.0.1", HostKind.IPV4, IPv4Address("10.0.0.1"), 6379)),
    ],
)
def test_parse_destination(value: str, expected: Host) -> None:
    assert parse_destination(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "::1", "a:b:c", "host:65536", "host:8o", "[::1", "[::1]x", "a[::1]", "exa mple.com",
     "example.com/", "localhost:8080/admin", "https:example.com", "https:/example.com"],
)  # fmt: skip
def test_parse_destination_refuses(value: str) -> None:
    assert parse_destination(value) is None


def test_parse_host() -> None:
    assert parse_host("Bücher.DE") == Host("xn--bcher-kva.de", HostKind.DOMAIN, None, None)
    assert parse_host("0x7f.1") == Host("127.0.0.1", HostKind.IPV4, IPv4Address("127.0.0.1"), None)
    assert parse_host("[::1]") == Host("[::1]", HostKind.IPV6, IPv6Address("::1"), None)
    for bad in ["", "a:1", "a/b", "a@b", "[::1]:1", "::1", "a b", "a]"]:
        assert parse_host(bad) is None, bad
