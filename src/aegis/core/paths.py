"""Parameter paths: how policies address a value inside a call's params.

Syntax: keys separated by dots, list indexes in brackets, ``*`` for any key or
index (redaction paths only), and a bracketed quoted key for keys that contain
dots or brackets::

    amount
    customer.email
    items[0].sku
    messages[*].text
    headers["x-api.key"]

Concrete paths are rendered the same way, so a redaction record names the exact
field that was rewritten (``messages[2].text``), never its value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from aegis.core.call import JsonValue

WILDCARD: Final = "*"
MAX_PATH_SEGMENTS: Final = 32

_KEY = re.compile(r"[A-Za-z0-9_\-$@:]+")


class PathSyntaxError(ValueError):
    """The path string is not valid; ``position`` is the 0-based offset of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


Segment = str | int


@dataclass(frozen=True, slots=True)
class ParamPath:
    segments: tuple[Segment, ...]

    @property
    def has_wildcard(self) -> bool:
        return WILDCARD in self.segments

    def __str__(self) -> str:
        return render(self.segments)


_MISSING: Final = object()


def parse_path(text: str) -> ParamPath:
    """Parse a path string; raise PathSyntaxError with the offending position."""
    if not text:
        raise PathSyntaxError("empty path", 0)
    segments: list[Segment] = []
    i, n = 0, len(text)
    expect_key = True
    while i < n:
        ch = text[i]
        if ch == "[":
            end = text.find("]", i)
            if end < 0:
                raise PathSyntaxError("unclosed '['", i)
            inner = text[i + 1 : end]
            if inner == WILDCARD:
                segments.append(WILDCARD)
            elif _is_index(inner):
                segments.append(int(inner))
            elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "\"'":
                key = _unquote(inner, i)
                if key == WILDCARD:
                    raise PathSyntaxError("a key named '*' cannot be addressed", i)
                segments.append(key)
            else:
                raise PathSyntaxError(f"bad index '[{inner}]'", i)
            i = end + 1
            expect_key = False
        elif ch == ".":
            if expect_key:
                raise PathSyntaxError("empty path segment", i)
            i += 1
            expect_key = True
            if i == n:
                raise PathSyntaxError("path ends with '.'", i - 1)
        else:
            if not expect_key:
                raise PathSyntaxError("expected '.' or '[' between segments", i)
            if ch == WILDCARD:
                segments.append(WILDCARD)
                i += 1
            else:
                m = _KEY.match(text, i)
                if not m:
                    raise PathSyntaxError(f"unexpected character {ch!r}", i)
                segments.append(m.group())
                i = m.end()
            expect_key = False
        if len(segments) > MAX_PATH_SEGMENTS:
            raise PathSyntaxError(f"more than {MAX_PATH_SEGMENTS} segments", i)
    return ParamPath(tuple(segments))


def render(segments: tuple[Segment, ...] | list[Segment]) -> str:
    out: list[str] = []
    for seg in segments:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
        elif seg == WILDCARD:
            out.append("[*]" if out else "*")
        elif _KEY.fullmatch(seg):
            out.append(f".{seg}" if out else seg)
        else:
            out.append(f"[{json.dumps(seg, ensure_ascii=False)}]")
    return "".join(out)


def lookup(params: object, segments: tuple[Segment, ...]) -> object:
    """Value at a wildcard-free path, or the module sentinel MISSING.

    An int segment indexes a list; on a dict it is looked up as the string key,
    so ``items.0`` and ``items[0]`` both work whatever the container.
    """
    value = params
    for seg in segments:
        if isinstance(value, dict):
            value = value.get(str(seg) if isinstance(seg, int) else seg, _MISSING)
            if value is _MISSING:
                return MISSING
        elif isinstance(value, list):
            idx = seg if isinstance(seg, int) else (int(seg) if _is_index(seg) else -1)
            if not 0 <= idx < len(value):
                return MISSING
            value = value[idx]
        else:
            return MISSING
    return value


MISSING: Final = _MISSING


def _is_index(text: str) -> bool:
    # ASCII only: str.isdigit() accepts '²', which int() then refuses.
    return text.isascii() and text.isdigit() and len(text) <= 9


def _unquote(quoted: str, position: int) -> str:
    """A bracketed key: double quotes are a JSON string (escapes decoded), single are raw."""
    if quoted[0] == "'":
        return quoted[1:-1]
    try:
        key = json.loads(quoted)
    except json.JSONDecodeError:
        raise PathSyntaxError(f"bad quoted key {quoted}", position) from None
    if not isinstance(key, str):  # pragma: no cover - a quoted JSON value is a string
        raise PathSyntaxError(f"bad quoted key {quoted}", position)
    return key


def expand(
    params: JsonValue, segments: tuple[Segment, ...]
) -> Iterator[tuple[tuple[Segment, ...], JsonValue]]:
    """Every (concrete path, value) a possibly-wildcard path reaches."""
    yield from _expand(params, segments, ())


def _expand(
    value: JsonValue, rest: tuple[Segment, ...], done: tuple[Segment, ...]
) -> Iterator[tuple[tuple[Segment, ...], JsonValue]]:
    if not rest:
        yield done, value
        return
    seg, tail = rest[0], rest[1:]
    if isinstance(value, dict):
        if seg == WILDCARD:
            for k, v in value.items():
                yield from _expand(v, tail, (*done, k))
        else:
            key = str(seg)
            if key in value:
                yield from _expand(value[key], tail, (*done, key))
    elif isinstance(value, list):
        if seg == WILDCARD:
            for i, v in enumerate(value):
                yield from _expand(v, tail, (*done, i))
        else:
            idx = seg if isinstance(seg, int) else (int(seg) if _is_index(seg) else -1)
            if 0 <= idx < len(value):
                yield from _expand(value[idx], tail, (*done, idx))
