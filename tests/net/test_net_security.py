"""Known ways to make a host check see one host while the client reaches another.

Each case is written as an attacker would send it; the assertion is on what the
policy layer would decide from our parse: the host an allowlist sees must be the
host a WHATWG-conformant client connects to.
"""

from __future__ import annotations

import pytest

from aegis.errors import ErrorCode, HostPatternError
from aegis.net import (
    CidrSet,
    Host,
    HostKind,
    HostPattern,
    HostSet,
    PublicSuffixList,
    parse_destination,
    parse_url_host,
)


@pytest.fixture(scope="module")
def allow(psl: PublicSuffixList) -> HostSet:
    return HostSet.parse(
        ["allowed.com", "*.allowed.com", "api.partner.com:443", "apple.com", "example.com"], psl
    )


def _parse(value: str) -> Host:
    host = parse_destination(value)
    assert host is not None, value
    return host


# -- userinfo and delimiter confusion -------------------------------------------


@pytest.mark.parametrize(
    ("url", "real_host"),
    [
        ("http://allowed.com@evil.com/", "evil.com"),
        ("http://allowed.com:443@evil.com/", "evil.com"),
        ("https://user:pass@evil.com/allowed.com", "evil.com"),
        ("http://allowed.com%40evil.com/", None),  # '%' decodes to '@': forbidden in a domain
        ("http://evil.com\\@allowed.com/", "evil.com"),  # '\' ends the authority (special scheme)
        ("http://evil.com\\.allowed.com/", "evil.com"),
        ("http://evil.com#@allowed.com/", "evil.com"),
        ("http://evil.com?@allowed.com/", "evil.com"),
        ("http://evil.com/@allowed.com", "evil.com"),
        ("http://allowed.com.evil.com/", "allowed.com.evil.com"),
        ("http://evil.com%2fallowed.com/", None),
        ("http://evil.com\t.allowed.com/", "evil.com.allowed.com"),  # tabs are stripped
        ("https:evil.com", "evil.com"),  # special scheme without slashes
        ("https:\\\\evil.com\\allowed.com", "evil.com"),
    ],
)
def test_userinfo_and_delimiters(url: str, real_host: str | None, allow: HostSet) -> None:
    host = parse_url_host(url)
    if real_host is None:
        assert host is None
        return
    assert host is not None
    assert host.name == real_host
    if real_host == "evil.com":
        assert not allow.matches(host)


SMUGGLING = [
    "allowed.com@evil.com",
    "user:pw@evil.com",
    "allowed.com:443@evil.com",
    "evil.com/allowed.com",
    "evil.com\\allowed.com",
    "evil.com?allowed.com",
    "evil.com#allowed.com",
    "evil.com allowed.com",
    "evil.com\tallowed.com",
    "evil.com\r\n",
    "\x00evil.com",
    "evil.com\x7f",
    "evil.com\u2028",
    "evil.com\u00a0",
    "evil.com\u3000",
    "https:evil.com",
]


@pytest.mark.parametrize("value", SMUGGLING)
def test_bare_destination_refuses_smuggling(value: str) -> None:
    assert parse_destination(value) is None


# -- IPv4 spellings ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/", "http://0x7f000001/",
     "http://127.1/", "http://127.0.1/", "http://0x7F.0.0.1/", "http://127.0.0.1./",
     "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://%30x7f.1/",
     "http://１２７.０.０.１/"],
)  # fmt: skip
def test_loopback_spellings(url: str, psl: PublicSuffixList) -> None:
    host = parse_url_host(url)
    assert host is not None
    assert host.kind in (HostKind.IPV4, HostKind.IPV6)
    assert CidrSet.parse(["127.0.0.0/8"]).contains_host(host)
    assert HostPattern.parse("127.0.0.1", psl).matches(host)
    assert HostSet.parse(["127.0.0.1"], psl).matches(host)
    # A domain pattern never matches an IP host, whatever the spelling.
    assert not HostPattern.parse("localhost", psl).matches(host)
    assert not HostSet.parse(["localhost", "*.localdomain.example"], psl).matches(host)


def test_ipv4_spelling_in_bare_destination(psl: PublicSuffixList) -> None:
    host = _parse("0x7f.1:8080")
    assert (host.name, host.kind, host.port) == ("127.0.0.1", HostKind.IPV4, 8080)
    assert CidrSet.parse(["127.0.0.0/8"]).contains_host(host)


def test_number_looking_domains_are_not_domains() -> None:
    # "Ends in a number" sends a host to the IPv4 parser (WHATWG §3.5); invalid there
    # means the URL fails, so it can never be compared as a domain.
    assert parse_url_host("http://foo.0x7g/") is not None  # not a number: a domain
    assert parse_url_host("http://foo.09/") is None
    assert parse_url_host("http://1.2.3.4.5/") is None
    assert parse_url_host("http://4294967296/") is None


def test_ipv4_mapped_ipv6_against_ipv4_cidr() -> None:
    metadata = CidrSet.parse(["169.254.169.254/32"])
    host = parse_url_host("http://[::ffff:169.254.169.254]/latest/meta-data/")
    assert host is not None
    assert host.kind is HostKind.IPV6
    assert metadata.contains_host(host)
    assert not CidrSet.parse(["::1/128"]).contains_host(_parse("127.0.0.1"))


# -- names ---------------------------------------------------------------------------


def test_trailing_dots(allow: HostSet) -> None:
    assert allow.matches(_parse("example.com."))
    assert allow.matches(_parse("https://a.allowed.com./"))
    assert not allow.matches(_parse("example.com.."))
    assert not allow.matches(_parse("https://a.allowed.com../"))


def test_idna_homograph(allow: HostSet, psl: PublicSuffixList) -> None:
    cyrillic = _parse("https://\u0430pple.com/")  # CYRILLIC SMALL LETTER A
    assert cyrillic.name == "xn--pple-43d.com"
    assert not allow.matches(cyrillic)
    assert HostPattern.parse("\u0430pple.com", psl).matches(cyrillic)
    assert not HostPattern.parse("\u0430pple.com", psl).matches(_parse("apple.com"))


def test_unicode_normalisation_is_uts46(allow: HostSet) -> None:
    # Fullwidth letters and the ideographic full stop map to ASCII (UTS #46 mapping).
    assert _parse("https://ｅｘａｍｐｌｅ。ｃｏｍ/").name == "example.com"
    assert allow.matches(_parse("https://ｅｘａｍｐｌｅ。ｃｏｍ/"))
    # Soft hyphen is mapped to nothing, so it cannot hide a different host.
    assert allow.matches(_parse("https://exam\u00adple.com/"))


def test_percent_encoded_host(allow: HostSet) -> None:
    host = _parse("http://ex%61mple.com/")
    assert host.name == "example.com"
    assert allow.matches(host)
    assert _parse("http://%65%76%69%6c.com/").name == "evil.com"


def test_invalid_punycode_fails_closed() -> None:
    assert parse_url_host("http://a.b.c.xn--pokxncvks/") is None
    assert parse_url_host("http://xn--a.example/") is None
    assert parse_destination("xn--.com") is None


def test_wildcard_depth_and_suffix_confusion(allow: HostSet) -> None:
    assert allow.matches(_parse("x.allowed.com"))
    assert allow.matches(_parse("a.b.c.d.allowed.com"))
    assert allow.matches(_parse("allowed.com"))  # listed separately
    for value in ["evilallowed.com", "allowed.com.evil.com", "allowed.co", "allowed.com-evil.com",
                  "x.allowed.comm", "xallowed.com"]:  # fmt: skip
        assert not allow.matches(_parse(value)), value


def test_apex_is_not_in_its_wildcard(psl: PublicSuffixList) -> None:
    only_subdomains = HostSet.parse(["*.example.org"], psl)
    assert not only_subdomains.matches(_parse("example.org"))
    assert only_subdomains.matches(_parse("www.example.org"))


def test_port_restriction(allow: HostSet) -> None:
    assert allow.matches(_parse("https://api.partner.com/"))
    assert allow.matches(_parse("api.partner.com:443"))
    assert allow.matches(_parse("wss://api.partner.com/"))
    assert not allow.matches(_parse("http://api.partner.com/"))
    assert not allow.matches(_parse("https://api.partner.com:444/"))
    assert not allow.matches(_parse("api.partner.com"))  # no scheme, no port: unknown


def test_opaque_hosts_match_nothing_but_destinations_are_endpoints(allow: HostSet) -> None:
    host = parse_url_host("gopher://allowed.com/")
    assert host is not None
    assert host.kind is HostKind.OPAQUE
    assert not allow.matches(host)
    # A destination is where bytes go: redis://127.0.0.1 must not escape an IP rule,
    # and an opaque host that is no network host is unparseable.
    assert CidrSet.parse(["127.0.0.0/8"]).contains_host(_parse("redis://0x7f.1/"))
    assert parse_destination("foo://a%zz/") is None


@pytest.mark.parametrize(
    "pattern", ["*.com", "*.co.uk", "*.github.io", "*.uk", "*.herokuapp.com", "*.公司.cn"]
)
def test_public_suffix_wildcards_refused(pattern: str, psl: PublicSuffixList) -> None:
    with pytest.raises(HostPatternError) as caught:
        HostSet.parse(["example.com", pattern], psl)
    assert caught.value.code is ErrorCode.POLICY_PUBLIC_SUFFIX_WILDCARD


# -- parse_destination refuses URLs that WHATWG and RFC 3986 clients read differently --


@pytest.mark.parametrize(
    "url",
    [
        "http://allowed.com\\@evil.com/",  # WHATWG: allowed.com; RFC 3986 clients: evil.com
        "http://evil.com\\@allowed.com/",
        "https://allowed.com\\.evil.com/",
        "http://evil.com\t.allowed.com/",  # WHATWG deletes the tab
        "http://evil.com\n.allowed.com/",
        "http://allowed.com/\r\nHost: evil.com",
        "https://allowed.com/\x00",
    ],
)
def test_destination_refuses_parser_differentials(url: str) -> None:
    assert parse_destination(url) is None


def test_destination_keeps_backslash_outside_the_authority(allow: HostSet) -> None:
    host = parse_destination("https://allowed.com/a\\b?c=\\")
    assert host is not None
    assert allow.matches(host)
    # ...and the WHATWG reading is still available to callers that want it.
    whatwg = parse_url_host("http://allowed.com\\@evil.com/")
    assert whatwg is not None
    assert whatwg.name == "allowed.com"


def test_huge_ports_are_refused_not_parsed() -> None:
    assert parse_destination("example.com:" + "9" * 10_000) is None
    assert parse_destination("example.com:" + "0" * 10_000 + "443") == Host(
        "example.com", HostKind.DOMAIN, None, 443
    )
    assert parse_url_host("http://example.com:" + "9" * 10_000 + "/") is None
