"""Hosts as a browser would see them: parsed by the WHATWG URL Standard, never by hand.

A policy that allowlists ``api.example.com`` is only as good as the parser that
decides which host a call really goes to. Hand-written URL splitting is the
classic bypass (``http://allowed.com@evil.com/``, ``http://evil.com\\@allowed.com``,
``http://0x7f.1/``), so every host here comes out of the WHATWG URL Standard's
host parser (https://url.spec.whatwg.org/#host-parsing), via ada, which is what
HTTP clients built on browser semantics resolve. The one place ada (4.0) is
laxer than the standard -- ``xn--`` labels that are not valid IDNA -- is closed
by :func:`_valid_ace_label` below, so the Web Platform Tests agree exactly.

Parsing never raises: anything that is not a URL with a host is ``None``, and
what to do with ``None`` (deny, normally) is the caller's decision.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Final

import ada_url

__all__ = [
    "Host",
    "HostKind",
    "has_space_or_control",
    "parse_destination",
    "parse_host",
    "parse_url_host",
    "split_host_port",
]


class HostKind(StrEnum):
    """The WHATWG host types (https://url.spec.whatwg.org/#concept-host)."""

    DOMAIN = "domain"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    #: The host of a non-special URL (``redis://cache:6379``). The standard does
    #: not apply IDNA, lowercasing or IPv4 parsing to it (§3.5 opaque-host
    #: parser), so it is not a DNS name we can compare, and no pattern matches it.
    OPAQUE = "opaque"


@dataclass(frozen=True, slots=True)
class Host:
    """One parsed host.

    ``name`` is exactly the WHATWG ``hostname`` serialization: ASCII (punycode)
    and lowercased for domains, canonical dotted decimal for IPv4, bracketed
    compressed form for IPv6. ``port`` is the explicit port, else the scheme's
    default port when the scheme has one, else ``None``.
    """

    name: str
    kind: HostKind
    ip: IPv4Address | IPv6Address | None
    port: int | None

    @property
    def match_name(self) -> str:
        """``name`` without ONE trailing dot: ``example.com.`` is the same DNS name
        (an absolute FQDN, RFC 1034 §3.1) as ``example.com``, but ``example.com..``
        is not a valid name and stays distinct, so it matches nothing."""
        return self.name[:-1] if self.name.endswith(".") else self.name


#: WHATWG "default port" for each special scheme (§4.1 special schemes).
_DEFAULT_PORTS: Final[dict[str, int]] = {
    "http:": 80,
    "https:": 443,
    "ws:": 80,
    "wss:": 443,
    "ftp:": 21,
}
_SPECIAL_SCHEMES: Final = frozenset({*_DEFAULT_PORTS, "file:"})

#: An absolute URL written with an authority. Plain ``scheme:`` is not enough:
#: ``localhost:8080`` is a valid URL whose scheme is ``localhost``.
_ABSOLUTE_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
#: Characters that would end the authority or introduce userinfo. In a bare
#: ``host[:port]`` they can only be an attempt to smuggle a second host past us.
_AUTHORITY_DELIMITERS: Final = frozenset("/\\?#@")
#: Where RFC 3986 §3.2 ends an authority. WHATWG also ends it at a backslash in
#: special-scheme URLs (§4.4 "authority state"): the source of parser differentials.
_RFC3986_AUTHORITY_END: Final = re.compile(r"[/?#]")
_PORT_DIGITS: Final = re.compile(r"[0-9]*")
_MAX_PORT: Final = 65535


def parse_url_host(url: str, base: str | None = None) -> Host | None:
    """The host of ``url`` (resolved against ``base``) per the WHATWG URL parser.

    ``None`` when the URL does not parse or has no host (or an empty host, as in
    ``file:///etc/passwd``): there is nothing to match a pattern against.
    """
    try:
        parsed = ada_url.URL(url, base)
        hostname: str = parsed.hostname
        protocol: str = parsed.protocol
        port_text: str = parsed.port
        host_type = int(parsed.host_type)
    except ValueError:  # also UnicodeEncodeError: lone surrogates cannot be UTF-8
        return None
    if not hostname:
        return None
    if port_text:
        port: int | None = int(port_text)
    else:
        port = _DEFAULT_PORTS.get(protocol)
    return _make_host(hostname, host_type, port, special=protocol in _SPECIAL_SCHEMES)


@functools.lru_cache(maxsize=16384)
def parse_destination(value: str) -> Host | None:
    """The host a ToolCall ``destination`` (or URL-valued parameter) names.

    Accepts an absolute URL (``https://x.com/a``) or a bare authority: ``host``,
    ``host:port`` or ``[v6]:port``. A bare authority is parsed as if it followed
    ``http://`` but must be *only* an authority: userinfo, path, query, fragment,
    backslash, whitespace or control characters mean ``None``. A bare authority
    has no scheme, so without an explicit port its ``port`` is ``None``.

    An absolute URL is parsed by :func:`parse_url_host`, except where the WHATWG
    parser and the RFC 3986 parsers many HTTP clients use would disagree about
    the host, which is ``None`` here so that no policy is decided on a host the
    client may not use: control characters anywhere (WHATWG silently deletes tab
    and newline, even inside the host) and a backslash in the authority
    (``http://allowed.com\\@evil.com/`` is allowed.com to WHATWG, evil.com to
    an RFC 3986 parser).

    An opaque host (a scheme the URL Standard does not treat as special) is
    re-read by the special-scheme host parser, since a destination is always a
    network endpoint.

    Never raises on a ``str``. Results are cached (bounded LRU): the function
    is pure, agents call the same few endpoints over and over, and a WHATWG
    parse costs several microseconds on the decision's hot path.
    """
    if not isinstance(value, str) or not value:
        return None
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return None
    absolute = _ABSOLUTE_URL.match(value)
    if absolute:
        authority = _RFC3986_AUTHORITY_END.split(value[absolute.end() :], maxsplit=1)[0]
        if "\\" in authority:
            return None
        host = parse_url_host(value)
        if host is None or host.kind is not HostKind.OPAQUE:
            return host
        # A destination is a network endpoint whatever its scheme: an opaque host
        # (redis://10.0.0.1, ssh://EXAMPLE.com) is read as a special-scheme host
        # would be, so "ip_in 10.0.0.0/8" and host allowlists see what the
        # client will connect to; one that cannot be read so is unparseable.
        network = parse_host(host.name)
        return None if network is None else Host(network.name, network.kind, network.ip, host.port)
    if has_space_or_control(value) or not _AUTHORITY_DELIMITERS.isdisjoint(value):
        return None
    split = split_host_port(value)
    if split is None:
        return None
    host_text, port_text = split
    port: int | None = None
    if port_text:  # "host:" is an empty port, which WHATWG reads as no port
        # WHATWG allows any number of leading zeros; strip them before int() so
        # a 10,000-digit "port" is refused rather than parsed.
        digits = port_text.lstrip("0") or "0"
        if not _PORT_DIGITS.fullmatch(port_text) or len(digits) > 5 or int(digits) > _MAX_PORT:
            return None
        port = int(digits)
    host = parse_host(host_text)
    if host is None:
        return None
    return Host(host.name, host.kind, host.ip, port)


def parse_host(text: str) -> Host | None:
    """A bare host (no port) through the WHATWG host parser for special schemes.

    This is the parser behind ``http://<text>/``: percent-decoding, UTS #46
    mapping to punycode, lowercasing, and the IPv4 number parser (so
    ``0x7f.1`` is ``127.0.0.1``). ``port`` is always ``None``.
    """
    if not text or has_space_or_control(text) or not _AUTHORITY_DELIMITERS.isdisjoint(text):
        return None
    if text.startswith("["):
        if not text.endswith("]"):
            return None
    elif ":" in text or "[" in text or "]" in text:
        return None
    host = parse_url_host(f"http://{text}/")
    if host is None:
        return None
    return Host(host.name, host.kind, host.ip, None)


def split_host_port(text: str) -> tuple[str, str | None] | None:
    """Split ``host[:port]`` where the WHATWG host state would (§4.4 "host state"):
    at the first ``:`` outside an IPv6 ``[...]``. The port is returned unparsed
    (``None`` when there is no ``:``); ``None`` overall when brackets are unbalanced.
    """
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            return None
        host, rest = text[: close + 1], text[close + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            return None
        return host, rest[1:]
    host, colon, port = text.partition(":")
    return host, (port if colon else None)


def _make_host(hostname: str, host_type: int, port: int | None, *, special: bool) -> Host | None:
    """Classify a WHATWG ``hostname`` serialization by the host type ada reports."""
    try:
        if host_type == ada_url.HostType.IPV6:
            return Host(hostname, HostKind.IPV6, IPv6Address(hostname[1:-1]), port)
        if host_type == ada_url.HostType.IPV4:
            # Serialized as dotted decimal whatever the input spelling (§3.6).
            return Host(hostname, HostKind.IPV4, IPv4Address(hostname), port)
    except ValueError:
        return None  # the parser gave us something that is not an address: fail closed
    if not special:
        return Host(hostname, HostKind.OPAQUE, None, port)
    if not all(_valid_ace_label(label) for label in hostname.split(".")):
        return None
    return Host(hostname, HostKind.DOMAIN, None, port)


def _valid_ace_label(label: str) -> bool:
    """Whether an ``xn--`` label is valid IDNA, as UTS #46 §4 "Processing" step 4
    requires and ada 4.0 does not fully check (WPT: "Domain is ASCII, but a label
    is invalid IDNA", ``https://xn--/``).

    The label must Punycode-decode (RFC 3492) to a non-empty, not-all-ASCII
    string, and that string must come back to exactly this label through UTS #46
    ToASCII. The round trip stands in for the §4.1 validity criteria: a code
    point that is mapped, disallowed or not NFC cannot survive it, and it also
    refuses non-canonical encodings, so one name has one spelling.
    """
    if not label.startswith("xn--"):
        return True
    try:
        decoded = codecs.decode(label[4:].encode("ascii"), "punycode")
    except (UnicodeError, ValueError):
        return False
    if not decoded or decoded.isascii():
        return False
    try:
        again = ada_url.idna_to_ascii(decoded)  # b"" when ToASCII fails
    except ValueError:
        return False
    return bool(again == label.encode("ascii"))


def has_space_or_control(text: str) -> bool:
    """Whitespace or a control character (Unicode Cc), which the URL parser would
    silently strip or reject, and which has no business in a host."""
    return any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in text)
