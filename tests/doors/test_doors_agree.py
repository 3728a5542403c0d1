"""Doors agree (DESIGN.md §2): the same calls through every door and the in-process
SDK get the same decision as the engine's own ``decide()``.

Every call of every conformance case file (tests/conformance) is a probe: the
engine's decision for it -- or the ``call.*`` code parse_call refuses it with --
at the case's ``now``. Each door is started once, over its own pipeline; all the
pipelines share one PolicyStore (``swap`` installs each file's policy) and one
clock (set to each probe's ``now``), and record every decision in evidence of
their own. A probe is sent through every door that can state that exact call,
and for each the test checks:

* the decision the door acted on -- found in its evidence by the decision id it
  put on the wire (or, where the wire has none, the one decision recorded for
  the request) -- has the engine's outcome, code, rule ids, reason, redactions
  (as a set), sanitized params, approval requirement, shadow result and policy
  version, and an approval ticket exactly when approval is needed;
* the ToolCall the door built is exactly the one it was meant to state;
* the wire says the same: status or JSON-RPC code, x-aegis-* headers, the
  PolicyViolation body, the approval id, what was forwarded upstream for a
  permitted or sanitized call;
* a malformed call is refused with parse_call's code and never decided.

Which door carries what, and why the rest is skipped, is in each door's module
(agree_http, agree_envoy, agree_mcp, agree_proxy) and in the printed report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import grpc
import httpx
from agree_core import Clock, Door, Group, RecordingEvidence, Tally, conformance_groups, run_probe
from agree_envoy import MAPPING, AuthzGrpcDoor, AuthzHttpDoor, ExtProcDoor
from agree_http import ApiDoor, SdkHttpDoor, SdkLocalDoor
from agree_mcp import McpDoor
from agree_proxy import LocalSink, ProxyDoor, egress_group, obligations_group

from aegis.core.call import McpPhase
from aegis.doors.api import create_api_server
from aegis.doors.envoy import (
    build_authz_grpc_server,
    build_authz_http_handler,
    build_ext_proc_server,
)
from aegis.doors.proxy import ProxyConfig, build_forward_proxy
from aegis.http.server import HttpServer
from aegis.pipeline import Pipeline, PolicyStore
from aegis.sdk import AegisClient, LocalAegis

LOCAL = "127.0.0.1"
#: The whole run, servers included, must end within this (it takes 5-10 s).
DEADLINE_SECONDS = 120
DOORS = [
    "api",
    "sdk_local",
    "sdk_http",
    "ext_authz_grpc",
    "ext_authz_http",
    "ext_proc",
    "mcp",
    "forward_proxy",
]
#: Call x door pairs each door must have compared (a floor under today's counts,
#: so a change that silently stops a door carrying calls fails here).
MIN_COMPARED = {
    "api": 600,
    "sdk_local": 600,
    "sdk_http": 600,
    "ext_authz_grpc": 400,
    "ext_authz_http": 400,
    "ext_proc": 400,
    "mcp": 400,
    "forward_proxy": 15,
}
MIN_REFUSED = {"api": 30, "sdk_local": 35, "sdk_http": 35, "ext_authz_grpc": 2, "mcp": 2}


def _channel(port: int) -> grpc.aio.Channel:
    # No proxy from the environment may ever see this traffic.
    return grpc.aio.insecure_channel(f"{LOCAL}:{port}", options=[("grpc.enable_http_proxy", 0)])


@asynccontextmanager
async def serve_doors(
    store: PolicyStore, clock: Clock, tools: list[str]
) -> AsyncIterator[list[Door]]:
    """Every door on 127.0.0.1 (ephemeral ports), each over a pipeline of its own."""

    def pipeline(sink: RecordingEvidence) -> Pipeline:
        return Pipeline.with_defaults(store, evidence=sink, clock=clock.read, timeout=5.0)

    async with AsyncExitStack() as stack:
        doors: list[Door] = []

        sink = RecordingEvidence()
        api = create_api_server(pipeline(sink))
        port = await api.start(LOCAL, 0)
        stack.push_async_callback(api.stop, 2.0)
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://{LOCAL}:{port}", trust_env=False, timeout=10)
        )
        doors.append(ApiDoor(sink, client))

        sink = RecordingEvidence()
        local = LocalAegis(pipeline(sink))
        stack.callback(local.close)
        doors.append(SdkLocalDoor(sink, local))

        sink = RecordingEvidence()
        api2 = create_api_server(pipeline(sink))
        port = await api2.start(LOCAL, 0)
        stack.push_async_callback(api2.stop, 2.0)
        # An explicit transport: httpx then reads no proxy from the environment.
        sdk = AegisClient(f"http://{LOCAL}:{port}", timeout=10, transport=httpx.HTTPTransport())
        stack.callback(sdk.close)
        doors.append(SdkHttpDoor(sink, sdk))

        sink = RecordingEvidence()
        authz = build_authz_grpc_server(pipeline(sink), MAPPING)
        port = await authz.start(LOCAL, 0)
        stack.push_async_callback(authz.stop, 0)
        channel = _channel(port)
        stack.push_async_callback(channel.close)
        doors.append(AuthzGrpcDoor(sink, channel))

        sink = RecordingEvidence()
        handler = build_authz_http_handler(
            pipeline(sink), MAPPING, path_prefix=AuthzHttpDoor.prefix
        )
        authz_http = HttpServer(handler)
        port = await authz_http.start(LOCAL, 0)
        stack.push_async_callback(authz_http.stop, 0.5)
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://{LOCAL}:{port}", trust_env=False, timeout=10)
        )
        doors.append(AuthzHttpDoor(sink, client))

        sink = RecordingEvidence()
        ext_proc = build_ext_proc_server(pipeline(sink), MAPPING)
        port = await ext_proc.start(LOCAL, 0)
        stack.push_async_callback(ext_proc.stop, 0)
        channel = _channel(port)
        stack.push_async_callback(channel.close)
        doors.append(ExtProcDoor(sink, channel))

        sink = RecordingEvidence()
        doors.append(McpDoor(sink, pipeline(sink), tools, stack))

        sink = RecordingEvidence()
        upstream = LocalSink()
        await upstream.start()
        stack.push_async_callback(upstream.close)
        proxy = build_forward_proxy(
            pipeline(sink), ProxyConfig(), metrics=None, log=None, connect=upstream.connect
        )
        port = await proxy.start(LOCAL, 0)
        stack.push_async_callback(proxy.stop, 1.0)
        doors.append(ProxyDoor(sink, port, upstream))

        assert [door.name for door in doors] == DOORS
        yield doors


def _tools(groups: list[Group]) -> list[str]:
    """Every tool name a probe states: the MCP upstream lists them all."""
    names = set()
    for group in groups:
        for probe in group.probes:
            tool = probe.raw_dict.get("tool")
            if isinstance(tool, str) and tool:
                names.add(tool)
    return sorted(names)


async def _agree(groups: list[Group]) -> Tally:
    tally = Tally()
    store = PolicyStore(groups[0].policy)
    clock = Clock()
    async with (
        asyncio.timeout(DEADLINE_SECONDS),
        serve_doors(store, clock, _tools(groups)) as doors,
    ):
        for group in groups:
            store.swap(group.policy)
            for probe in group.probes:
                clock.now = probe.now
                for door in doors:
                    await run_probe(door, probe, group.policy, tally)
    return tally


def test_doors_agree() -> None:
    started = time.perf_counter()
    groups = conformance_groups()
    egress, suite_outcomes = egress_group()
    obligations = obligations_group(egress.probes[0].now)
    for probe in egress.probes + obligations.probes:
        # Each proxy probe restates a test of the egress suite (same verdict unless
        # stated), or asks for the outcome its request names.
        assert probe.reference is not None, probe.source
        request = probe.proxy_request
        want = request.outcome or suite_outcomes[request.test]
        assert str(probe.reference.outcome) == want, probe
    groups += [egress, obligations]
    list_probes = sum(
        1 for g in groups for p in g.probes if p.call is not None and p.call.phase is McpPhase.LIST
    )

    tally = asyncio.run(_agree(groups))

    print()
    print(tally.report(DOORS, time.perf_counter() - started))
    print(
        f"  ({sum(len(g.probes) for g in groups)} probes in {len(groups)} policies, "
        f"{list_probes} of them list-phase)"
    )
    assert not tally.problems, f"{len(tally.problems)} disagreements:\n" + "\n".join(
        tally.problems[:60]
    )
    low = {
        d: tally.compared.get(d, 0) for d, n in MIN_COMPARED.items() if tally.compared.get(d, 0) < n
    }
    assert not low, f"doors compared fewer calls than before: {low}"
    low = {
        d: tally.refused.get(d, 0) for d, n in MIN_REFUSED.items() if tally.refused.get(d, 0) < n
    }
    assert not low, f"doors compared fewer refusals than before: {low}"
