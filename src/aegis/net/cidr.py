"""IP address ranges (CIDR blocks) that policies allow or deny.

A block is written ``address/prefix`` (RFC 4632 for IPv4, RFC 4291 §2.3 for
IPv6), or a bare address for a single host. Host bits set below the prefix
(``10.0.0.1/8``) are an error rather than silently masked: the author meant
something, and we cannot know whether it was ``10.0.0.0/8`` or ``10.0.0.1/32``.

Hosts are compared after WHATWG parsing, so ``http://2130706433/`` and
``http://0177.0.0.1/`` are 127.0.0.1 here. An IPv4-mapped IPv6 address
(``::ffff:127.0.0.1``, RFC 4291 §2.5.5.2) reaches the IPv4 host on a dual-stack
socket, so it is checked against the IPv4 blocks as well.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final

from aegis.errors import ErrorCode, HostPatternError
from aegis.net.host import Host

__all__ = ["CidrListError", "CidrSet"]

#: Only an address and a decimal prefix length. ``ipaddress`` would also take
#: netmasks and hostmasks (``10.0.0.0/0.255.255.255``) and scoped IPv6
#: (``fe80::1%eth0``), which only add ways to be misread.
_CIDR_SYNTAX: Final = re.compile(r"[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?")


class CidrListError(HostPatternError):
    """A CIDR block in a list is invalid; ``index`` and ``cidr`` say which one."""

    def __init__(self, code: ErrorCode, message: str, *, index: int, cidr: object) -> None:
        super().__init__(code, message)
        self.index = index
        self.cidr = cidr


class CidrSet:
    """A set of IPv4 and IPv6 blocks with a membership test that costs one set
    lookup per distinct prefix length, however many blocks there are."""

    __slots__ = ("_networks", "_v4", "_v6")

    def __init__(self, networks: Sequence[IPv4Network | IPv6Network]) -> None:
        self._networks = tuple(networks)
        self._v4 = _index([n for n in self._networks if isinstance(n, IPv4Network)], 32)
        self._v6 = _index([n for n in self._networks if isinstance(n, IPv6Network)], 128)

    @classmethod
    def parse(cls, cidrs: Sequence[str]) -> CidrSet:
        """Parse every block; the first invalid one raises :class:`CidrListError`
        (a HostPatternError with code ``policy.invalid_cidr``) naming it."""
        if isinstance(cidrs, str):
            raise HostPatternError(
                ErrorCode.POLICY_INVALID_CIDR,
                f"expected a list of CIDR blocks, got the string {cidrs!r}",
            )
        networks: list[IPv4Network | IPv6Network] = []
        for index, text in enumerate(cidrs):
            try:
                networks.append(_parse_one(text))
            except ValueError as exc:
                raise CidrListError(
                    ErrorCode.POLICY_INVALID_CIDR,
                    f"CIDR #{index} {text!r}: {exc}",
                    index=index,
                    cidr=text,
                ) from None
        return cls(networks)

    @property
    def networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return self._networks

    def contains_ip(self, ip: IPv4Address | IPv6Address) -> bool:
        """Whether ``ip`` is in a block; an IPv4-mapped IPv6 address also counts
        as its IPv4 address."""
        if isinstance(ip, IPv4Address):
            return _lookup(self._v4, int(ip))
        if _lookup(self._v6, int(ip)):
            return True
        mapped = ip.ipv4_mapped
        return mapped is not None and _lookup(self._v4, int(mapped))

    def contains_host(self, host: Host) -> bool:
        """Whether ``host`` is an IP address in a block; ``False`` for domains and
        opaque hosts (resolving names is not this layer's business)."""
        return host.ip is not None and self.contains_ip(host.ip)

    def __len__(self) -> int:
        return len(self._networks)

    def __iter__(self) -> Iterator[IPv4Network | IPv6Network]:
        return iter(self._networks)


def _parse_one(text: object) -> IPv4Network | IPv6Network:
    if not isinstance(text, str):
        raise ValueError("a CIDR block must be a string")
    if not _CIDR_SYNTAX.fullmatch(text):
        raise ValueError("expected an IP address with an optional /prefix, as in 10.0.0.0/8")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        # strict=True is what refuses host bits: "10.0.0.1/8 has host bits set".
        raise ValueError(str(exc)) from None


#: (netmask, network addresses) per prefix length, longest prefix first.
_Index = tuple[tuple[int, frozenset[int]], ...]


def _index(networks: Sequence[IPv4Network | IPv6Network], width: int) -> _Index:
    by_prefix: dict[int, set[int]] = {}
    for network in networks:
        by_prefix.setdefault(network.prefixlen, set()).add(int(network.network_address))
    all_ones = (1 << width) - 1
    return tuple(
        (all_ones ^ (all_ones >> prefix), frozenset(addresses))
        for prefix, addresses in sorted(by_prefix.items(), reverse=True)
    )


def _lookup(index: _Index, value: int) -> bool:
    return any(value & mask in addresses for mask, addresses in index)
