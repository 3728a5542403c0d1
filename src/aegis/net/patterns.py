"""Host patterns: which hosts a policy allows or denies.

The pattern language
====================

A host pattern is a host, optionally followed by ``:port``. Nothing else: no
scheme, path, userinfo, query, whitespace or control characters.

``example.com``
    Exactly that host. Case does not matter and the host's trailing dot is
    ignored (``EXAMPLE.com.`` matches). The pattern goes through the same WHATWG
    host parser as the URLs it is matched against, so IDN patterns are
    normalised by UTS #46: ``bücher.de`` matches ``xn--bcher-kva.de``, and
    ``аpple.com`` written with a Cyrillic ``а`` is a different host from
    ``apple.com`` and matches only itself.

``*.example.com``
    Any subdomain of ``example.com``, at any depth (``a.example.com``,
    ``a.b.example.com``), but NOT ``example.com`` itself (list it as well if it
    is meant) and not ``evilexample.com``. The wildcard is allowed only as a
    whole leading label. The rest must not be a public suffix by the Public
    Suffix List (ICANN and PRIVATE sections, and every bare top-level label by
    the PSL's default rule): ``*.com``, ``*.co.uk``, ``*.github.io`` and
    ``*.corp`` are refused with ``policy.public_suffix_wildcard``, since they
    would allow names that unrelated parties register.

``api.example.com:443``, ``*.example.com:8443``
    As above, and only on that port. A host's port is its explicit port or its
    scheme's default (``https://x/`` is 443); a host without a known port (a
    bare ``x`` destination, a non-special scheme without a port) does not match
    a pattern with a port. A pattern without a port matches every port.

``10.1.2.3``, ``[2001:db8::1]``, ``[::1]:8080``
    That IP address, compared by value: ``http://0x0a.1.2.3/`` and
    ``http://167838211/`` are 10.1.2.3 after WHATWG parsing, and an IPv4-mapped
    IPv6 host (``[::ffff:a01:203]``) is the same IPv4 address. A domain pattern
    never matches an IP host, nor an IP pattern a domain. Address ranges belong
    in a :class:`aegis.net.cidr.CidrSet`.

Hosts of non-special URLs (``HostKind.OPAQUE``, e.g. ``redis://cache``) are not
DNS names the standard normalises, so no pattern matches them. Unparseable
destinations never reach here (the parsers return ``None``).

Errors are :class:`aegis.errors.HostPatternError`: ``policy.invalid_host_pattern``
for malformed patterns, ``policy.public_suffix_wildcard`` for the wildcards above.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final, TypeVar

from aegis.errors import ErrorCode, HostPatternError
from aegis.net.host import Host, HostKind, has_space_or_control, parse_host, split_host_port
from aegis.net.psl import PublicSuffixList

__all__ = ["HostPattern", "HostPatternListError", "HostSet"]

IPAddress = IPv4Address | IPv6Address

_PORT: Final = re.compile(r"[0-9]{1,5}")
_MAX_PORT: Final = 65535
_NOT_HOST_CHARS: Final = "/\\?#@"


class HostPatternListError(HostPatternError):
    """A pattern in a list is invalid; ``index`` and ``pattern`` say which one."""

    def __init__(self, code: ErrorCode, message: str, *, index: int, pattern: object) -> None:
        super().__init__(code, message)
        self.index = index
        self.pattern = pattern


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One parsed host pattern (see the module docstring for the language).

    ``text`` is the pattern as written; ``host`` its normalised host (for a
    wildcard, the part after ``*.``; for an IP, the WHATWG serialization);
    ``ip`` the address of an IP pattern; ``port`` the required port, if any.
    """

    text: str
    host: str
    wildcard: bool
    ip: IPAddress | None
    port: int | None

    @classmethod
    def parse(cls, text: str, psl: PublicSuffixList) -> HostPattern:
        """Parse and validate ``text``; raises HostPatternError."""

        def invalid(why: str) -> HostPatternError:
            return HostPatternError(
                ErrorCode.POLICY_INVALID_HOST_PATTERN, f"host pattern {text!r}: {why}"
            )

        if not isinstance(text, str):
            raise invalid("a host pattern must be a string")
        if not text:
            raise invalid("a host pattern cannot be empty")
        if has_space_or_control(text):
            raise invalid("whitespace and control characters are not allowed")
        if "://" in text:
            raise invalid("a host pattern is a host, not a URL: remove the scheme")
        for ch in _NOT_HOST_CHARS:
            if ch in text:
                raise invalid(f"{ch!r} is not allowed: write only a host and an optional :port")
        if not text.startswith("[") and text.count(":") > 1:
            raise invalid("more than one ':'; write an IPv6 address in brackets, as in [::1]")
        split = split_host_port(text)
        if split is None:
            raise invalid("write an IPv6 address as [address] or [address]:port")
        host_text, port_text = split
        port: int | None = None
        if port_text is not None:
            if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= _MAX_PORT:
                raise invalid(f"port {port_text!r} is not a number from 1 to {_MAX_PORT}")
            port = int(port_text)

        if host_text == "*":
            raise invalid("'*' alone would match every host; list the hosts instead")
        wildcard = host_text.startswith("*.")
        body = host_text[2:] if wildcard else host_text
        if "*" in body:
            raise invalid("'*' is only allowed as a whole leading label, as in *.example.com")

        host = parse_host(body)
        if host is None:
            raise invalid("not a valid host by the WHATWG URL Standard")
        if host.ip is not None:
            if wildcard:
                raise invalid("a wildcard cannot apply to an IP address; use a CIDR range")
            return cls(text, host.name, False, host.ip, port)

        name = host.match_name
        if "" in name.split("."):
            raise invalid("a host cannot have an empty label ('..', or a leading '.')")
        if "*" in name:  # spelled %2A, which the host parser decodes
            raise invalid("'*' is only allowed as a whole leading label, as in *.example.com")
        if wildcard and psl.is_public_suffix(name):
            raise HostPatternError(
                ErrorCode.POLICY_PUBLIC_SUFFIX_WILDCARD,
                f"host pattern {text!r}: {name!r} is a public suffix, so the wildcard would "
                "match domains registered by unrelated parties; name the domains instead",
            )
        return cls(text, name, wildcard, None, port)

    def matches(self, host: Host) -> bool:
        """Whether ``host`` is one this pattern names."""
        if self.port is not None and host.port != self.port:
            return False
        if self.ip is not None:
            return host.ip is not None and ip_key(host.ip) == ip_key(self.ip)
        if host.kind is not HostKind.DOMAIN:
            return False
        name = host.match_name
        if not self.wildcard:
            return name == self.host
        if not name.endswith("." + self.host):
            return False
        # The labels in front must be real ones: "a..example.com" is not a name.
        prefix = name[: -len(self.host) - 1]
        return "" not in prefix.split(".")


#: Ports a name is allowed on: ``None`` is any port.
_Ports = frozenset[int] | None
_K = TypeVar("_K", bound=Hashable)


class HostSet:
    """Many host patterns, matched in time proportional to the host's labels.

    Exact names are one dict lookup; wildcards are looked up once per label
    boundary of the host (``a.b.example.com`` tries ``b.example.com``,
    ``example.com``, ``com``); IP patterns are looked up by address.
    """

    __slots__ = ("_count", "_exact", "_ips", "_wildcards")

    def __init__(
        self,
        exact: dict[str, _Ports],
        wildcards: dict[str, _Ports],
        ips: dict[IPAddress, _Ports],
        count: int,
    ) -> None:
        self._exact = exact
        self._wildcards = wildcards
        self._ips = ips
        self._count = count

    @classmethod
    def parse(cls, patterns: Sequence[str], psl: PublicSuffixList) -> HostSet:
        """Parse every pattern; the first invalid one raises
        :class:`HostPatternListError` (a HostPatternError) naming it and its index."""
        if isinstance(patterns, str):
            raise HostPatternError(
                ErrorCode.POLICY_INVALID_HOST_PATTERN,
                f"expected a list of host patterns, got the string {patterns!r}",
            )
        exact: dict[str, set[int] | None] = {}
        wildcards: dict[str, set[int] | None] = {}
        ips: dict[IPAddress, set[int] | None] = {}
        for index, text in enumerate(patterns):
            try:
                pattern = HostPattern.parse(text, psl)
            except HostPatternError as exc:
                raise HostPatternListError(
                    exc.code, f"pattern #{index}: {exc.message}", index=index, pattern=text
                ) from exc
            if pattern.ip is not None:
                _add_port(ips, ip_key(pattern.ip), pattern.port)
            elif pattern.wildcard:
                _add_port(wildcards, pattern.host, pattern.port)
            else:
                _add_port(exact, pattern.host, pattern.port)
        return cls(_freeze(exact), _freeze(wildcards), _freeze(ips), len(patterns))

    def matches(self, host: Host) -> bool:
        """Whether any pattern in the set matches ``host``."""
        if host.ip is not None:
            key = ip_key(host.ip)
            return key in self._ips and _port_ok(self._ips[key], host.port)
        if host.kind is not HostKind.DOMAIN:
            return False
        name = host.match_name
        if "" in name.split("."):
            return False  # patterns never contain empty labels; see HostPattern.matches
        if name in self._exact and _port_ok(self._exact[name], host.port):
            return True
        dot = name.find(".")
        while dot >= 0:
            suffix = name[dot + 1 :]
            if suffix in self._wildcards and _port_ok(self._wildcards[suffix], host.port):
                return True
            dot = name.find(".", dot + 1)
        return False

    def __len__(self) -> int:
        """How many patterns the set was parsed from (duplicates included)."""
        return self._count


def _add_port(table: dict[_K, set[int] | None], key: _K, port: int | None) -> None:
    """Record that ``key`` is allowed on ``port`` (``None``: on any port, which
    absorbs every specific port listed for the same key)."""
    if port is None:
        table[key] = None
    elif key not in table:
        table[key] = {port}
    else:
        ports = table[key]
        if ports is not None:
            ports.add(port)


def _freeze(table: dict[_K, set[int] | None]) -> dict[_K, _Ports]:
    return {key: None if ports is None else frozenset(ports) for key, ports in table.items()}


def _port_ok(ports: _Ports, port: int | None) -> bool:
    return ports is None or port in ports


def ip_key(ip: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``, RFC 4291 §2.5.5.2) reach the
    IPv4 host on a dual-stack socket, so they are compared as that IPv4 address."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
