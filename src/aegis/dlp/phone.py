"""Telephone numbers: E.164 international form and common national formats.

Formats covered (candidates from :data:`PATTERN`, confirmed by :func:`is_phone_number`):

* E.164 with a plus, grouped or not: "+1-984-182-0190", "+447700677662";
* an international number showing the national trunk prefix: "+41 (0)96 471 07 95";
* North American (NANP): "(602) 272-9781", "541.714.1388", "001-518-640-0854",
  and a bare 10/11-digit run only if it is a valid NANP number (area and exchange
  codes start 2-9 and are not N11, per the NANP numbering plan), so Unix times and
  order numbers are not redacted;
* other national formats written in groups: "0688 872 49 99", "03.93.92.16.85",
  "(08) 8747 6301";
* an extension after any of these: "x4587", "ext. 12", "#12".

A number has 7 to 15 digits (ITU-T E.164 caps an international number at 15).
Rejected look-alikes: a single-dot decimal, a dotted quad that is an IPv4
address, dates ("2024-01-15", "15.01.2024") and year ranges ("1990-2000").
"""

from __future__ import annotations

from typing import Final

_SEP: Final = r"[\x20.\-]"
PATTERN: Final = (
    # +CC, optionally "(0)" or "(area)"; or "(area)"; or a digit at a word start.
    rf"(?:\B\+[0-9]{{1,3}}(?:{_SEP}?\([0-9]{{1,4}}\))?{_SEP}?|\B\([0-9]{{1,5}}\){_SEP}?|\b)"
    # A run of 7-15 digits, or a group of at most 5 and up to 6 more groups.
    rf"(?:[0-9]{{7,15}}|[0-9]{{1,5}}(?:{_SEP}[0-9]{{1,12}}){{1,6}})"
    r"(?:\x20?(?i:x|ext\.?|#)\x20?[0-9]{1,6})?\b"
)

_MIN_DIGITS: Final = 7
_MAX_DIGITS: Final = 15


def _strip_extension(text: str) -> str:
    lowered = text.lower()
    found = [i for i in (lowered.find(m) for m in ("ext", "x", "#")) if i >= 0]
    return text[: min(found)].rstrip() if found else text


def _split(text: str) -> tuple[list[str], list[str]]:
    """Digit groups, and the non-digit text between each consecutive pair."""
    groups: list[str] = []
    seps: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = i
        while j < n and not "0" <= text[j] <= "9":
            j += 1
        if groups:
            seps.append(text[i:j])
        i = j
        while j < n and "0" <= text[j] <= "9":
            j += 1
        if j > i:
            groups.append(text[i:j])
        i = j
    return groups, seps[: max(0, len(groups) - 1)]


def is_nanp(digits: str) -> bool:
    """A 10-digit NANP number, optionally with the country code 1 in front."""
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) != 10:
        return False
    area, exchange = digits[0:3], digits[3:6]
    return (
        area[0] >= "2"
        and area[1] != "9"  # N9X area codes are reserved for expansion
        and area[1:] != "11"  # N11 are service codes (911, 411)
        and exchange[0] >= "2"
        and exchange[1:] != "11"
    )


def _is_year(group: str) -> bool:
    return len(group) == 4 and "1900" <= group <= "2099"


def _is_day_month(a: str, b: str) -> bool:
    da, db = int(a), int(b)
    return (1 <= da <= 31 and 1 <= db <= 12) or (1 <= da <= 12 and 1 <= db <= 31)


def _starts_with_date(groups: list[str], seps: list[str]) -> bool:
    """Dates such as "2024-01-15" or "15.01.2024", also with a time after them."""
    if len(groups) < 3 or seps[0] != seps[1] or seps[0] not in {"-", "."}:
        return False
    first, mid, last = groups[:3]
    if _is_year(first) and len(mid) <= 2 and len(last) <= 2:
        return _is_day_month(last, mid)
    if _is_year(last) and len(first) <= 2 and len(mid) <= 2:
        return _is_day_month(first, mid)
    return False


def _looks_like_ipv4(groups: list[str]) -> bool:
    return len(groups) == 4 and all(len(g) <= 3 and int(g) <= 255 for g in groups)


def _national_shape_ok(groups: list[str], seps: list[str]) -> bool:
    """Shapes a national number (no country code) may take, beyond the digit count."""
    if len(groups) == 2:
        code, subscriber = groups
        if seps == ["."] or (_is_year(code) and _is_year(subscriber)):
            return False  # a decimal number; a range of years
        # An area or trunk code, then a subscriber number of at least 4 digits;
        # a 5-digit code starts with the trunk prefix 0 (UK "07700 900123").
        # Rejects house number + street number ("17151 2450") and ZIP+4-style
        # postcodes ("3610-114", "75534-030").
        return len(subscriber) >= 4 and (len(code) <= 4 or code[0] == "0")
    if set(seps) == {"."} and _looks_like_ipv4(groups):
        return False
    if [len(g) for g in groups] == [3, 2, 4] and seps in (["-", "-"], [" ", " "]):
        return False  # the shape of a US SSN: the us_ssn detector's to report
    return not _starts_with_date(groups, seps)


def is_phone_number(text: str) -> bool:
    body = _strip_extension(text)
    international = body.startswith("+")
    if international:
        # "(0)" shows the trunk prefix dialled only from inside the country.
        body = body.replace("(0)", "", 1)
    groups, seps = _split(body)
    digits = "".join(groups)
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
        return False
    if international:
        return True
    if len(groups) == 1:
        return is_nanp(digits)
    if body.startswith("("):
        return True  # "(602) 272-9781", "(08) 8747 6301": an area code was marked
    return _national_shape_ok(groups, seps)
