"""The processes the proxy benchmark runs: a local origin, a TCP echo target, the proxy.

Each role runs in its own process (``python -m benchmarks.proxy --role ...``),
binds 127.0.0.1 on an ephemeral port, prints ``PORT <role> <n>`` lines on
stdout and serves until its stdin closes (the parent exiting ends it too).
"""

from __future__ import annotations

import asyncio
import io
import os
import sys

from aegis.doors.proxy import ProxyConfig, build_forward_proxy
from aegis.pipeline import Pipeline, PolicyStore
from aegis.policy import compile_text
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence

LOCAL = "127.0.0.1"
ORIGIN_HOST = "origin.bench"
ECHO_HOST = "echo.bench"
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"

POLICY = f"""\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {{name: proxy-bench, tenant: bench, version: "bench"}}
tools:
  - {{name: http.request, kind: write}}
  - {{name: http.get, kind: read}}
rules:
  - id: egress-unknown-domain
    match: {{tools: [http.request, http.get]}}
    when:
      - destination: {{host_not_in: [{ORIGIN_HOST}, {ECHO_HOST}]}}
    effect: deny
  - id: egress-allowlisted
    match: {{tools: [http.request, http.get]}}
    when:
      - destination: {{host_in: [{ORIGIN_HOST}, {ECHO_HOST}]}}
    effect: allow
"""


class _Origin(asyncio.Protocol):
    """The smallest keep-alive HTTP/1.1 origin: one fixed answer per request head.

    The benchmark only sends bodiless GETs, so a request ends at its blank line.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")
        if count and self.transport is not None:
            self.buffer = self.buffer[self.buffer.rindex(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * count)


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)


async def serve_origin() -> None:
    loop = asyncio.get_running_loop()
    origin = await loop.create_server(_Origin, LOCAL, 0)
    echo = await loop.create_server(_Echo, LOCAL, 0)
    print(f"PORT origin {origin.sockets[0].getsockname()[1]}", flush=True)
    print(f"PORT echo {echo.sockets[0].getsockname()[1]}", flush=True)
    await _until_stdin_closes()


async def serve_proxy(origin_port: int, echo_port: int) -> None:
    routes = {ORIGIN_HOST: origin_port, ECHO_HOST: echo_port}

    async def connect(host: str, _port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        local = routes.get(host)
        if local is None:  # never leave the machine, whatever the request says
            raise ConnectionRefusedError(111, f"benchmark connector: no route to {host}")
        return await asyncio.open_connection(LOCAL, local)

    store = PolicyStore(compile_text(POLICY))
    metrics = GatewayMetrics()
    # The evidence a real gateway leaves: metrics and a JSON decision log line.
    log = JsonLog(io.TextIOWrapper(open(os.devnull, "wb"), encoding="utf-8"))  # noqa: SIM115
    evidence = TelemetryEvidence(metrics=metrics, log=log, policy=store)
    pipeline = Pipeline.with_defaults(store, evidence=evidence)
    proxy = build_forward_proxy(pipeline, ProxyConfig(), metrics=metrics, log=None, connect=connect)
    port = await proxy.start(LOCAL, 0)
    print(f"PORT proxy {port}", flush=True)
    await _until_stdin_closes()
    await proxy.stop(1.0)
