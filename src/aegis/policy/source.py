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
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

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


def _core_schema_loader() -> type[yaml.SafeLoader]:
    """A SafeLoader whose implicit scalar resolution is the YAML 1.2 core schema."""

    class CoreLoader(yaml.SafeLoader):
        pass

    CoreLoader.yaml_implicit_resolvers = {}
    resolvers = [
        ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
        (
            "tag:yaml.org,2002:float",
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
            "-+0123456789.",
        ),
        ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ]
    for tag, pattern, first in resolvers:
        CoreLoader.add_implicit_resolver(tag, re.compile(pattern), list(first))
    return CoreLoader


_CORE_TAGS: Final = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
}


def _compose(text: str) -> Node | None:
    """Compose one YAML document into a node graph, refusing aliases and deep nesting."""
    loader_cls = _core_schema_loader()
    depth = [0]

    class GuardedLoader(loader_cls):  # type: ignore[misc,valid-type]
        def compose_node(self, parent: Node | None, index: object) -> Node:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise _SourceError(
                    ErrorCode.POLICY_YAML_ALIAS,
                    "YAML aliases are not allowed in policies (they enable expansion bombs)",
                    mark.line + 1,
                    mark.column + 1,
                )
            event = self.peek_event()
            if getattr(event, "anchor", None):
                mark = event.start_mark
                raise _SourceError(
                    ErrorCode.POLICY_YAML_ALIAS,
                    "YAML anchors are not allowed in policies",
                    mark.line + 1,
                    mark.column + 1,
                )
            depth[0] += 1
            if depth[0] > MAX_DEPTH:
                mark = event.start_mark
                raise _SourceError(
                    ErrorCode.POLICY_TOO_DEEP,
                    f"nested deeper than {MAX_DEPTH} levels",
                    mark.line + 1,
                    mark.column + 1,
                )
            try:
                node: Node = super().compose_node(parent, index)
                return node
            finally:
                depth[0] -= 1

    loader = GuardedLoader(text)
    try:
        if not loader.check_node():
            return None
        node = loader.get_node()
        if loader.check_node():
            mark = loader.peek_event().start_mark
            raise _SourceError(
                ErrorCode.POLICY_MULTIPLE_DOCUMENTS,
                "one policy document per file ('---' separates a second one)",
                mark.line + 1,
                mark.column + 1,
            )
        return node  # type: ignore[no-any-return]
    finally:
        loader.dispose()


def _to_data(
    node: Node, path: LocPath, locations: dict[LocPath, tuple[int, int]], constructor: Any
) -> Any:
    locations[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if node.tag not in _CORE_TAGS:
        raise _SourceError(
            ErrorCode.POLICY_YAML_TAG,
            f"YAML tag {node.tag!r} is not allowed",
            node.start_mark.line + 1,
            node.start_mark.column + 1,
        )
    if isinstance(node, ScalarNode):
        if node.tag == "tag:yaml.org,2002:str":
            return node.value
        if node.tag == "tag:yaml.org,2002:int":
            text = node.value
            return int(text, 0) if text[:2] in ("0o", "0x") else int(text)
        if node.tag == "tag:yaml.org,2002:float":
            value = constructor.construct_yaml_float(node)
            if not math.isfinite(value):
                # JSON has no NaN or infinity, and NaN makes "ne"/"not_in" hold for everything.
                raise _SourceError(
                    ErrorCode.POLICY_INVALID_VALUE,
                    f"{node.value!r}: numbers must be finite",
                    node.start_mark.line + 1,
                    node.start_mark.column + 1,
                )
            return value
        if node.tag == "tag:yaml.org,2002:bool":
            return node.value.lower() == "true"
        return None
    if isinstance(node, SequenceNode):
        return [
            _to_data(child, (*path, i), locations, constructor)
            for i, child in enumerate(node.value)
        ]
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise _SourceError(
                    ErrorCode.POLICY_INVALID_TYPE,
                    "mapping keys must be plain strings",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            key = str(key_node.value)
            if key == "<<":
                raise _SourceError(
                    ErrorCode.POLICY_YAML_ALIAS,
                    "YAML merge keys ('<<') are not allowed",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            if key in out:
                raise _SourceError(
                    ErrorCode.POLICY_DUPLICATE_KEY,
                    f"duplicate key {key!r}",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            locations[(*path, key, KEY)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            out[key] = _to_data(value_node, (*path, key), locations, constructor)
        return out
    raise _SourceError(
        ErrorCode.POLICY_INVALID_TYPE, "unsupported YAML node", 1, 1
    )  # pragma: no cover


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
    constructor = yaml.SafeLoader("")
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
            node = _compose(text)
            if node is not None:
                _to_data(node, (), locations, constructor)
        except (yaml.YAMLError, _SourceError):
            locations = {}
        return SourceDocument(file, text, data, locations)
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        col = mark.column + 1 if mark else 1
        raise _SourceError(
            ErrorCode.POLICY_YAML_SYNTAX, str(exc.problem or exc), line, col
        ) from None
    except yaml.YAMLError as exc:
        raise _SourceError(ErrorCode.POLICY_YAML_SYNTAX, str(exc), 1, 1) from None
    if node is None:
        raise _SourceError(ErrorCode.POLICY_EMPTY, "the file holds no document", 1, 1)
    data = _to_data(node, (), locations, constructor)
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
