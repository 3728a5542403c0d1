"""`ToolCall`: what one agent asks one tool to do, as every door hands it to the core.

A ToolCall is immutable and cheap to build: doors construct one per request, so it
is a slotted frozen dataclass with no validation in ``__init__``. Untrusted input
(JSON from the wire, a file given to the CLI) goes through :func:`parse_call`,
which refuses anything malformed with a :class:`~aegis.errors.CallError` -- a
malformed call is never decided, and therefore never allowed.

``params`` is plain JSON data (dicts, lists, str, int, float, bool, None). The core
never mutates it; sanitize produces a new copy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias, TypeVar

from aegis.errors import CallError, ErrorCode

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
Params: TypeAlias = Mapping[str, JsonValue]
_E = TypeVar("_E", bound=StrEnum)

#: Nesting deeper than this is refused (DESIGN.md §6: deep nesting is bad input).
MAX_PARAM_DEPTH = 32
#: Total JSON nodes in params; bounds evaluation and DLP work per call.
MAX_PARAM_NODES = 10_000
#: Longest string accepted anywhere in a call (bytes of UTF-8 are not counted twice).
MAX_STRING_LENGTH = 1_000_000
#: Integers beyond 2**63 are refused: no tool API means them, and Python would
#: otherwise compare them exactly while Rego/JSON peers round them (a disagreement).
MAX_ABS_INT = 2**63


class ToolKind(StrEnum):
    """Whether a tool only reads or may change the world. Drives fail modes."""

    READ = "read"
    WRITE = "write"


class McpPhase(StrEnum):
    """MCP distinguishes listing tools from calling one (MCP spec, `tools/list`)."""

    LIST = "list"
    CALL = "call"


@dataclass(frozen=True, slots=True)
class TraceContext:
    """W3C Trace Context (https://www.w3.org/TR/trace-context/) carried through."""

    traceparent: str = ""
    tracestate: str = ""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One agent -> tool call. ``parent_chain`` runs from the root to the direct parent."""

    tenant: str
    agent_id: str
    tool: str
    params: Params = field(default_factory=dict)
    kind: ToolKind | None = None
    phase: McpPhase = McpPhase.CALL
    parent_chain: tuple[str, ...] = ()
    agent_labels: frozenset[str] = frozenset()
    session_id: str = ""
    destination: str | None = None
    cost_estimate: float | None = None
    trace: TraceContext = TraceContext()

    @property
    def parent_agent_id(self) -> str | None:
        return self.parent_chain[-1] if self.parent_chain else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form :func:`parse_call` accepts (round-trips)."""
        out: dict[str, Any] = {
            "tenant": self.tenant,
            "agent_id": self.agent_id,
            "tool": self.tool,
            "params": self.params,
            "phase": str(self.phase),
        }
        if self.kind is not None:
            out["kind"] = str(self.kind)
        if self.parent_chain:
            out["parent_chain"] = list(self.parent_chain)
        if self.agent_labels:
            out["agent_labels"] = sorted(self.agent_labels)
        if self.session_id:
            out["session_id"] = self.session_id
        if self.destination is not None:
            out["destination"] = self.destination
        if self.cost_estimate is not None:
            out["cost_estimate"] = self.cost_estimate
        if self.trace.traceparent:
            out["traceparent"] = self.trace.traceparent
        if self.trace.tracestate:
            out["tracestate"] = self.trace.tracestate
        return out


_FIELDS = frozenset(
    {
        "tenant",
        "agent_id",
        "tool",
        "params",
        "kind",
        "phase",
        "parent_chain",
        "agent_labels",
        "session_id",
        "destination",
        "cost_estimate",
        "traceparent",
        "tracestate",
    }
)
_IDENT_MAX = 256


def parse_call(data: object) -> ToolCall:
    """Validate untrusted JSON data into a ToolCall, or raise CallError.

    Every check here exists because a door receives this from an agent we do not
    trust: wrong types, unknown fields (a typo must not silently drop a field a
    policy relies on), deep nesting, oversize strings, non-finite or huge numbers.
    """
    if not isinstance(data, Mapping):
        raise CallError(ErrorCode.CALL_NOT_AN_OBJECT, "a call must be a JSON object")
    unknown = sorted(str(k) for k in data if k not in _FIELDS)
    if unknown:
        raise CallError(
            ErrorCode.CALL_UNKNOWN_FIELD, f"unknown field(s): {', '.join(unknown)}", unknown[0]
        )
    tenant = _ident(data, "tenant", required=True)
    agent_id = _ident(data, "agent_id", required=True)
    tool = _ident(data, "tool", required=True)
    params_raw = data.get("params", {})
    if not isinstance(params_raw, Mapping):
        raise CallError(ErrorCode.CALL_INVALID_TYPE, "params must be an object", "params")
    counter = [0]
    params = _check_json(params_raw, "params", 0, counter)
    assert isinstance(params, dict)

    kind: ToolKind | None = None
    if data.get("kind") is not None:
        kind = _enum(ToolKind, data["kind"], "kind")
    phase = McpPhase.CALL
    if data.get("phase") is not None:
        phase = _enum(McpPhase, data["phase"], "phase")

    chain_raw = data.get("parent_chain", [])
    if not isinstance(chain_raw, list):
        raise CallError(ErrorCode.CALL_INVALID_TYPE, "parent_chain must be a list", "parent_chain")
    chain = tuple(_ident_value(v, f"parent_chain[{i}]") for i, v in enumerate(chain_raw))
    if len(chain) > MAX_PARAM_DEPTH:
        raise CallError(ErrorCode.CALL_TOO_DEEP, "parent_chain is too long", "parent_chain")

    labels_raw = data.get("agent_labels", [])
    if not isinstance(labels_raw, list):
        raise CallError(ErrorCode.CALL_INVALID_TYPE, "agent_labels must be a list", "agent_labels")
    labels = frozenset(_ident_value(v, f"agent_labels[{i}]") for i, v in enumerate(labels_raw))

    destination = data.get("destination")
    if destination is not None and not isinstance(destination, str):
        raise CallError(ErrorCode.CALL_INVALID_TYPE, "destination must be a string", "destination")
    if destination is not None and len(destination) > 8192:
        raise CallError(ErrorCode.CALL_TOO_LARGE, "destination is too long", "destination")
    if destination is not None:
        _check_unicode(destination, "destination")

    cost = data.get("cost_estimate")
    if cost is not None:
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            raise CallError(
                ErrorCode.CALL_INVALID_TYPE, "cost_estimate must be a number", "cost_estimate"
            )
        if not math.isfinite(cost) or cost < 0 or abs(cost) > MAX_ABS_INT:
            raise CallError(
                ErrorCode.CALL_INVALID_NUMBER,
                "cost_estimate must be finite and >= 0",
                "cost_estimate",
            )
        cost = float(cost)

    return ToolCall(
        tenant=tenant,
        agent_id=agent_id,
        tool=tool,
        params=params,
        kind=kind,
        phase=phase,
        parent_chain=chain,
        agent_labels=labels,
        session_id=_ident(data, "session_id", required=False),
        destination=destination,
        cost_estimate=cost,
        trace=TraceContext(
            traceparent=_str(data, "traceparent", 55),
            tracestate=_str(data, "tracestate", 512),
        ),
    )


def _ident(data: Mapping[str, object], name: str, *, required: bool) -> str:
    if name not in data or data[name] is None:
        if required:
            raise CallError(ErrorCode.CALL_MISSING_FIELD, f"{name} is required", name)
        return ""
    value = _ident_value(data[name], name)
    if required and not value:
        raise CallError(ErrorCode.CALL_INVALID_VALUE, f"{name} must not be empty", name)
    return value


def _ident_value(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise CallError(ErrorCode.CALL_INVALID_TYPE, f"{path} must be a string", path)
    if len(value) > _IDENT_MAX:
        raise CallError(ErrorCode.CALL_TOO_LARGE, f"{path} is longer than {_IDENT_MAX}", path)
    if not value.isprintable():
        raise CallError(ErrorCode.CALL_INVALID_VALUE, f"{path} has control characters", path)
    _check_unicode(value, path)
    return value


def _str(data: Mapping[str, object], name: str, limit: int) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CallError(ErrorCode.CALL_INVALID_TYPE, f"{name} must be a string", name)
    if len(value) > limit:
        raise CallError(ErrorCode.CALL_TOO_LARGE, f"{name} is longer than {limit}", name)
    return value


def _enum(enum: type[_E], value: object, path: str) -> _E:
    if not isinstance(value, str):
        raise CallError(ErrorCode.CALL_INVALID_TYPE, f"{path} must be a string", path)
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise CallError(
            ErrorCode.CALL_INVALID_VALUE, f"{path} must be one of: {allowed}", path
        ) from None


def _check_unicode(text: str, path: str) -> None:
    """Refuse lone surrogates: JSON's \ud800 escapes decode to text no UTF-8 peer
    (a tool, a log pipeline, RE2) can represent."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CallError(
                ErrorCode.CALL_INVALID_VALUE, "string is not valid Unicode (lone surrogate)", path
            ) from None


def _check_json(value: object, path: str, depth: int, counter: list[int]) -> JsonValue:
    """Copy ``value`` as plain JSON, refusing what a JSON peer could not represent."""
    counter[0] += 1
    if counter[0] > MAX_PARAM_NODES:
        raise CallError(ErrorCode.CALL_TOO_LARGE, f"params has more than {MAX_PARAM_NODES} values")
    if depth > MAX_PARAM_DEPTH:
        raise CallError(ErrorCode.CALL_TOO_DEEP, f"nested deeper than {MAX_PARAM_DEPTH}", path)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise CallError(ErrorCode.CALL_TOO_LARGE, "string is too long", path)
        _check_unicode(value, path)
        return value
    if isinstance(value, int):
        if abs(value) > MAX_ABS_INT:
            raise CallError(ErrorCode.CALL_INVALID_NUMBER, "integer out of range", path)
        return int(value)  # IntEnum and friends become plain JSON numbers
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CallError(ErrorCode.CALL_INVALID_NUMBER, "number must be finite", path)
        return float(value)
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CallError(ErrorCode.CALL_INVALID_TYPE, "object keys must be strings", path)
            _check_unicode(k, path)
            out[k] = _check_json(v, f"{path}.{k}", depth + 1, counter)
        return out
    if isinstance(value, list | tuple):
        return [_check_json(v, f"{path}[{i}]", depth + 1, counter) for i, v in enumerate(value)]
    raise CallError(
        ErrorCode.CALL_INVALID_TYPE, f"unsupported value of type {type(value).__name__}", path
    )
