"""Email addresses: a practical subset of RFC 5322 §3.4.1 ``addr-spec`` (with RFC 6531 UTF-8).

Covered: a dot-atom local part and a domain of LDH labels (RFC 1035 §2.3.1) or
Unicode labels, ending in an alphabetic or punycode TLD; also IPv4 domain literals.
Left out on purpose: quoted local parts and comments, which real traffic almost
never carries, and the atext characters ``& = ? /`` so that a URL query such as
``?next=/x&to=bob@example.com`` redacts the address, not the query around it.
"""

from __future__ import annotations

from typing import Final

_ATEXT: Final = r"[\p{L}\p{N}!#$%'*+^_`{|}~\-]"
_LABEL: Final = r"[\p{L}\p{N}](?:[\p{L}\p{N}\-]{0,61}[\p{L}\p{N}])?"
_TLD: Final = r"(?:\p{L}{2,63}|xn--[A-Za-z0-9\-]{1,59})"
_LITERAL: Final = r"\[[0-9]{1,3}(?:\.[0-9]{1,3}){3}\]"

PATTERN: Final = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:(?:{_LABEL}\.)+{_TLD}|{_LITERAL})"
