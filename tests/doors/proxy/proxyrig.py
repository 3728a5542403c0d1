"""Test rig for the forward proxy: the proxy, local upstreams and raw clients, all on 127.0.0.1.

Nothing here ever dials anything but 127.0.0.1: the proxy gets a connector that
maps the host names the policy allowlists (``api.stripe.com`` ...) to local
ports, and refuses every other name, so a bug can only ever fail a test, never
send traffic out.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httptools

from aegis.doors.proxy import ForwardProxy, ProxyConfig, build_forward_proxy
from aegis.pipeline import Pipeline, PolicyStore
from aegis.policy import CompiledPolicy, compile_text
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence
from aegis.testing.pipelines import pipeline_with

LOCAL = "127.0.0.1"
#: Every test's own bound: nothing in this suite may hang.
TEST_TIMEOUT = 20.0

POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: proxy-tests, tenant: acme, version: "t1"}
defaults: {fail_mode: {read: open}}
tools:
  - {name: http.request, kind: write}
  - {name: http.get, kind: read}
rules:
  - id: egress-unknown-domain
    match: {tools: [http.request, http.get]}
    when:
      - destination:
          host_not_in: [api.stripe.com, "*.salesforce.com", api.github.com,
                        approve.example, dlp.example, "127.0.0.1"]
    effect: deny
    reason: destination is not on the egress allowlist
  - id: egress-allowlisted
    match: {tools: [http.request, http.get]}
    when:
      - destination: {host_in: [api.stripe.com, "*.salesforce.com", api.github.com, "127.0.0.1"]}
    effect: allow
  - id: no-admin-paths
    match: {tools: [http.request, http.get]}
    when:
      - param: path
        matches: "^/admin"
    effect: deny
    reason: admin paths are off limits
  - id: big-charges
    match: {tools: [http.request]}
    when:
      - destination: {host_in: [approve.example]}
    effect: approval_needed
    approval: {group: payments, ttl: 10m}
  - id: dlp
    match: {tools: [http.request, http.get]}
    when:
      - destination: {host_in: [dlp.example]}
    effect: sanitize
    sanitize:
      detectors: [email, us_ssn]
      fields: ["headers.x-secret"]
"""


def basic(tenant: str = "acme", agent: str = "agent-1", token: str = "tok") -> str:
    raw = f"{tenant}/{agent}:{token}".encode()
    return "Basic " + base64.b64encode(raw).decode()


AUTH = basic()


def run(coro: Coroutine[Any, Any, Any], timeout: float = TEST_TIMEOUT) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


# -- upstreams -------------------------------------------------------------------------


@dataclass
class Seen:
    """One request an upstream received: its raw head, parsed parts and body."""

    raw_head: bytes
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def header_names(self) -> list[str]:
        return [k for k, _ in self.headers]


class _RequestCollector:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.head_done = False
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:
            self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


Responder = Callable[[Seen, asyncio.StreamWriter], Awaitable[None]]


def fixed(
    status: int = 200,
    body: bytes = b"ok",
    headers: list[tuple[str, str]] | None = None,
) -> Responder:
    async def respond(seen: Seen, writer: asyncio.StreamWriter) -> None:
        lines = [f"HTTP/1.1 {status} X"]
        lines += [f"{k}: {v}" for k, v in headers or []]
        lines.append(f"content-length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()

    return respond


async def echo_request(seen: Seen, writer: asyncio.StreamWriter) -> None:
    """Answer with the request as JSON: what the upstream saw, for assertions."""
    doc = {
        "method": seen.method,
        "target": seen.target,
        "headers": seen.headers,
        "body": seen.body.decode("latin-1"),
    }
    body = json.dumps(doc).encode()
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()


class HttpUpstream:
    """A local HTTP/1.1 origin: parses requests with llhttp, records them, answers
    with ``responder`` (keep-alive unless the responder closes)."""

    def __init__(self, responder: Responder = echo_request) -> None:
        self.responder = responder
        self.seen: list[Seen] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> HttpUpstream:
        self.server = await asyncio.start_server(self._serve, LOCAL, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                collector = _RequestCollector()
                parser = httptools.HttpRequestParser(collector)
                raw = bytearray()
                while not collector.done:
                    data = await reader.read(65536)
                    if not data:
                        return
                    raw += data
                    parser.feed_data(data)
                head_end = raw.find(b"\r\n\r\n") + 4
                seen = Seen(
                    bytes(raw[:head_end]),
                    parser.get_method().decode(),
                    collector.url.decode("latin-1"),
                    collector.headers,
                    bytes(collector.body),
                )
                self.seen.append(seen)
                await self.responder(seen, writer)
                if writer.is_closing():
                    return
        except (ConnectionError, httptools.HttpParserError, asyncio.CancelledError):
            return  # a cancelled handler at loop shutdown is not an error worth a log
        finally:
            writer.close()


class EchoTarget:
    """A TLS-less CONNECT target: echoes every byte back; on EOF from the client
    it sends ``farewell`` and closes (to observe half-close handling)."""

    def __init__(self, farewell: bytes = b"") -> None:
        self.farewell = farewell
        self.received = bytearray()
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> EchoTarget:
        self.server = await asyncio.start_server(self._serve, LOCAL, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(data)
                await writer.drain()
            if self.farewell:
                writer.write(self.farewell)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@dataclass
class Dialer:
    """The proxy's connector: host names to local ports. Unknown names fail like
    an unreachable host; nothing is ever dialled outside 127.0.0.1."""

    routes: dict[tuple[str, int] | str, int] = field(default_factory=dict)
    dialled: list[tuple[str, int]] = field(default_factory=list)

    def route(self, host: str, port: int | None, local_port: int) -> None:
        self.routes[(host, port) if port is not None else host] = local_port

    async def __call__(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.dialled.append((host, port))
        local = self.routes.get((host, port), self.routes.get(host))
        if local is None:
            raise ConnectionRefusedError(111, "Connection refused (test dialer: no route)")
        return await asyncio.open_connection(LOCAL, local)


# -- clients ---------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        """The stable code of an error body (RequestError or PolicyViolation)."""
        try:
            return str(self.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return None


class Client:
    """A raw HTTP/1.1 client connection to the proxy (bytes in, parsed responses out).

    Responses are read with an exact, deliberately simple reader (status line,
    fields, then Content-Length, chunked or close-delimited content), so two
    responses arriving in one read are never confused.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection(LOCAL, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _head(self) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise AssertionError(f"connection closed before a response: {exc.partial!r}") from None
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.lower(), value.strip(" \t")))
        return int(status), headers, raw

    async def _chunked(self) -> bytes:
        body = b""
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while await self.reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields
                return body
            body += await self.reader.readexactly(size)
            assert await self.reader.readexactly(2) == b"\r\n"

    async def response(self, *, head_request: bool = False, timeout: float = 5.0) -> Response:
        """Read one final response (skipping 1xx); EOF before it is an AssertionError."""
        async with asyncio.timeout(timeout):
            while True:
                status, headers, raw = await self._head()
                if status >= 200:
                    break
            fields = dict(headers)
            if head_request or status in (204, 304):
                body = b""
            elif fields.get("transfer-encoding") == "chunked":
                body = await self._chunked()
            elif "content-length" in fields:
                body = await self.reader.readexactly(int(fields["content-length"]))
            else:
                body = await self.reader.read()  # close-delimited
        return Response(status, headers, body, raw)

    async def request(self, data: bytes, **kwargs: Any) -> Response:
        await self.send(data)
        return await self.response(**kwargs)

    async def closed(self, timeout: float = 3.0) -> bool:
        """True when the proxy closed the connection (EOF, or reset) within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


def get(url: str, *, auth: str | None = AUTH, headers: str = "", method: str = "GET") -> bytes:
    lines = f"{method} {url} HTTP/1.1\r\nHost: ignored.example\r\n"
    if auth is not None:
        lines += f"Proxy-Authorization: {auth}\r\n"
    return (lines + headers + "\r\n").encode()


def post(
    url: str,
    body: bytes,
    *,
    content_type: str = "application/json",
    auth: str | None = AUTH,
    headers: str = "",
) -> bytes:
    lines = f"POST {url} HTTP/1.1\r\nHost: ignored.example\r\n"
    if auth is not None:
        lines += f"Proxy-Authorization: {auth}\r\n"
    lines += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    return lines.encode() + body


def connect(target: str, *, auth: str | None = AUTH, extra: str = "") -> bytes:
    lines = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if auth is not None:
        lines += f"Proxy-Authorization: {auth}\r\n"
    return (lines + extra + "\r\n").encode()


# -- the rig ---------------------------------------------------------------------------


@dataclass
class Rig:
    proxy: ForwardProxy
    port: int
    dialer: Dialer
    metrics: GatewayMetrics
    log: io.StringIO
    pipeline: Pipeline
    policy: CompiledPolicy

    async def client(self) -> Client:
        return await Client.open(self.port)

    async def once(self, data: bytes, **kwargs: Any) -> Response:
        client = await self.client()
        try:
            return await client.request(data, **kwargs)
        finally:
            client.close()

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line["event"] == name]

    async def stop(self, grace: float = 1.0) -> None:
        await self.proxy.stop(grace)


async def make_rig(
    *,
    policy: str | CompiledPolicy = POLICY,
    config: ProxyConfig | None = None,
    failure: str | None = None,
    limits: object | None = None,
    timeout: float = 0.05,
    dialer: Dialer | None = None,
) -> Rig:
    compiled = compile_text(policy) if isinstance(policy, str) else policy
    store = PolicyStore(compiled)
    metrics = GatewayMetrics()
    stream = io.StringIO()
    log = JsonLog(stream)
    evidence = TelemetryEvidence(metrics=metrics, log=log, policy=store)
    pipeline = pipeline_with(store, failure, evidence=evidence, timeout=timeout)
    if limits is not None:
        pipeline.limits = limits  # type: ignore[assignment]
    dialer = dialer or Dialer()
    proxy = build_forward_proxy(
        pipeline, config or ProxyConfig(), metrics=metrics, log=log, connect=dialer
    )
    port = await proxy.start(LOCAL, 0)
    return Rig(proxy, port, dialer, metrics, stream, pipeline, compiled)
