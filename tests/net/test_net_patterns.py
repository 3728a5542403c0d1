"""HostPattern and HostSet: the pattern language and its errors."""

from __future__ import annotations

import time

import pytest

from aegis.errors import ErrorCode, HostPatternError
from aegis.net import (
    Host,
    HostPattern,
    HostPatternListError,
    HostSet,
    PublicSuffixList,
    parse_destination,
    parse_url_host,
)


def _host(value: str) -> Host:
    host = parse_destination(value)
    assert host is not None, value
    return host


def _matches(pattern: str, destination: str, psl: PublicSuffixList) -> bool:
    single = HostPattern.parse(pattern, psl).matches(_host(destination))
    in_set = HostSet.parse([pattern], psl).matches(_host(destination))
    assert single == in_set, (pattern, destination)
    return single


@pytest.mark.parametrize(
    ("pattern", "destination", "expected"),
    [
        ("example.com", "example.com", True),
        ("example.com", "EXAMPLE.COM", True),
        ("EXAMPLE.com", "https://example.com/x", True),
        ("example.com", "example.com.", True),
        ("example.com.", "example.com", True),
        ("example.com", "www.example.com", False),
        ("example.com", "example.co", False),
        ("bücher.de", "xn--bcher-kva.de", True),
        ("xn--bcher-kva.de", "https://BÜCHER.de/", True),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.c.example.com", True),
        ("*.example.com", "a.example.com.", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "evilexample.com", False),
        ("*.example.com", "a.example.com.evil.net", False),
        ("*.example.com", "https://a..example.com/", False),
        ("*.example.com", "https://.example.com/", False),
        ("*.bücher.de", "shop.xn--bcher-kva.de", True),
        ("api.example.com:443", "https://api.example.com/", True),
        ("api.example.com:443", "api.example.com:443", True),
        ("api.example.com:443", "http://api.example.com/", False),
        ("api.example.com:443", "https://api.example.com:8443/", False),
        ("api.example.com:443", "api.example.com", False),
        ("api.example.com", "api.example.com:9999", True),
        ("*.example.com:8443", "https://a.example.com:8443/", True),
        ("*.example.com:8443", "https://a.example.com/", False),
        ("10.1.2.3", "10.1.2.3", True),
        ("10.1.2.3", "http://0x0a.1.2.3/", True),
        ("10.1.2.3", "http://167838211/", True),
        ("10.1.2.3", "http://[::ffff:10.1.2.3]/", True),
        ("[::ffff:10.1.2.3]", "10.1.2.3", True),
        ("10.1.2.3", "10.1.2.4", False),
        ("10.1.2.3:22", "10.1.2.3:22", True),
        ("10.1.2.3:22", "10.1.2.3:23", False),
        ("[::1]", "http://[0:0::1]/", True),
        ("[::1]:8080", "[::1]:8080", True),
        ("[::1]", "[::2]", False),
        ("[::1]", "127.0.0.1", False),
        ("localhost", "127.0.0.1", False),
        ("example.com", "redis://example.com/", True),  # same endpoint, other scheme
    ],
)
def test_matching(pattern: str, destination: str, expected: bool, psl: PublicSuffixList) -> None:
    assert _matches(pattern, destination, psl) is expected


def test_pattern_attributes(psl: PublicSuffixList) -> None:
    p = HostPattern.parse("*.Bücher.de:8443", psl)
    assert (p.text, p.host, p.wildcard, p.ip, p.port) == (
        "*.Bücher.de:8443",
        "xn--bcher-kva.de",
        True,
        None,
        8443,
    )


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "*",
        "*:443",
        "*.",
        "**.example.com",
        "*.*.example.com",
        "a*.example.com",
        "x.*.example.com",
        "example.*",
        "%2A.example.com",
        "https://example.com",
        "example.com/",
        "example.com/path",
        "user@example.com",
        "example.com?x",
        "example.com#x",
        "example.com\\x",
        " example.com",
        "example.com ",
        "exa mple.com",
        "example.com\n",
        "example.com\x00",
        "example.com:",
        "example.com:0",
        "example.com:65536",
        "example.com:+1",
        "example.com:1e3",
        "example.com:٤٤٣",
        "example.com:443:443",
        "::1",
        "[::1",
        "[::1]x",
        "[::1]:",
        "a..example.com",
        ".example.com",
        "example.com..",
        "*.10.1.2.3",
        "*.[::1]",
        "exa<mple.com",
        "xn--pokxncvks.example",
        "xn--.example",
        "ex%ample.com",
    ],
)
def test_invalid_patterns(pattern: str, psl: PublicSuffixList) -> None:
    with pytest.raises(HostPatternError) as caught:
        HostPattern.parse(pattern, psl)
    assert caught.value.code is ErrorCode.POLICY_INVALID_HOST_PATTERN
    assert repr(pattern) in caught.value.message


def test_non_string_pattern(psl: PublicSuffixList) -> None:
    with pytest.raises(HostPatternError) as caught:
        HostPattern.parse(443, psl)  # type: ignore[arg-type]
    assert caught.value.code is ErrorCode.POLICY_INVALID_HOST_PATTERN


@pytest.mark.parametrize(
    "pattern",
    [
        "*.com",
        "*.COM",
        "*.com.",
        "*.co.uk",
        "*.uk",
        "*.github.io",  # PRIVATE section
        "*.s3.amazonaws.com",  # PRIVATE section
        "*.公司.cn",
        "*.xn--55qx5d.cn",
        "*.中国",
        "*.kobe.jp",  # implicit root of the wildcard rule *.kobe.jp
        "*.c.kobe.jp",  # matched by *.kobe.jp
        "*.example",  # unlisted TLD: the PSL default rule "*"
        "*.corp",
        "*.localhost:8080",
    ],
)
def test_public_suffix_wildcards(pattern: str, psl: PublicSuffixList) -> None:
    with pytest.raises(HostPatternError) as caught:
        HostPattern.parse(pattern, psl)
    assert caught.value.code is ErrorCode.POLICY_PUBLIC_SUFFIX_WILDCARD
    assert repr(pattern) in caught.value.message


@pytest.mark.parametrize(
    "pattern",
    ["*.example.com", "*.example.co.uk", "*.me.github.io", "*.city.kobe.jp", "*.b.c.kobe.jp",
     "com", "co.uk", "github.io", "localhost", "*.svc.corp"],
)  # fmt: skip
def test_allowed_patterns_near_public_suffixes(pattern: str, psl: PublicSuffixList) -> None:
    HostPattern.parse(pattern, psl)


def test_hostset_reports_the_failing_pattern(psl: PublicSuffixList) -> None:
    with pytest.raises(HostPatternListError) as caught:
        HostSet.parse(["example.com", "*.example.org", "*.co.uk", "x.com"], psl)
    err = caught.value
    assert isinstance(err, HostPatternError)
    assert err.code is ErrorCode.POLICY_PUBLIC_SUFFIX_WILDCARD
    assert err.index == 2
    assert err.pattern == "*.co.uk"
    assert "'*.co.uk'" in str(err)
    assert "#2" in str(err)


def test_hostset_refuses_a_bare_string(psl: PublicSuffixList) -> None:
    with pytest.raises(HostPatternError):
        HostSet.parse("example.com", psl)


def test_hostset_ports_merge(psl: PublicSuffixList) -> None:
    ports = HostSet.parse(["a.example.com:443", "a.example.com:8443"], psl)
    assert ports.matches(_host("a.example.com:443"))
    assert ports.matches(_host("a.example.com:8443"))
    assert not ports.matches(_host("a.example.com:80"))
    # A pattern without a port allows every port, whatever else is listed.
    anyport = HostSet.parse(["a.example.com:443", "a.example.com"], psl)
    assert anyport.matches(_host("a.example.com:80"))
    assert anyport.matches(_host("a.example.com"))


def test_hostset_empty_and_len(psl: PublicSuffixList) -> None:
    empty = HostSet.parse([], psl)
    assert len(empty) == 0
    assert not empty.matches(_host("example.com"))
    assert len(HostSet.parse(["a.com", "a.com", "*.b.com", "10.0.0.1"], psl)) == 4


def test_hostset_many_patterns(psl: PublicSuffixList) -> None:
    patterns = [f"svc{i}.team{i % 97}.example.com" for i in range(5000)]
    patterns += [f"*.tenant{i}.example.net" for i in range(5000)]
    patterns += [f"10.{i // 256}.{i % 256}.1" for i in range(2000)]
    patterns += [f"[2001:db8::{i:x}]:443" for i in range(500)]
    hosts = HostSet.parse(patterns, psl)
    assert len(hosts) == len(patterns)

    accepted = [
        "svc0.team0.example.com",
        "SVC4999.team52.example.com.",
        "a.tenant4999.example.net",
        "x.y.z.tenant17.example.net",
        "http://10.7.207.1/",
        "http://0x0a.0.0x2.1/",
        "https://[2001:db8::1f3]/",
    ]
    refused = [
        "svc0.team1.example.com",
        "svc5000.team53.example.com",
        "tenant17.example.net",
        "tenant5000.example.net",
        "a.tenant5000.example.net",
        "eviltenant1.example.net",
        "10.7.208.2",
        "http://[2001:db8::1f3]/",  # port 80, the patterns require 443
        "https://[2001:db8::1f4]/",
    ]
    started = time.perf_counter()
    for _ in range(20):
        for value in accepted:
            assert hosts.matches(_host(value)), value
        for value in refused:
            assert not hosts.matches(_host(value)), value
    # 320 lookups: a linear scan over 12,500 patterns would take seconds.
    assert time.perf_counter() - started < 1.0


def test_hostset_agrees_with_patterns(psl: PublicSuffixList) -> None:
    texts = ["a.example.com", "*.example.com", "*.b.example.org:8443", "10.0.0.1:22",
             "[::1]", "x.example.net.", "*.xn--bcher-kva.de"]  # fmt: skip
    patterns = [HostPattern.parse(t, psl) for t in texts]
    hosts = HostSet.parse(texts, psl)
    candidates = [
        "a.example.com", "example.com", "z.a.example.com", "b.example.org:8443",
        "c.b.example.org:8443", "c.b.example.org", "10.0.0.1:22", "10.0.0.1",
        "[::1]:9", "[::ffff:127.0.0.1]", "x.example.net", "shop.bücher.de", "bücher.de",
        "https://a.example.com./", "https://a..example.com/", "redis://a.example.com/",
    ]  # fmt: skip
    for value in candidates:
        host = parse_destination(value) or parse_url_host(value)
        assert host is not None, value
        expected = any(p.matches(host) for p in patterns)
        assert hosts.matches(host) is expected, value
