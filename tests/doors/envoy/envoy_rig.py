"""Test rig for the Envoy door: real servers on 127.0.0.1, clients that play Envoy.

``Verdict`` is what Envoy would do with the answer, in any mode: the status
the client gets (200 = forwarded upstream), the headers (added upstream on 200,
sent to the client otherwise), and the body (the error body; or, for ext_proc
sanitize, the body forwarded upstream).
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc

from aegis.doors.envoy import (
    MappingConfig,
    build_authz_grpc_server,
    build_authz_http_handler,
    build_ext_proc_server,
)
from aegis.http.server import HttpServer
from aegis.pipeline import Pipeline
from aegis.policy import CompiledPolicy, compile_sources
from aegis.policy.source import read_source
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence
from aegis.testing.pipelines import pipeline_with

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
HOST = "127.0.0.1"
MODES = ("grpc", "http", "ext_proc")

MAPPING_DATA: dict[str, Any] = {
    "routes": [
        {
            "name": "payments",
            "methods": ["POST"],
            "hosts": ["api.stripe.com"],
            "path": "/v1/payments",
            "tool": "stripe.create_payment",
        },
        {
            "name": "balance",
            "methods": ["GET"],
            "hosts": ["api.stripe.com"],
            "path": "/v1/balance",
            "tool": "stripe.get_balance",
        },
        {
            "name": "slack",
            "methods": ["POST"],
            "hosts": ["slack.com"],
            "path": "/api/chat.postMessage",
            "tool": "slack.post_message",
        },
        {"name": "egress-read", "methods": ["GET", "HEAD"], "tool": "http.get"},
        {"name": "egress", "tool": "http.request"},
    ]
}
MAPPING = MappingConfig.from_dict(MAPPING_DATA)
FINANCE = {"x-aegis-tenant": "acme", "x-aegis-agent-id": "finance-agent"}
SLACK = {"x-aegis-tenant": "acme", "x-aegis-agent-id": "status-bot"}


@functools.cache
def example_policy() -> CompiledPolicy:
    names = ("finance-payments", "slack-posting", "egress")
    return compile_sources(
        [read_source(EXAMPLES / n / "policy.yaml", f"{n}/policy.yaml") for n in names]
    )


@dataclass
class Rig:
    pipeline: Pipeline
    metrics: GatewayMetrics
    log: io.StringIO
    mapping: MappingConfig = MAPPING

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line["event"] == event]


def make_rig(
    policy: CompiledPolicy | None = None,
    failure: str | None = None,
    *,
    limits: object | None = None,
    mapping: MappingConfig = MAPPING,
    timeout: float = 0.05,
    tracer: Any = None,
) -> Rig:
    policy = policy if policy is not None else example_policy()
    metrics = GatewayMetrics()
    stream = io.StringIO()
    evidence = TelemetryEvidence(tracer=tracer, metrics=metrics, log=JsonLog(stream))
    pipeline = pipeline_with(policy, failure, evidence=evidence, timeout=timeout)
    evidence.policy = pipeline.policy
    if limits is not None:
        pipeline.limits = limits  # type: ignore[assignment]
    return Rig(pipeline, metrics, stream, mapping)


# -- requests ------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    method: str = "GET"
    path: str = "/"
    host: str = "api.stripe.com"
    headers: dict[str, str] | list[tuple[str, str]] = field(default_factory=dict)
    body: bytes | None = None
    scheme: str = "https"

    def header_pairs(self) -> list[tuple[str, str]]:
        pairs = list(self.headers.items()) if isinstance(self.headers, dict) else self.headers
        if self.body and not any(k == "content-length" for k, _ in pairs):
            pairs = [*pairs, ("content-length", str(len(self.body)))]
        return pairs


def json_req(method: str, path: str, host: str, headers: dict[str, str], body: Any) -> Req:
    return Req(
        method,
        path,
        host,
        {**headers, "content-type": "application/json"},
        json.dumps(body).encode(),
    )


def check_request(req: Req, *, raw_headers: bool = True) -> Any:
    """A CheckRequest as Envoy builds it with pack_as_bytes and encode_raw_headers."""
    check = external_auth_pb2.CheckRequest()
    http = check.attributes.request.http
    http.method, http.path, http.host, http.scheme = req.method, req.path, req.host, req.scheme
    http.id = "req-1"
    http.protocol = "HTTP/1.1"
    pairs = [(":method", req.method), (":path", req.path), (":authority", req.host)]
    pairs += req.header_pairs()
    for key, value in pairs:
        if raw_headers:
            http.header_map.headers.add(key=key, raw_value=value.encode("utf-8"))
        elif key in http.headers:
            http.headers[key] += "," + value
        else:
            http.headers[key] = value
    if req.body is not None:
        http.raw_body = req.body
        http.size = len(req.body)
    sock = check.attributes.source.address.socket_address
    sock.address, sock.port_value = "10.1.2.3", 40000
    return check


def ext_proc_headers(req: Req, *, end_of_stream: bool | None = None) -> Any:
    eos = req.body is None if end_of_stream is None else end_of_stream
    msg = ep.ProcessingRequest()
    pseudo = [
        (":method", req.method),
        (":path", req.path),
        (":authority", req.host),
        (":scheme", req.scheme),
    ]
    for key, value in [*pseudo, *req.header_pairs()]:
        msg.request_headers.headers.headers.add(key=key, raw_value=value.encode("utf-8"))
    msg.request_headers.end_of_stream = eos
    return msg


def ext_proc_body(body: bytes, *, end_of_stream: bool = True) -> Any:
    msg = ep.ProcessingRequest()
    msg.request_body.body = body
    msg.request_body.end_of_stream = end_of_stream
    return msg


# -- verdicts ------------------------------------------------------------------


@dataclass
class Verdict:
    status: int
    headers: dict[str, str]
    body: bytes
    rpc_code: int | None = None
    client_headers: dict[str, str] = field(default_factory=dict)
    rewritten: bool = False

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def _options(options: Any) -> dict[str, str]:
    out = {}
    for option in options:
        raw = bytes(option.header.raw_value)
        out[option.header.key] = raw.decode("latin-1") if raw else option.header.value
    return out


def verdict_from_check(response: Any) -> Verdict:
    if response.status.code == 0:
        ok = response.ok_response
        return Verdict(200, _options(ok.headers), b"", 0, _options(ok.response_headers_to_add))
    denied = response.denied_response
    status = denied.status.code or 403
    return Verdict(status, _options(denied.headers), denied.body.encode(), response.status.code)


def verdict_from_ext_proc(responses: list[Any]) -> Verdict:
    last = responses[-1]
    if last.HasField("immediate_response"):
        reply = last.immediate_response
        return Verdict(reply.status.code, _options(reply.headers.set_headers), reply.body)
    phase = last.WhichOneof("response")
    common = getattr(last, phase).response
    rewritten = common.body_mutation.WhichOneof("mutation") == "body"
    return Verdict(
        200,
        _options(common.header_mutation.set_headers),
        common.body_mutation.body if rewritten else b"",
        rewritten=rewritten,
    )


# -- servers -------------------------------------------------------------------

Decide = Callable[[Req], Awaitable[Verdict]]


@asynccontextmanager
async def grpc_channel(port: int) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(f"{HOST}:{port}")
    try:
        yield channel
    finally:
        await channel.close()


@asynccontextmanager
async def serve(mode: str, rig: Rig, **kwargs: Any) -> AsyncIterator[Decide]:
    """Start the mode's server on 127.0.0.1 and yield "ask it like Envoy would"."""
    if mode == "grpc":
        server = build_authz_grpc_server(
            rig.pipeline, rig.mapping, metrics=rig.metrics, log=JsonLog(rig.log), **kwargs
        )
        port = await server.start(HOST, 0)
        try:
            async with grpc_channel(port) as channel:
                stub = external_auth_pb2_grpc.AuthorizationStub(channel)

                async def decide(req: Req) -> Verdict:
                    return verdict_from_check(await stub.Check(check_request(req), timeout=5))

                yield decide
        finally:
            await server.stop(0)
    elif mode == "ext_proc":
        server = build_ext_proc_server(
            rig.pipeline, rig.mapping, metrics=rig.metrics, log=JsonLog(rig.log)
        )
        port = await server.start(HOST, 0)
        try:
            async with grpc_channel(port) as channel:
                stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)

                async def decide(req: Req) -> Verdict:
                    messages = [ext_proc_headers(req)]
                    if req.body is not None:
                        messages.append(ext_proc_body(req.body))
                    responses = await exchange(stub, messages)
                    return verdict_from_ext_proc(responses)

                yield decide
        finally:
            await server.stop(0)
    else:
        handler = build_authz_http_handler(
            rig.pipeline,
            rig.mapping,
            path_prefix="/envoy/authz",
            metrics=rig.metrics,
            log=JsonLog(rig.log),
            **kwargs,
        )
        http_server = HttpServer(handler)
        port = await http_server.start(HOST, 0)
        try:
            async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=5) as client:

                async def decide(req: Req) -> Verdict:
                    # What Envoy's http_service sends: method, prefixed path, the
                    # allowed headers with the original Host, and the buffered body.
                    headers = [(k, v) for k, v in req.header_pairs() if k != "content-length"]
                    headers += [("host", req.host), ("x-forwarded-proto", req.scheme)]
                    response = await client.request(
                        req.method,
                        "/envoy/authz" + req.path,
                        headers=headers,
                        content=req.body or b"",
                    )
                    return Verdict(response.status_code, dict(response.headers), response.content)

                yield decide
        finally:
            await http_server.stop(0.5)


async def exchange(stub: Any, messages: list[Any]) -> list[Any]:
    """Play Envoy's side of one ext_proc stream: send a message, read its response.

    Stops at an immediate response (Envoy sends nothing more). A stream ended
    with an error status raises grpc.aio.AioRpcError.
    """
    call = stub.Process(timeout=5)
    responses = []
    try:
        for message in messages:
            await call.write(message)
            response = await call.read()
            if response is grpc.aio.EOF:
                break
            responses.append(response)
            if response.HasField("immediate_response"):
                break
        await call.done_writing()
        status = await call.code()
    except grpc.aio.AioRpcError as exc:
        raise RpcError(exc.code(), exc.details() or "") from None
    if status != grpc.StatusCode.OK:
        raise RpcError(status, await call.details())
    return responses


class RpcError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def header_map(pairs: list[base_pb2.HeaderValue]) -> dict[str, str]:
    return {h.key: bytes(h.raw_value).decode() for h in pairs}
