"""Small value parsers and comparisons shared by the compiler and both evaluators.

Each is pure and defined once, so the indexed engine and the reference
evaluator cannot drift on what "15m", "stripe.*" or "equal" mean.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import time
from typing import Final

from aegis.core.regex import compile_re2

_DURATION = re.compile(r"^([0-9]{1,9})(ms|s|m|h|d|w)$")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION_SECONDS: Final = 366 * 86400


def parse_duration(value: int | str) -> float:
    """Seconds in a duration: int seconds or '<n><unit>' with unit in ms,s,m,h,d,w."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '15m'")
    if isinstance(value, int):
        seconds = float(value)
    else:
        m = _DURATION.match(value.strip())
        if not m:
            raise ValueError(f"{value!r} is not a duration (examples: 30s, 15m, 1h, 1d)")
        seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError("a duration must be at most 366 days")
    return seconds


_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def parse_clock(value: str) -> int:
    """Minutes since midnight for 'HH:MM'; '24:00' is the end of the day (1440)."""
    if value == "24:00":
        return 1440
    m = _CLOCK.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a time of day (HH:MM, 00:00 to 24:00)")
    return int(m.group(1)) * 60 + int(m.group(2))


def clock_minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """A case-sensitive glob: ``*`` is any run of characters, ``?`` one character.

    Nothing else is special (no character classes): tool and agent names are
    identifiers, and a glob that means more than it looks like is a risk.
    """
    if not pattern:
        raise ValueError("empty glob")
    if "*" not in pattern and "?" not in pattern:
        return pattern.__eq__
    if pattern == "*":
        return lambda _name: True
    # The shapes policies use almost always -- 'stripe.*', '*.read', 'a*z' -- are
    # prefix/suffix tests, far cheaper than a regex call on the hot path.
    if "?" not in pattern and pattern.count("*") == 1:
        head, _, tail = pattern.partition("*")
        if not tail:
            return lambda name: name.startswith(head)
        if not head:
            return lambda name: name.endswith(tail)
        least = len(head) + len(tail)
        return lambda name: len(name) >= least and name.startswith(head) and name.endswith(tail)
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    compiled = compile_re2(f"^(?s:{regex})$")
    return lambda name: compiled.search(name) is not None


def is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def json_equal(a: object, b: object) -> bool:
    """JSON equality: booleans are not numbers, 1 == 1.0, containers compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


def is_number(value: object) -> bool:
    """A JSON number: exactly int or float (bool is an int subclass, and JSON's
    true is not 1; parse_call normalises other int/float subclasses away)."""
    return type(value) is int or type(value) is float
