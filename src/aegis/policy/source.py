"""The parse stage: policy text to plain data, with the source position of every node.

Policy files are untrusted input (they come through CI from many authors, and
later through bundle uploads), so the reader is defensive by construction:

* size is capped before parsing;
* YAML aliases and anchors are refused outright -- they are the vehicle of the
  "billion laughs" expansion bomb and no policy needs them;
* only the YAML 1.2 core schema's scalars are recognised (``true``/``false``,
  not YAML 1.1's ``yes``/``no``/``on``/``off``, which turn a country code ``NO``
  into ``False``); explicit tags other than the core ones are refused;
* nesting depth is capped while composing, before Python's recursion can fail;
* duplicate mapping keys are an error (YAML 1.2 §3.2.1.3 says keys are unique;
  PyYAML would silently keep the last one).

JSON files are parsed by the json module (the source of truth for values) and
composed again through the YAML reader only to learn positions for diagnostics.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from aegis.errors import Diagnostic, ErrorCode

MAX_FILE_BYTES: Final = 4 << 20
MAX_DEPTH: Final = 64

#: Marks the position of a mapping *key* (as opposed to its value) in Locations.
KEY: Final = "\x00key"

LocPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One parsed file: its data and where each node came from (1-based).

    ``file`` is how diagnostics name it (the path as the user typed it);
    ``name`` is its name inside the policy set (relative to the folder it was
    loaded from), which is what the bundle hash covers -- so the same bytes get
    the same hash whatever the working directory.
    """

    file: str
    text: str
    data: Any
    locations: dict[LocPath, tuple[int, int]] = field(default_factory=dict)
    name: str = ""

    @property
    def set_name(self) -> str:
        return self.name or self.file

    def locate(self, path: LocPath) -> tuple[int, int]:
        """Position of the deepest node of ``path`` that exists in the source.

        Validation errors name model paths that may include union tags or
        defaulted fields absent from the file; the nearest real ancestor is
        where the author needs to look.
        """
        for end in range(len(path), -1, -1):
            pos = self.locations.get(path[:end])
            if pos is not None:
                return pos
        return (1, 1)


class _SourceError(Exception):
    def __init__(self, code: ErrorCode, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution): the only
# implicit types of plain scalars. Everything else is a string.
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS: Final = {f"{_TAG}str", f"{_TAG}int", f"{_TAG}float", f"{_TAG}bool", f"{_TAG}null"}


def _where(event: Any) -> tuple[int, int]:
    mark = event.start_mark
    return mark.line + 1, mark.column + 1


def _scalar(event: Any) -> Any:
    """The value of a scalar event under the core schema; explicit tags only if core."""
    value: str = event.value
    tag = event.tag
    if tag is not None and tag != "!":
        if tag not in _SCALAR_TAGS:
            raise _SourceError(
                ErrorCode.POLICY_YAML_TAG, f"YAML tag {tag!r} is not allowed", *_where(event)
            )
        kind = tag[len(_TAG) :]
    elif tag == "!" or not event.implicit[0]:
        return value  # quoted or block scalar: always a string
    elif _NULL.match(value):
        return None
    elif _BOOL.match(value):
        return value.lower() == "true"
    elif _INT.match(value):
        kind = "int"
    elif _FLOAT.match(value):
        kind = "float"
    else:
        return value
    try:
        if kind == "str":
            return value
        if kind == "null":
            return None
        if kind == "bool":
            return {"true": True, "false": False}[value.lower()]
        if kind == "int":
            return (
                int(value[2:], 8 if value[1] == "o" else 16)
                if value[:2] in ("0o", "0x")
                else int(value)
            )
        number = float(value.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf"))
    except (ValueError, KeyError):
        raise _SourceError(
            ErrorCode.POLICY_INVALID_VALUE, f"{value!r} is not a valid {kind}", *_where(event)
        ) from None
    if not math.isfinite(number):
        # JSON has no NaN or infinity, and NaN makes "ne"/"not_in" hold for everything.
        raise _SourceError(
            ErrorCode.POLICY_INVALID_VALUE, f"{value!r}: numbers must be finite", *_where(event)
        )
    return number


class _Frame:
    __slots__ = ("container", "key", "path")

    def __init__(self, container: dict[str, Any] | list[Any], path: LocPath) -> None:
        self.container = container
        self.path = path
        self.key: str | None = None  # a mapping's key awaiting its value


def _load_yaml(text: str, locations: dict[LocPath, tuple[int, int]]) -> Any:
    """Build plain data from libyaml's event stream, with a position for every node.

    Working on events (not PyYAML's node graph) means an alias is refused the
    moment it appears -- nothing is ever expanded -- and depth is counted before
    any recursion could happen. The C parser keeps large files fast.
    """
    loader = yaml.CSafeLoader(text) if yaml.__with_libyaml__ else yaml.SafeLoader(text)
    stack: list[_Frame] = []
    root: Any = None
    have_root = False
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                raise _SourceError(
                    ErrorCode.POLICY_YAML_ALIAS,
                    "YAML aliases are not allowed in policies (they enable expansion bombs)",
                    *_where(event),
                )
            if isinstance(event, yaml.DocumentStartEvent) and have_root:
                raise _SourceError(
                    ErrorCode.POLICY_MULTIPLE_DOCUMENTS,
                    "one policy document per file ('---' separates a second one)",
                    *_where(event),
                )
            if not isinstance(event, yaml.NodeEvent | yaml.CollectionEndEvent):
                continue
            if getattr(event, "anchor", None):
                raise _SourceError(
                    ErrorCode.POLICY_YAML_ALIAS,
                    "YAML anchors are not allowed in policies",
                    *_where(event),
                )
            if isinstance(event, yaml.CollectionEndEvent):
                frame = stack.pop()
                value: Any = frame.container
                if not stack:
                    root, have_root = value, True
                continue
            top = stack[-1] if stack else None
            if isinstance(top, _Frame) and isinstance(top.container, dict) and top.key is None:
                # This event is a mapping key.
                if not isinstance(event, yaml.ScalarEvent):
                    raise _SourceError(
                        ErrorCode.POLICY_INVALID_TYPE,
                        "mapping keys must be plain strings",
                        *_where(event),
                    )
                key = event.value
                if key == "<<" and event.implicit[0]:
                    raise _SourceError(
                        ErrorCode.POLICY_YAML_ALIAS,
                        "YAML merge keys ('<<') are not allowed",
                        *_where(event),
                    )
                if key in top.container:
                    raise _SourceError(
                        ErrorCode.POLICY_DUPLICATE_KEY, f"duplicate key {key!r}", *_where(event)
                    )
                locations[(*top.path, key, KEY)] = _where(event)
                top.key = key
                continue
            # This event is a value: where does it go?
            if top is None:
                path: LocPath = ()
            elif isinstance(top.container, dict):
                assert top.key is not None
                path = (*top.path, top.key)
            else:
                path = (*top.path, len(top.container))
            locations[path] = _where(event)
            if isinstance(event, yaml.ScalarEvent):
                value = _scalar(event)
            else:
                tag = getattr(event, "tag", None)  # CollectionStartEvent
                if tag is not None and tag != "!" and tag not in (f"{_TAG}seq", f"{_TAG}map"):
                    raise _SourceError(
                        ErrorCode.POLICY_YAML_TAG,
                        f"YAML tag {tag!r} is not allowed",
                        *_where(event),
                    )
                if len(stack) >= MAX_DEPTH:
                    raise _SourceError(
                        ErrorCode.POLICY_TOO_DEEP,
                        f"nested deeper than {MAX_DEPTH} levels",
                        *_where(event),
                    )
                value = {} if isinstance(event, yaml.MappingStartEvent) else []
            if top is None:
                if isinstance(event, yaml.ScalarEvent):
                    root, have_root = value, True
            elif isinstance(top.container, dict):
                assert top.key is not None
                top.container[top.key] = value
                top.key = None
            else:
                top.container.append(value)
            if not isinstance(event, yaml.ScalarEvent):
                stack.append(_Frame(value, path))
    finally:
        loader.dispose()
    if not have_root:
        raise _SourceError(ErrorCode.POLICY_EMPTY, "the file holds no document", 1, 1)
    return root


def _json_duplicate_guard(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name}: numbers must be finite")


def _json_depth_ok(text: str) -> bool:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest <= MAX_DEPTH


def parse_text(text: str, file: str, *, fmt: str | None = None) -> SourceDocument:
    """Parse policy text (YAML, or JSON when ``fmt == 'json'`` or the file ends .json)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise _SourceError(
            ErrorCode.POLICY_FILE_TOO_LARGE, f"file is larger than {MAX_FILE_BYTES} bytes", 1, 1
        )
    is_json = fmt == "json" or (fmt is None and file.endswith(".json"))
    locations: dict[LocPath, tuple[int, int]] = {}
    if is_json:
        if not _json_depth_ok(text):
            raise _SourceError(ErrorCode.POLICY_TOO_DEEP, f"nested deeper than {MAX_DEPTH}", 1, 1)
        try:
            data = json.loads(
                text, object_pairs_hook=_json_duplicate_guard, parse_constant=_refuse_constant
            )
        except json.JSONDecodeError as exc:
            raise _SourceError(
                ErrorCode.POLICY_JSON_SYNTAX, exc.msg, exc.lineno, exc.colno
            ) from None
        except ValueError as exc:
            code = (
                ErrorCode.POLICY_DUPLICATE_KEY
                if str(exc).startswith("duplicate")
                else ErrorCode.POLICY_INVALID_VALUE
            )
            raise _SourceError(code, str(exc), 1, 1) from None
        # Positions only: JSON is (practically) YAML flow syntax. If the YAML
        # reader disagrees on some exotic escape, diagnostics fall back to 1:1.
        try:
            _load_yaml(text, locations)
        except (yaml.YAMLError, _SourceError):
            locations = {}
        return SourceDocument(file, text, data, locations)
    try:
        data = _load_yaml(text, locations)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        col = mark.column + 1 if mark else 1
        raise _SourceError(
            ErrorCode.POLICY_YAML_SYNTAX, str(exc.problem or exc), line, col
        ) from None
    except yaml.YAMLError as exc:
        raise _SourceError(ErrorCode.POLICY_YAML_SYNTAX, str(exc), 1, 1) from None
    return SourceDocument(file, text, data, locations)


def parse_source(text: str, file: str, *, fmt: str | None = None) -> SourceDocument | Diagnostic:
    """Parse, returning a located Diagnostic instead of raising."""
    try:
        return parse_text(text, file, fmt=fmt)
    except _SourceError as exc:
        return Diagnostic(exc.code, exc.message, file=file, line=exc.line, column=exc.column)
    except RecursionError:  # pragma: no cover - the depth guard fires first
        return Diagnostic(
            ErrorCode.POLICY_TOO_DEEP, "nested too deeply", file=file, line=1, column=1
        )


def read_source(path: Path, set_name: str | None = None) -> SourceDocument | Diagnostic:
    """Read and parse one file, bounding the read before decoding it.

    ``set_name`` is the file's name within its policy set (see SourceDocument).
    """
    name = str(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return Diagnostic(ErrorCode.POLICY_IO, f"cannot read: {exc.strerror}", file=name)
    if len(raw) > MAX_FILE_BYTES:
        return Diagnostic(
            ErrorCode.POLICY_FILE_TOO_LARGE,
            f"file is larger than {MAX_FILE_BYTES} bytes",
            file=name,
            line=1,
            column=1,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        code = (
            ErrorCode.POLICY_JSON_SYNTAX if name.endswith(".json") else ErrorCode.POLICY_YAML_SYNTAX
        )
        return Diagnostic(code, f"not valid UTF-8 at byte {exc.start}", file=name)
    parsed = parse_source(text, name)
    if isinstance(parsed, SourceDocument) and set_name:
        return dataclasses.replace(parsed, name=set_name)
    return parsed
