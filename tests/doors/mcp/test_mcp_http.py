"""The proxy over Streamable HTTP on 127.0.0.1: identity from headers, DNS-rebinding
protection, body limits, session ownership, and an upstream reached over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_helpers import Rig, bounded, error_of, make_rig
from mcp_reference_server import ReferenceUpstream

from aegis.doors.mcp import IDENTITY_REFUSED, POLICY_DENIED, HttpUpstream, UpstreamConfig
from aegis.doors.mcp.config import AgentIdentity, HttpConfig
from aegis.doors.mcp.http import HttpRunner
from aegis.pipeline import RequestContext
from mcp import Client

pytestmark = pytest.mark.anyio

AGENT = {
    "x-aegis-tenant": "acme",
    "x-aegis-agent-id": "web-agent",
    "authorization": "Bearer tok-web",
}
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}


@asynccontextmanager
async def served(rig: Rig) -> AsyncIterator[str]:
    port = await rig.proxy.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        await rig.proxy.stop()


@asynccontextmanager
async def http_agent(url: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10.0)) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


def _rpc_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a POST answer, JSON or one SSE event."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                parsed: dict[str, Any] = json.loads(line[5:])
                return parsed
        raise AssertionError(f"no data event in {response.text!r}")
    body: dict[str, Any] = response.json()
    return body


@bounded(60)
async def test_http_identity_from_headers_reaches_the_pipeline() -> None:
    rig = make_rig()
    seen: list[tuple[str, str, RequestContext]] = []
    original = rig.pipeline.decide

    async def decide(call: Any, ctx: RequestContext) -> Any:
        seen.append((call.tenant, call.agent_id, ctx))
        return await original(call, ctx)

    rig.pipeline.decide = decide  # type: ignore[method-assign]
    async with served(rig) as url, http_agent(url, AGENT) as agent:
        names = {tool.name for tool in (await agent.list_tools()).tools}
        assert "ref.read_file" in names and "ref.admin_reset" not in names
        result = await agent.call_tool("ref.read_file", {"path": "/x"})
        assert not result.is_error
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("ref.delete_file", {"path": "/x"})
        assert caught.value.code == POLICY_DENIED
    tenant, agent_id, ctx = seen[-1]
    assert (tenant, agent_id) == ("acme", "web-agent")
    assert ctx.door == "mcp"
    assert ctx.credentials == "tok-web"
    assert ctx.remote_addr == "127.0.0.1"
    assert rig.upstream.called("read_file") == [{"path": "/x"}]
    assert rig.upstream.called("delete_file") == []


@bounded(60)
async def test_http_without_identity_headers_is_refused() -> None:
    rig = make_rig()
    async with served(rig) as url, http_agent(url, {"x-aegis-tenant": "acme"}) as agent:
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("ref.read_file", {"path": "/x"})
        code, body = error_of(caught.value)
        assert code == IDENTITY_REFUSED == -32015
        assert body["code"] == "identity.missing"
        assert body["header"] == "x-aegis-agent-id"
        with pytest.raises(MCPError) as caught:
            await agent.list_tools()
        assert caught.value.code == IDENTITY_REFUSED
    assert rig.upstream.calls == []
    assert rig.metric("aegis_requests_refused_total", door="mcp", code="identity.missing") == 2


@bounded(60)
async def test_http_default_identity_when_configured() -> None:
    rig = make_rig()
    rig.proxy.config = _with_http(
        rig, HttpConfig(default_identity=AgentIdentity("acme", "anonymous-dev"))
    )
    async with served(rig) as url, http_agent(url, {}) as agent:
        assert not (await agent.call_tool("ref.read_file", {"path": "/x"})).is_error


@bounded(60)
async def test_a_session_cannot_change_hands() -> None:
    rig = make_rig()
    async with served(rig) as url, httpx.AsyncClient(timeout=10) as http:
        opened = await http.post(url, json=INIT, headers={**ACCEPT, **AGENT})
        assert opened.status_code == 200
        session = opened.headers["mcp-session-id"]
        common = {**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
        note = await http.post(
            url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers={**common, **AGENT},
        )
        assert note.status_code == 202
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "ref.read_file", "arguments": {"path": "/x"}},
        }
        mine = _rpc_body(await http.post(url, json=call, headers={**common, **AGENT}))
        assert "result" in mine, mine
        intruder = {**AGENT, "x-aegis-agent-id": "someone-else"}
        theirs = _rpc_body(
            await http.post(url, json={**call, "id": 3}, headers={**common, **intruder})
        )
        assert theirs["error"]["code"] == IDENTITY_REFUSED
        assert theirs["error"]["data"]["error"]["code"] == "identity.mismatch"
        # Ending the session closes its upstream links.
        (runtime,) = rig.proxy.runtimes
        assert f"http:{session}" in runtime.sets
        deleted = await http.delete(url, headers=common)
        assert deleted.status_code in (200, 204)
        assert f"http:{session}" not in runtime.sets
    assert len(rig.upstream.called("read_file")) == 1


@bounded(60)
async def test_bad_http_requests_are_refused_before_mcp() -> None:
    rig = make_rig()
    async with served(rig) as url, httpx.AsyncClient(timeout=10) as http:
        port = url.split(":")[2].split("/")[0]
        evil_host = await http.post(
            url, json=INIT, headers={**ACCEPT, **AGENT, "host": "evil.example.com"}
        )
        assert evil_host.status_code == 421
        evil_origin = await http.post(
            url, json=INIT, headers={**ACCEPT, **AGENT, "origin": "http://evil.example.com"}
        )
        assert evil_origin.status_code == 403
        good = await http.post(
            url, json=INIT, headers={**ACCEPT, **AGENT, "origin": f"http://127.0.0.1:{port}"}
        )
        assert good.status_code == 200
        huge = await http.post(
            url,
            content=b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"'
            + b"a" * (5 * 1024 * 1024)
            + b'"}}',
            headers={**ACCEPT, **AGENT},
        )
        assert huge.status_code == 413
        for body in (
            b"{not json",
            b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\xff\xfe"}}',  # invalid UTF-8
            b'{"a":' * 50_000 + b"1" + b"}" * 50_000,  # deep nesting
        ):
            refused = await http.post(url, content=body, headers={**ACCEPT, **AGENT})
            assert refused.status_code == 400, body[:40]
            assert refused.json()["error"]["code"] == types.PARSE_ERROR
        wrong_type = await http.post(
            url,
            content=b'{"jsonrpc":"2.0"}',
            headers={**AGENT, "accept": ACCEPT["accept"], "content-type": "text/plain"},
        )
        assert wrong_type.status_code in (400, 415)  # the SDK answers 400 "Invalid Content-Type"
    assert rig.upstream.calls == []


@bounded(60)
async def test_an_upstream_over_streamable_http() -> None:
    remote = ReferenceUpstream("remote")
    upstream_runner = HttpRunner(remote.server.streamable_http_app())
    port = await upstream_runner.start("127.0.0.1", 0)
    upstream_url = f"http://127.0.0.1:{port}/mcp"
    try:
        rig = make_rig(upstreams=[UpstreamConfig("ref", HttpUpstream(upstream_url))])
        async with served(rig) as url, http_agent(url, AGENT) as agent:
            result = await agent.call_tool("ref.echo", {"over": "http"})
            assert isinstance(result.content[0], types.TextContent)
            assert json.loads(result.content[0].text) == {
                "tool": "echo",
                "arguments": {"over": "http"},
            }
        assert remote.called("echo") == [{"over": "http"}]
        decision = next(line for line in rig.events("decision") if line["tool"] == "ref.echo")
        assert decision["outcome"] == "allow"
    finally:
        await upstream_runner.stop()


@bounded(60)
async def test_an_unreachable_upstream_is_a_clean_upstream_error() -> None:
    rig = make_rig(
        upstreams=[UpstreamConfig("ref", HttpUpstream("http://127.0.0.1:9/mcp"), timeout_seconds=5)]
    )
    async with rig.agent() as agent:
        assert (await agent.list_tools()).tools == []
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("ref.echo", {})
    assert (
        caught.value.code == types.INVALID_PARAMS
    )  # the tool is unknown while its upstream is down
    assert rig.metric("aegis_mcp_upstream_errors_total", upstream="ref") >= 1
    assert rig.events("mcp.upstream_failed")


def _with_http(rig: Rig, http: HttpConfig) -> Any:
    from dataclasses import replace

    return replace(rig.proxy.config, http=http)


@bounded(60)
async def test_the_2026_per_request_era_is_decided_the_same_way() -> None:
    """An SDK client in its default mode negotiates 2026-07-28 (no initialize
    handshake, one envelope per request); the door decides those calls alike."""
    rig = make_rig()
    async with served(rig) as url:
        async with (
            httpx2.AsyncClient(headers=AGENT, timeout=httpx2.Timeout(10.0)) as http,
            Client(streamable_http_client(url, http_client=http)) as agent,
        ):
            assert agent.protocol_version == "2026-07-28"
            assert not (await agent.call_tool("ref.echo", {"era": 2026})).is_error
            with pytest.raises(MCPError) as caught:
                await agent.call_tool("ref.delete_file", {"path": "/"})
            assert caught.value.code == POLICY_DENIED
        async with Client(rig.proxy.server) as local:  # in-process, same era
            assert local.protocol_version == "2026-07-28"
            assert not (await local.call_tool("ref.echo", {"era": "local"})).is_error
    assert rig.upstream.called("echo") == [{"era": 2026}, {"era": "local"}]
    assert rig.upstream.called("delete_file") == []
