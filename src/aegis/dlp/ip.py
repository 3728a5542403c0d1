"""IP addresses: dotted-quad IPv4 (RFC 791) and IPv6 text forms (RFC 4291 §2.2).

Patterns only find candidates; :mod:`ipaddress` decides. Python rejects IPv4
octets with leading zeros (ambiguous: octal in inet_aton), so "01.02.03.04" is not
an address.
"""

from __future__ import annotations

import ipaddress
from typing import Final

_H: Final = r"[0-9A-Fa-f]{1,4}"
_V4: Final = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"

#: A whole run of dotted numbers: "03.93.92.16.85" (a phone number) is one
#: five-part candidate that fails validation, not an address followed by ".85".
IPV4_PATTERN: Final = r"\b[0-9]{1,3}(?:\.[0-9]{1,3}){3,}\b"
#: The RFC 4291 §2.2 text forms: eight groups; six groups and a dotted IPv4 tail;
#: or "::" compression with groups (and possibly an IPv4 tail) on either side.
#: Word boundaries keep "std::map" and MAC/clock notation ("10:30:00") out.
IPV6_PATTERN: Final = (
    rf"\b{_H}(?::{_H}){{7}}\b"
    rf"|\b{_H}(?::{_H}){{5}}:{_V4}\b"
    rf"|(?:\b{_H}(?::{_H}){{0,6}}|\B)::"
    rf"(?:(?:{_H}:){{0,5}}{_V4}\b|(?:{_H}:){{0,6}}{_H}\b|\B)"
)
IP_PATTERN: Final = rf"(?:{IPV6_PATTERN})|(?:{IPV4_PATTERN})"


def is_ipv4(text: str) -> bool:
    if text.count(".") != 3:
        return False
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def is_ipv6(text: str) -> bool:
    """A valid IPv6 address that does not look like code or a clock.

    "::" compression makes short tokens valid ("a::b", "dead::beef"), and those are
    far more often C++/Ruby scopes than addresses; a compressed form must therefore
    keep two groups and contain a decimal digit. Uncompressed forms have 8 groups.
    """
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    if "::" not in text:
        return True
    groups = [g for g in text.replace(".", ":").split(":") if g]
    return len(groups) >= 2 and any(c.isdigit() for c in text)


def is_ip(text: str) -> bool:
    return is_ipv6(text) if ":" in text else is_ipv4(text)
