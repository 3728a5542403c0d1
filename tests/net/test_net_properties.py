"""Properties: the parsers never raise, and canonical names are fixed points."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.errors import HostPatternError
from aegis.net import (
    Host,
    HostKind,
    HostPattern,
    HostSet,
    PublicSuffixList,
    load_public_suffix_list,
    parse_destination,
    parse_host,
    parse_url_host,
)

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Characters that matter to host parsing, plus some Unicode that UTS #46 maps,
#: rejects or keeps, so that examples reach the interesting branches quickly.
_ASCII_PIECES = list("abcxyzABCXYZ0123456789-._%:@/\\[]?#*~ ")
_OTHER_PIECES = ["xn--", "0x", "%2e", "%41", "\u0430", "\u00fc", "\u00df", "\u3002", "\uff21"]
_OTHER_PIECES += ["\u00ad", "\u200d", "\u0301", "\u05d0", "\ufffd", "\x00", "\t", "\ud800"]
_HOSTY = st.sampled_from(_ASCII_PIECES + _OTHER_PIECES)
host_text = st.lists(_HOSTY, max_size=24).map("".join)
any_text = st.text(max_size=60) | host_text
scheme = st.sampled_from(["http://", "https://", "ws://", "file://", "foo://", "http:", ""])


@PROFILE
@given(any_text, st.none() | st.sampled_from(["http://a.com/b", "foo:/x", "not a url"]))
def test_parse_url_host_never_raises(text: str, base: str | None) -> None:
    host = parse_url_host(text, base)
    assert host is None or isinstance(host, Host)


@PROFILE
@given(scheme, any_text)
def test_parse_destination_never_raises(prefix: str, text: str) -> None:
    for value in (text, prefix + text):
        host = parse_destination(value)
        assert host is None or (isinstance(host, Host) and host.name)


@PROFILE
@given(any_text)
def test_pattern_parse_raises_only_host_pattern_error(text: str) -> None:
    psl = load_public_suffix_list()
    try:
        pattern = HostPattern.parse(text, psl)
    except HostPatternError:
        return
    assert pattern.text == text


def _canonical_invariants(host: Host, psl: PublicSuffixList) -> None:
    """Re-parsing a canonical name gives the same host, and a pattern written as
    that name matches both the original and the re-parsed host."""
    again = parse_destination(host.name)
    assert again is not None
    assert (again.name, again.kind, again.ip) == (host.name, host.kind, host.ip)
    via_url = parse_url_host(f"http://{host.name}/")
    assert via_url is not None
    assert via_url.name == host.name
    assert parse_host(host.name) == Host(host.name, host.kind, host.ip, None)

    if host.kind is HostKind.DOMAIN and ("" in host.match_name.split(".") or "*" in host.name):
        # An empty label is not a DNS name, and '*' is the wildcard: no pattern
        # can name such a host exactly, by design (both are legal WHATWG hosts).
        return
    pattern = HostPattern.parse(host.name, psl)
    assert pattern.matches(host)
    assert pattern.matches(again)
    assert HostPattern.parse(pattern.host, psl) == HostPattern(
        pattern.host, pattern.host, False, pattern.ip, None
    )  # the normalised host is itself a canonical pattern
    assert HostSet.parse([host.name], psl).matches(host)
    if host.port:  # port 0 is a valid destination port but never a pattern port
        assert HostPattern.parse(f"{host.name}:{host.port}", psl).matches(host)

    if host.kind is HostKind.DOMAIN and not psl.is_public_suffix(host.match_name):
        wildcard = HostSet.parse([f"*.{host.match_name}"], psl)
        assert not wildcard.matches(host)  # the apex is not in its own wildcard
        child = parse_destination(f"sub.{host.name}")
        assert child is not None
        assert wildcard.matches(child)


@PROFILE
@given(host_text, st.none() | st.integers(min_value=0, max_value=65535))
def test_canonical_names_are_fixed_points(text: str, port: int | None) -> None:
    value = text if port is None else f"{text}:{port}"
    host = parse_destination(value)
    if host is None:
        return
    _canonical_invariants(host, load_public_suffix_list())


@PROFILE
@given(
    st.lists(
        st.sampled_from(["a", "b", "xn--bcher-kva", "b\u00fccher", "A", "0", "1", "0x1", "09"]),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(["", "."]),
)
def test_dotted_names_are_fixed_points(labels: list[str], trailing: str) -> None:
    host = parse_destination(".".join(labels) + trailing)
    if host is None:
        return
    _canonical_invariants(host, load_public_suffix_list())


_PATTERNS = st.sampled_from(
    ["a.example.com", "*.example.com", "*.a.example.com:8443", "b.example.org:443",
     "10.0.0.1", "10.0.0.1:22", "[::1]", "[::ffff:10.0.0.2]", "*.xn--bcher-kva.de", "example.com."]
)  # fmt: skip
_DESTINATIONS = st.sampled_from(
    ["a.example.com", "A.example.com.", "x.a.example.com:8443", "x.a.example.com",
     "example.com", "b.example.org:443", "https://b.example.org/", "10.0.0.1:22",
     "http://0xa.0.0.1/", "[::1]:1", "10.0.0.2", "http://[::ffff:a00:1]/", "shop.bücher.de",
     "https://a..example.com/", "ftp://x.example.com/", "redis://a.example.com/"]
)  # fmt: skip


@PROFILE
@given(st.lists(_PATTERNS, max_size=6), _DESTINATIONS)
def test_hostset_is_the_union_of_its_patterns(patterns: list[str], destination: str) -> None:
    psl = load_public_suffix_list()
    host = parse_destination(destination)
    assert host is not None
    expected = any(HostPattern.parse(p, psl).matches(host) for p in patterns)
    assert HostSet.parse(patterns, psl).matches(host) is expected
