"""parse_call refuses every malformed call with a stable code; a good call round-trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.core.call import MAX_PARAM_DEPTH, McpPhase, ToolCall, ToolKind, parse_call
from aegis.errors import CallError, ErrorCode

GOOD = {"tenant": "acme", "agent_id": "finance-agent", "tool": "stripe.create_payment"}


def with_(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ([], ErrorCode.CALL_NOT_AN_OBJECT),
        ("call", ErrorCode.CALL_NOT_AN_OBJECT),
        ({"agent_id": "a", "tool": "t"}, ErrorCode.CALL_MISSING_FIELD),
        ({"tenant": "t", "tool": "t"}, ErrorCode.CALL_MISSING_FIELD),
        (with_(tenant=""), ErrorCode.CALL_INVALID_VALUE),
        (with_(tenant=7), ErrorCode.CALL_INVALID_TYPE),
        (with_(tool=None), ErrorCode.CALL_MISSING_FIELD),
        (with_(tenant="a\nb"), ErrorCode.CALL_INVALID_VALUE),
        (with_(tenant="x" * 300), ErrorCode.CALL_TOO_LARGE),
        (with_(tennant="typo"), ErrorCode.CALL_UNKNOWN_FIELD),
        (with_(params=[1, 2]), ErrorCode.CALL_INVALID_TYPE),
        (with_(params={"a": float("nan")}), ErrorCode.CALL_INVALID_NUMBER),
        (with_(params={"a": float("inf")}), ErrorCode.CALL_INVALID_NUMBER),
        (with_(params={"a": 10**30}), ErrorCode.CALL_INVALID_NUMBER),
        (with_(params={"a": b"bytes"}), ErrorCode.CALL_INVALID_TYPE),
        (with_(params={"a": {1: "x"}}), ErrorCode.CALL_INVALID_TYPE),
        (with_(params=nested(MAX_PARAM_DEPTH + 2)), ErrorCode.CALL_TOO_DEEP),
        (with_(params={"a": list(range(20_000))}), ErrorCode.CALL_TOO_LARGE),
        (with_(params={"a": "x" * 1_000_001}), ErrorCode.CALL_TOO_LARGE),
        (with_(kind="delete"), ErrorCode.CALL_INVALID_VALUE),
        (with_(kind=1), ErrorCode.CALL_INVALID_TYPE),
        (with_(phase="run"), ErrorCode.CALL_INVALID_VALUE),
        (with_(parent_chain="planner"), ErrorCode.CALL_INVALID_TYPE),
        (with_(parent_chain=[1]), ErrorCode.CALL_INVALID_TYPE),
        (with_(parent_chain=["p"] * 40), ErrorCode.CALL_TOO_DEEP),
        (with_(agent_labels="ops"), ErrorCode.CALL_INVALID_TYPE),
        (with_(destination=5), ErrorCode.CALL_INVALID_TYPE),
        (with_(destination="h" * 9000), ErrorCode.CALL_TOO_LARGE),
        (with_(cost_estimate="1"), ErrorCode.CALL_INVALID_TYPE),
        (with_(cost_estimate=True), ErrorCode.CALL_INVALID_TYPE),
        (with_(cost_estimate=-1), ErrorCode.CALL_INVALID_NUMBER),
        (with_(traceparent=1), ErrorCode.CALL_INVALID_TYPE),
        (with_(traceparent="0" * 100), ErrorCode.CALL_TOO_LARGE),
    ],
)
def test_bad_calls_are_refused_with_a_stable_code(data: Any, code: ErrorCode) -> None:
    with pytest.raises(CallError) as info:
        parse_call(data)
    assert info.value.code is code
    assert info.value.to_dict()["code"] == str(code)


def test_a_full_call_round_trips() -> None:
    data = {
        **GOOD,
        "params": {"amount": 120.5, "items": [{"sku": "a"}], "flag": True, "none": None},
        "kind": "write",
        "phase": "list",
        "parent_chain": ["planner", "finance"],
        "agent_labels": ["fin", "ops"],
        "session_id": "s-1",
        "destination": "https://api.stripe.com/v1/charges",
        "cost_estimate": 0.25,
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "congo=t61rcWkgMzE",
    }
    call = parse_call(data)
    assert call.kind is ToolKind.WRITE
    assert call.phase is McpPhase.LIST
    assert call.parent_agent_id == "finance"
    assert call.agent_labels == frozenset({"fin", "ops"})
    assert parse_call(call.to_dict()) == call


def test_tool_call_is_immutable() -> None:
    call = parse_call(GOOD)
    with pytest.raises(AttributeError):
        call.tenant = "other"  # type: ignore[misc]
    assert isinstance(call, ToolCall)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    data=st.dictionaries(
        st.sampled_from(
            [
                "tenant",
                "agent_id",
                "tool",
                "params",
                "kind",
                "phase",
                "parent_chain",
                "destination",
                "cost_estimate",
                "extra",
            ]
        ),
        json_values,
    )
)
def test_parse_call_never_fails_other_than_call_error(data: dict[str, Any]) -> None:
    """Fuzz: arbitrary JSON either parses or raises CallError, never anything else."""
    try:
        call = parse_call(data)
    except CallError as exc:
        assert str(exc.code).startswith("call.")
    else:
        assert call.tenant and call.agent_id and call.tool


@pytest.mark.parametrize(
    "data",
    [
        with_(params={"text": "ok \ud800"}),
        with_(params={"\udfff": 1}),
        with_(tenant="acme\ud800"),
        with_(destination="https://a.example/\ud800"),
    ],
)
def test_lone_surrogates_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(CallError) as info:
        parse_call(data)
    assert info.value.code is ErrorCode.CALL_INVALID_VALUE
