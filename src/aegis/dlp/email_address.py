"""Email addresses: a practical subset of RFC 5322 §3.4.1 ``addr-spec`` (with RFC 6531 UTF-8).

Covered: a dot-atom local part and a domain of LDH labels (RFC 1035 §2.3.1) or
Unicode labels, ending in an alphabetic or punycode TLD; also IPv4 domain literals.
Left out on purpose: quoted local parts and comments, which real traffic almost
never carries, and the atext characters ``& = ? /`` so that a URL query such as
``?next=/x&to=bob@example.com`` redacts the address, not the query around it.
"""

from __future__ import annotations

from typing import Final

#: Non-ASCII code points outside the Latin-1 symbols, General Punctuation and CJK
#: punctuation blocks: letters and digits of every script, near enough. (\p{L} and
#: \p{N} are exact but blow up RE2's DFA: ~50x slower on a megabyte of text.)
_UNICODE: Final = (
    r"\x{C0}-\x{1FFF}\x{2070}-\x{2FFF}\x{3040}-\x{D7FF}\x{F900}-\x{FFEF}\x{10000}-\x{10FFFF}"
)
_ALNUM: Final = rf"A-Za-z0-9{_UNICODE}"
_ATEXT: Final = rf"[{_ALNUM}!#$%'*+^_`{{|}}~\-]"
_LABEL: Final = rf"[{_ALNUM}](?:[{_ALNUM}\-]{{0,61}}[{_ALNUM}])?"
_TLD: Final = rf"(?:[A-Za-z{_UNICODE}]{{2,63}}|xn--[A-Za-z0-9\-]{{1,59}})"
_LITERAL: Final = r"\[[0-9]{1,3}(?:\.[0-9]{1,3}){3}\]"

PATTERN: Final = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:(?:{_LABEL}\.)+{_TLD}|{_LITERAL})"
