"""US Social Security Numbers, AAA-GG-SSSS, with the SSA's never-issued ranges excluded.

Since SSN randomization (June 2011) the area number has no geographic meaning and
every area is assignable except 000, 666 and 900-999; group 00 and serial 0000 are
never issued (Social Security Administration, "Social Security Number Randomization").
Only the separated forms are detected: a bare 9-digit run is too often something else.
"""

from __future__ import annotations

from typing import Final

#: AAA-GG-SSSS or AAA GG SSSS; the alternation keeps the two separators the same.
PATTERN: Final = r"\b[0-9]{3}(?:-[0-9]{2}-|\x20[0-9]{2}\x20)[0-9]{4}\b"


def is_ssn(text: str) -> bool:
    area, group, serial = text[0:3], text[4:6], text[7:11]
    return area not in {"000", "666"} and area[0] != "9" and group != "00" and serial != "0000"
