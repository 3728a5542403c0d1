"""Payment card numbers (PANs), ISO/IEC 7812-1: issuer prefix, length, Luhn check digit.

A PAN is written as one run of digits or in groups split by single spaces or
dashes ("4111 1111 1111 1111", Amex "3782 822463 10005"). The pattern takes any
such grouping that starts with a group of four; the validator then demands a
plausible issuer/length pair and a correct Luhn (mod 10) check digit, which alone
rejects 9 of 10 random numbers.
"""

from __future__ import annotations

from typing import Final

#: 12-19 digits in one run, or in groups after a first group of four (4-4-4-4,
#: Amex 4-6-5, Diners 4-6-4, 19-digit 4-4-4-4-3), at word boundaries.
PATTERN: Final = r"\b(?:[0-9]{12,19}|[0-9]{4}(?:[ \-][0-9]{2,19}){1,7})\b"

#: Allowed PAN lengths by major industry identifier, the first digit (ISO/IEC
#: 7812-1). 1: airlines (UATP, 15 digits); 2-6: banking, travel and
#: merchandising networks (Visa 13/16/19, Mastercard 16, Amex 15, Diners 14-19,
#: JCB 15-19, Discover/UnionPay 16-19). Maestro (5x, 6x) also issues 12-digit PANs.
#: 0, 7, 8, 9 (ISO/TC 68, petroleum, health/telecom, national) are not payment cards.
_LENGTHS: Final[dict[str, range]] = {
    "1": range(15, 16),
    "2": range(14, 20),
    "3": range(14, 20),
    "4": range(13, 20),
    "5": range(12, 20),
    "6": range(12, 20),
}


def luhn_valid(digits: str) -> bool:
    """The Luhn mod-10 check (ISO/IEC 7812-1 Annex B) over a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_card_number(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    lengths = _LENGTHS.get(digits[:1])
    return lengths is not None and len(digits) in lengths and luhn_valid(digits)
