"""Hypothesis fuzzing of the MCP door's JSON-RPC framing and dispatch.

One proxy serves every example over stdio pipes (it runs in a portal thread).
Each example writes one fuzzed line, then a ping with a sentinel id; whatever
the line was, the proxy must answer the ping (it did not crash or hang), every
line it writes must be a JSON-RPC 2.0 message, and the upstream must receive
nothing (no fuzzed line names a tool the policy allows).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_helpers import Rig, StdioPipes, make_rig, stdio_proxy

from aegis.doors.mcp.framing import Refused, decode_line

METHODS = [
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "prompts/get",
    "initialize",
    "notifications/initialized",
    "notifications/cancelled",
    "logging/setLevel",
    "completion/complete",
]
# Tool names the policy never allows a call to (or that do not exist).
TOOL_NAMES = [
    "ref.delete_file",
    "ref.admin_reset",
    "ref.nope",
    "",
    "ref.",
    ".",
    "ref.delete_file\x00",
]

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
ids = st.none() | st.integers() | st.text(max_size=10) | st.booleans() | st.floats(allow_nan=False)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if draw(st.booleans()):
        message["jsonrpc"] = draw(st.sampled_from(["2.0", "2.0", "1.0", 2]))
    if draw(st.booleans()):
        message["id"] = draw(ids)
    if draw(st.integers(0, 9)) > 0:
        message["method"] = draw(st.sampled_from(METHODS) | st.text(max_size=15))
    shape = draw(st.integers(0, 3))
    if shape == 1:
        message["params"] = draw(json_values)
    elif shape >= 2:
        params: dict[str, Any] = {"name": draw(st.sampled_from(TOOL_NAMES) | st.text(max_size=10))}
        if draw(st.booleans()):
            params["arguments"] = draw(json_values)
        message["params"] = params
    if draw(st.integers(0, 5)) == 0:
        message[draw(st.sampled_from(["result", "error"]))] = draw(json_values)
    return message


lines = (
    st.binary(max_size=120)
    | st.text(max_size=80).map(str.encode)
    | envelopes().map(lambda m: json.dumps(m).encode())
    | st.lists(envelopes(), min_size=1, max_size=3).map(lambda b: json.dumps(b).encode())
).map(lambda raw: raw.replace(b"\n", b" "))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Rig, StdioPipes]]:
    rig = make_rig()
    with (
        anyio.from_thread.start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(stdio_proxy(rig.proxy)) as pipes,
    ):
        yield rig, pipes


_sentinels = itertools.count()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(line=lines)
def test_fuzzed_lines_never_crash_the_door_or_reach_the_upstream(
    served: tuple[Rig, StdioPipes], line: bytes
) -> None:
    rig, pipes = served
    sentinel = f"sentinel-{next(_sentinels)}"
    pipes.send(line + b"\n")
    pipes.send_json({"jsonrpc": "2.0", "id": sentinel, "method": "ping"})
    pong, others = pipes.recv_id(sentinel, timeout=10)
    assert pong == {"jsonrpc": "2.0", "id": sentinel, "result": {}}
    for message in others:
        types.jsonrpc_message_adapter.validate_python(message)  # raises if not JSON-RPC
        if "error" in message:
            assert isinstance(message["error"]["code"], int)
            assert isinstance(message["error"]["message"], str)
    assert rig.upstream.calls == []


@settings(max_examples=200, deadline=None)
@given(line=lines)
def test_decode_line_is_total(line: bytes) -> None:
    decoded = decode_line(line + b"\n")
    if isinstance(decoded, Refused):
        assert decoded.response.error.code in (types.PARSE_ERROR, types.INVALID_REQUEST)
        # A refusal serializes to one line of valid JSON-RPC.
        wire = decoded.response.model_dump_json(by_alias=True, exclude_unset=True)
        assert "\n" not in wire
        types.jsonrpc_message_adapter.validate_json(wire)
    elif decoded is not None:
        assert isinstance(
            decoded,
            types.JSONRPCRequest
            | types.JSONRPCNotification
            | types.JSONRPCResponse
            | types.JSONRPCError,
        )
