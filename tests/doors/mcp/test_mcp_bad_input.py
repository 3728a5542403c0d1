"""Bad input at the MCP door (DESIGN.md §6): every malformed message gets a
clean JSON-RPC error, the proxy keeps serving, and nothing reaches the upstream.

The messages are written as raw bytes to the proxy's stdio framing, so the
SDK client's own validation cannot hide a door bug."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
import pytest
from mcp_helpers import StdioPipes, bounded, make_rig, stdio_proxy

from aegis.doors.mcp.framing import MAX_DEPTH, Refused, decode_line

pytestmark = pytest.mark.anyio

PARSE, INVALID_REQUEST, NOT_FOUND, INVALID_PARAMS = (
    types.PARSE_ERROR,
    types.INVALID_REQUEST,
    types.METHOD_NOT_FOUND,
    types.INVALID_PARAMS,
)


def _call(request_id: object, name: object, arguments: object) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


# (name, raw line without its newline, expected error code, expected id)
RAW_CASES: list[tuple[str, bytes, int, object]] = [
    ("not-json", b"this is not json", PARSE, None),
    ("truncated-json", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"', PARSE, None),
    (
        "invalid-utf8",
        b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":"\xff\xfe"}}',
        PARSE,
        None,
    ),
    (
        "invalid-utf8-in-arguments",
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ref.echo","arguments":{"a":"\xc3\x28"}}}',
        PARSE,
        None,
    ),
    (
        "overlong-utf8",
        b'{"jsonrpc":"2.0","id":4,"method":"ping","params":{"x":"\xc0\xaf"}}',
        PARSE,
        None,
    ),
    (
        "nan",
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ref.echo","arguments":{"n":NaN}}}',
        PARSE,
        None,
    ),
    (
        "lone-surrogate",
        b'{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"ref.echo","arguments":{"s":"\\ud800"}}}',
        PARSE,
        None,
    ),
    (
        "deep-nesting",
        json.dumps(_call(7, "ref.echo", _nested(MAX_DEPTH + 5))).encode(),
        PARSE,
        None,
    ),
    ("very-deep-nesting", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, PARSE, None),
    ("batch", b'[{"jsonrpc":"2.0","id":8,"method":"ping"}]', INVALID_REQUEST, None),
    ("scalar", b"42", INVALID_REQUEST, None),
    ("null-id", b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST, None),
    ("float-id", b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST, None),
    ("bool-id", b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST, None),
    ("wrong-version", b'{"jsonrpc":"1.0","id":9,"method":"ping"}', INVALID_REQUEST, 9),
    ("method-not-a-string", b'{"jsonrpc":"2.0","id":10,"method":5}', INVALID_REQUEST, 10),
    (
        "params-not-an-object",
        b'{"jsonrpc":"2.0","id":11,"method":"tools/call","params":[1,2]}',
        INVALID_REQUEST,
        11,
    ),
    ("unknown-method", b'{"jsonrpc":"2.0","id":12,"method":"tools/explode"}', NOT_FOUND, 12),
    (
        "call-without-name",
        b'{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{}}',
        INVALID_PARAMS,
        13,
    ),
    (
        "arguments-not-an-object",
        json.dumps(_call(14, "ref.echo", "text")).encode(),
        INVALID_PARAMS,
        14,
    ),
    ("name-not-a-string", json.dumps(_call(15, 7, {})).encode(), INVALID_PARAMS, 15),
    ("unknown-tool", json.dumps(_call(16, "ref.nope", {})).encode(), INVALID_PARAMS, 16),
    (
        "params-too-deep",
        json.dumps(_call(17, "ref.echo", _nested(40))).encode(),
        INVALID_PARAMS,
        17,
    ),
    (
        "huge-string",
        json.dumps(_call(18, "ref.echo", {"blob": "x" * 1_500_000})).encode(),
        INVALID_PARAMS,
        18,
    ),
    (
        "too-many-values",
        json.dumps(_call(19, "ref.echo", {"items": list(range(20_000))})).encode(),
        INVALID_PARAMS,
        19,
    ),
    ("huge-integer", json.dumps(_call(20, "ref.echo", {"n": 2**80})).encode(), INVALID_PARAMS, 20),
]


@bounded(120)
async def test_each_malformed_message_gets_a_clean_error_and_nothing_is_forwarded() -> None:
    rig = make_rig()
    async with stdio_proxy(rig.proxy) as pipes:
        answers = await anyio.to_thread.run_sync(_exchange_all, pipes)
    for name, _, code, request_id in RAW_CASES:
        answer = answers[name]
        assert answer["jsonrpc"] == "2.0", name
        assert answer["error"]["code"] == code, (name, answer)
        assert answer["id"] == request_id, (name, answer)
        assert isinstance(answer["error"]["message"], str) and answer["error"]["message"], name
    # Arguments refused by the call checks say why, with the Aegis code.
    assert answers["params-too-deep"]["error"]["data"]["error"]["code"] == "call.too_deep"
    assert answers["huge-string"]["error"]["data"]["error"]["code"] == "call.too_large"
    assert answers["too-many-values"]["error"]["data"]["error"]["code"] == "call.too_large"
    assert answers["huge-integer"]["error"]["data"]["error"]["code"] == "call.invalid_number"
    # Only the final, valid call reached the upstream.
    assert rig.upstream.calls == [("echo", {"ok": True})]
    refused = rig.metric("aegis_requests_refused_total", door="mcp", code="call.too_large")
    assert refused == 2


def _exchange_all(pipes: StdioPipes) -> dict[str, dict[str, Any]]:
    answers: dict[str, dict[str, Any]] = {}
    for i, (name, line, _, _) in enumerate(RAW_CASES):
        pipes.send(line + b"\n")
        answers[name] = pipes.recv()
        # The proxy still serves after each one.
        pipes.send_json({"jsonrpc": "2.0", "id": f"ping-{i}", "method": "ping"})
        pong, _ = pipes.recv_id(f"ping-{i}")
        assert pong["result"] == {}, name
    pipes.send_json(_call("last", "ref.echo", {"ok": True}))
    last, _ = pipes.recv_id("last")
    assert "result" in last, last
    return answers


@bounded(60)
async def test_an_oversize_line_is_refused_without_reading_it_whole() -> None:
    rig = make_rig()
    limit = rig.proxy.config.max_line_bytes
    async with stdio_proxy(rig.proxy) as pipes:

        def exchange() -> tuple[dict[str, Any], dict[str, Any]]:
            big = json.dumps(_call(1, "ref.echo", {"blob": "y" * (limit + 10)})).encode()
            pipes.send(big + b"\n")
            refusal = pipes.recv()
            pipes.send_json({"jsonrpc": "2.0", "id": 2, "method": "ping"})
            pong, _ = pipes.recv_id(2)
            return refusal, pong

        refusal, pong = await anyio.to_thread.run_sync(exchange)
    assert refusal["id"] is None
    assert refusal["error"]["code"] == INVALID_REQUEST
    assert str(limit) in refusal["error"]["message"]
    assert pong["result"] == {}
    assert rig.upstream.calls == []


@bounded()
async def test_requests_before_initialize_are_refused() -> None:
    rig = make_rig()
    async with stdio_proxy(rig.proxy, initialize=False) as pipes:

        def exchange() -> dict[str, Any]:
            pipes.send_json(_call(1, "ref.echo", {}))
            answer, _ = pipes.recv_id(1)
            return answer

        answer = await anyio.to_thread.run_sync(exchange)
    assert answer["error"]["code"] == INVALID_PARAMS
    assert rig.upstream.calls == []


@bounded()
async def test_blank_lines_and_notifications_get_no_answer() -> None:
    rig = make_rig()
    async with stdio_proxy(rig.proxy) as pipes:

        def exchange() -> list[dict[str, Any]]:
            pipes.send(b"\n   \r\n")
            pipes.send_json({"jsonrpc": "2.0", "method": "notifications/unknown"})
            pipes.send_json(
                {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}
            )
            pipes.send_json({"jsonrpc": "2.0", "id": 1, "method": "ping"})
            _, others = pipes.recv_id(1)
            return others

        assert await anyio.to_thread.run_sync(exchange) == []


def test_decode_line_separates_client_error_responses_from_refusals() -> None:
    # An agent answering a server-to-client request with an error is a message
    # for the server loop, not a framing refusal.
    decoded = decode_line(b'{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}\n')
    assert isinstance(decoded, types.JSONRPCError)
    assert isinstance(decode_line(b"{oops\n"), Refused)
    assert decode_line(b"\r\n") is None


@bounded(60)
async def test_the_thread_path_for_files_frames_the_same_way(tmp_path: Path) -> None:
    """A sink that is a regular file (not a pipe) makes the stdio transport use
    worker threads instead of the event loop's pipe support; same answers."""
    from aegis.doors.mcp.stdio import serve_lines

    rig = make_rig()
    limit = rig.proxy.config.max_line_bytes
    read_fd, write_fd = os.pipe()
    out_path = tmp_path / "out.jsonl"
    with os.fdopen(read_fd, "rb") as source, out_path.open("wb") as sink:
        lines = [
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "0"},
                    },
                }
            ).encode(),
            b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
            b"\xff not utf-8",
            json.dumps(_call(2, "ref.echo", {"blob": "z" * (limit + 5)})).encode(),
            b'{"jsonrpc":"2.0","id":3,"method":"ping"}',
        ]

        async def feed() -> None:
            for line in lines:
                await anyio.to_thread.run_sync(os.write, write_fd, line + b"\n")
            # Wait for the three answers before closing stdin (EOF ends the loop).
            while out_path.read_text().count("\n") < 4:
                await anyio.sleep(0.02)
            os.close(write_fd)

        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            await serve_lines(rig.proxy, source, sink)
    answers = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [a.get("id") for a in answers] == [1, None, None, 3]
    assert answers[1]["error"]["code"] == PARSE
    assert (
        answers[2]["error"]["code"] == INVALID_REQUEST
        and str(limit) in answers[2]["error"]["message"]
    )
    assert answers[3]["result"] == {}
