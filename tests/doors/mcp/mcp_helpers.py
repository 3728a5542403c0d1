"""Shared rig for the MCP door's tests: a reference upstream in-process, the
proxy around it, the pipeline's evidence captured, and an SDK client."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import select
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from mcp.shared.exceptions import MCPError
from mcp_reference_server import ReferenceUpstream

from aegis.doors.mcp import (
    AgentIdentity,
    InProcessUpstream,
    McpProxy,
    McpProxyConfig,
    PinStore,
    UpstreamConfig,
    build_mcp_proxy,
)
from aegis.doors.mcp.config import Passthrough
from aegis.pipeline import Pipeline, PolicyStore
from aegis.policy import compile_text
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence
from aegis.testing.pipelines import pipeline_with
from mcp import Client

POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: mcp-door, tenant: acme, version: "v7"}
defaults: {fail_mode: {read: open}}
tools:
  - {name: ref.read_file, kind: read}
  - {name: ref.weather, kind: read}
  - {name: ref.delete_file, kind: write}
  - {name: ref.send_email, kind: write}
rules:
  - {id: hide-admin, match: {tools: ["ref.admin_*"], phase: list}, effect: deny}
  - {id: list-everything, match: {tools: ["*"], phase: list}, effect: allow}
  - {id: reads, match: {kind: read, phase: call}, effect: allow}
  - id: no-delete
    match: {tools: [ref.delete_file], phase: call}
    effect: deny
    reason: deleting files is not allowed
  - id: email-redact
    match: {tools: [ref.send_email], phase: call}
    effect: sanitize
    sanitize: {detectors: [credit_card], scan: [body]}
  - id: small-transfers
    match: {tools: [ref.transfer], phase: call}
    when: [{param: amount, lte: 100}]
    effect: allow
  - id: big-transfers
    match: {tools: [ref.transfer], phase: call}
    when: [{param: amount, gt: 100}]
    effect: approval_needed
    approval: {group: finance, ttl: 10m}
  - {id: echo, match: {tools: ["ref.echo", "other.echo"], phase: call}, effect: allow}
  - {id: callbacks, match: {tools: [ref.ask_llm, ref.confirm], phase: call}, effect: allow}
"""

IDENTITY = AgentIdentity(tenant="acme", agent_id="support-bot", credentials="tok-123")

P = ParamSpec("P")
T = TypeVar("T")


def bounded(
    seconds: float = 30.0,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Fail an async test that runs longer than ``seconds`` (nothing may hang)."""

    def wrap(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> T:
            with anyio.fail_after(seconds):
                return await fn(*args, **kwargs)

        return run

    return wrap


@dataclass
class Rig:
    upstream: ReferenceUpstream
    proxy: McpProxy
    metrics: GatewayMetrics
    stream: io.StringIO
    pipeline: Pipeline
    extra: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [line for line in lines if event is None or line["event"] == event]

    @asynccontextmanager
    async def agent(self, **kwargs: Any) -> AsyncIterator[Client]:
        async with Client(self.proxy.server, mode="legacy", **kwargs) as client:
            yield client


def make_rig(
    policy: str = POLICY,
    *,
    failure: str | None = None,
    limits: object | None = None,
    upstreams: list[UpstreamConfig] | None = None,
    pin_store: PinStore | None = None,
    passthrough: Passthrough | None = None,
    timeout: float = 0.05,
) -> Rig:
    metrics = GatewayMetrics()
    stream = io.StringIO()
    log = JsonLog(stream)
    store = PolicyStore(compile_text(policy))
    evidence = TelemetryEvidence(metrics=metrics, log=log, policy=store)
    pipeline = pipeline_with(store, failure, evidence=evidence, timeout=timeout)
    if limits is not None:
        pipeline.limits = limits  # type: ignore[assignment]
    upstream = ReferenceUpstream("reference")
    config = McpProxyConfig(
        upstreams=tuple(upstreams or [UpstreamConfig("ref", InProcessUpstream(upstream.server))]),
        identity=IDENTITY,
        passthrough=passthrough or Passthrough(),
    )
    proxy = build_mcp_proxy(pipeline, config, metrics=metrics, log=log, pin_store=pin_store)
    return Rig(upstream, proxy, metrics, stream, pipeline)


def error_of(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(JSON-RPC code, data.error) of an MCPError the client raised."""
    assert isinstance(exc, MCPError), exc
    data = exc.data if isinstance(exc.data, dict) else {}
    return exc.code, data.get("error", {})


# -- raw stdio: the proxy's framing over real pipes ------------------------------------


class StdioPipes:
    """Two OS pipes standing in for the proxy's stdin and stdout. The test side
    writes lines to the proxy and reads its answers, with timeouts."""

    def __init__(self) -> None:
        in_r, self._in_w = os.pipe()
        self._out_r, out_w = os.pipe()
        self.source = os.fdopen(in_r, "rb")
        self.sink = os.fdopen(out_w, "wb")
        self._buffer = b""
        self._closed_input = False

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._in_w, view)
            view = view[written:]

    def send_json(self, message: object) -> None:
        self.send(json.dumps(message).encode() + b"\n")

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next line the proxy wrote, parsed (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no answer within {timeout}s (buffered: {self._buffer[:200]!r})"
            ready, _, _ = select.select([self._out_r], [], [], remaining)
            if ready:
                chunk = os.read(self._out_r, 65536)
                assert chunk, "the proxy closed its stdout"
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def recv_id(
        self, request_id: object, timeout: float = 10.0
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The answer to ``request_id``, and every other line read before it."""
        others: list[dict[str, Any]] = []
        while True:
            message = self.recv(timeout)
            if message.get("id") == request_id and ("result" in message or "error" in message):
                return message, others
            others.append(message)

    def close_input(self) -> None:
        if not self._closed_input:
            self._closed_input = True
            os.close(self._in_w)

    def close(self) -> None:
        self.close_input()
        for fd_owner in (self.source, self.sink):
            with contextlib.suppress(OSError):
                fd_owner.close()
        with contextlib.suppress(OSError):
            os.close(self._out_r)


@asynccontextmanager
async def stdio_proxy(proxy: McpProxy, *, initialize: bool = True) -> AsyncIterator[StdioPipes]:
    """The proxy serving newline-delimited JSON-RPC over pipes, initialized."""
    from aegis.doors.mcp.stdio import serve_lines

    pipes = StdioPipes()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_lines, proxy, pipes.source, pipes.sink)
            if initialize:
                await anyio.to_thread.run_sync(handshake, pipes)
            try:
                yield pipes
            finally:
                pipes.close_input()  # EOF: the server loop ends
    finally:
        pipes.close()


def handshake(pipes: StdioPipes) -> None:
    pipes.send_json(
        {
            "jsonrpc": "2.0",
            "id": "init",
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        }
    )
    answer, _ = pipes.recv_id("init")
    assert answer["result"]["serverInfo"]["name"] == "aegis-mcp-proxy"
    pipes.send_json({"jsonrpc": "2.0", "method": "notifications/initialized"})
