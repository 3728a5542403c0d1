"""International Bank Account Numbers, ISO 13616: country length, ISO 7064 MOD 97-10.

Written electronically as one run ("GB82WEST12345698765432") or in the paper
format of ISO 13616-1, groups of four separated by single spaces. Letters are
accepted in either case and upper-cased for the check.
"""

from __future__ import annotations

from typing import Final

#: Two letters, two check digits, then the BBAN in (optionally spaced) groups of 4.
PATTERN: Final = (
    r"\b[A-Za-z]{2}[0-9]{2}"  # country code, check digits
    r"(?:\x20?[A-Za-z0-9]{4}){2,7}(?:\x20?[A-Za-z0-9]{1,3})?\b"  # BBAN
)

#: IBAN length per country, from the SWIFT IBAN Registry (the ISO 13616
#: registration authority). A country code not listed here is not an IBAN: the
#: registry is closed, and accepting any code would let 1 in 97 random tokens through.
IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip


def mod97(iban: str) -> int:
    """ISO 7064 MOD 97-10 over an IBAN (as ISO 13616-1 applies it): country and check digits
    move to the end, letters become 10..35, and the number is reduced mod 97."""
    rearranged = iban[4:] + iban[:4]
    remainder = 0
    for ch in rearranged:
        # Digits stay as they are; A=10 .. Z=35 (two decimal digits).
        value = ord(ch) - 48 if ch.isdigit() else ord(ch) - 55
        remainder = (remainder * (100 if value > 9 else 10) + value) % 97
    return remainder


def is_iban(text: str) -> bool:
    iban = text.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    # Check digits are 02..98 by construction (98 - n mod 97), and the whole is 1 mod 97.
    return "02" <= iban[2:4] <= "98" and mod97(iban) == 1
