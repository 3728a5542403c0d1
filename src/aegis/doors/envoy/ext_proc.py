"""Envoy ext_proc: ``envoy.service.ext_proc.v3.ExternalProcessor/Process``, for sanitize.

ext_authz can only say yes or no; ext_proc can rewrite the request, so it is
the mode that carries out sanitize. The filter must run with
``request_header_mode: SEND`` and ``request_body_mode: BUFFERED``
(docs/envoy/envoy.yaml). One gRPC stream per HTTP request; for every message
Envoy sends, exactly one response (external_processor.proto, ProcessingResponse):

request_headers, end_of_stream   decide now (no body): CONTINUE with the
                                 x-aegis-* headers, or an ImmediateResponse
request_headers, more to come    CONTINUE, unchanged: wait for the body
request_body (the whole body,    decide: allow -> CONTINUE + x-aegis-* headers;
BUFFERED)                        sanitize -> CONTINUE + body_mutation with the
                                 sanitized JSON, content-length set to its
                                 length (in BUFFERED + SEND mode Envoy keeps
                                 content-length and leaves it to the processor,
                                 envoyproxy/envoy#29536), :path if a query
                                 parameter was redacted; deny / limits /
                                 approval -> ImmediateResponse (403/429/428,
                                 the x-aegis-* headers, the JSON error body)
request_trailers, response_*     after an allow: pass through unchanged

Anything else -- a message out of order, a body before its headers, a body in
chunks (STREAMED mode), ``observability_mode``, a second request on one stream --
ends the stream with a gRPC error. The proto says why that is the only safe
choice: a stream the server closes *cleanly* lets the request through
unprocessed, while one closed with an error fails it (500, or
``status_on_error``) unless ``failure_mode_allow`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import Enum
from typing import Any, Final

from aegis.doors.envoy._proto import (
    base_pb2,
    external_processor_pb2,
    external_processor_pb2_grpc,
    grpc,
)
from aegis.doors.envoy.answer import Answer
from aegis.doors.envoy.gate import DOOR_EXT_PROC, EnvoyGate
from aegis.doors.envoy.grpc_server import MESSAGE_OVERHEAD_BYTES, GrpcDoorServer, Register
from aegis.doors.envoy.mapping import MappingConfig, RequestMapper
from aegis.doors.envoy.request import EnvoyRequest
from aegis.pipeline import Pipeline
from aegis.telemetry import GatewayMetrics, JsonLog

pb: Final = external_processor_pb2
_OVERWRITE: Final = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
#: ProcessingMode.BodySendMode.BUFFERED (envoy/extensions/filters/http/ext_proc/v3).
_BUFFERED: Final = 2
#: Messages one stream may carry: headers, body, trailers, then the response
#: phases, which stream in chunks if configured. Bounds a runaway peer.
MAX_MESSAGES_PER_STREAM: Final = 10_000


class ProtocolError(Exception):
    """The peer broke the ext_proc conversation; the stream ends with an error."""


class _Phase(Enum):
    HEADERS = "waiting for request_headers"
    BODY = "waiting for request_body"
    FORWARDED = "allowed; passing the rest through"
    ANSWERED = "answered with an immediate response"


class ExtProcSession:
    """The conversation for one HTTP request: sans-io, one message in, one response out."""

    def __init__(self, gate: EnvoyGate) -> None:
        self.gate = gate
        self.phase = _Phase.HEADERS
        self.messages = 0
        self._buffered = False  # protocol_config said request_body_mode: BUFFERED
        self._request: EnvoyRequest | None = None

    async def on_message(self, message: Any) -> Any:
        """The ProcessingResponse for ``message``; raises ProtocolError."""
        self.messages += 1
        if self.messages > MAX_MESSAGES_PER_STREAM:
            raise ProtocolError("too many messages on one stream")
        if message.observability_mode:
            raise ProtocolError("observability_mode ignores answers, so nothing is enforced")
        if message.HasField("protocol_config"):
            if message.protocol_config.request_body_mode != _BUFFERED:
                raise ProtocolError("request_body_mode must be BUFFERED")
            self._buffered = True
        kind = message.WhichOneof("request")
        if kind is None:
            raise ProtocolError("a ProcessingRequest with no request")
        if self.phase is _Phase.ANSWERED:
            raise ProtocolError(f"{kind} after an immediate response")
        if kind == "request_headers":
            return await self._on_headers(message)
        if kind == "request_body":
            return await self._on_body(message.request_body)
        if kind == "request_trailers":
            return await self._on_trailers()
        if self.phase is not _Phase.FORWARDED:
            raise ProtocolError(f"{kind} while {self.phase.value}")
        # Response phases are not Aegis's to judge: pass them through unchanged.
        if kind == "response_headers":
            return pb.ProcessingResponse(response_headers=pb.HeadersResponse())
        if kind == "response_body":
            return pb.ProcessingResponse(response_body=pb.BodyResponse())
        return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())

    async def _on_headers(self, message: Any) -> Any:
        if self.phase is not _Phase.HEADERS:
            raise ProtocolError(f"request_headers while {self.phase.value}")
        self._request = request_from_headers(message)
        if message.request_headers.end_of_stream:  # no body will follow: decide now
            answer = await self.gate.check(self._request)
            return self._respond("request_headers", answer)
        self.phase = _Phase.BODY
        return pb.ProcessingResponse(request_headers=pb.HeadersResponse())

    async def _on_body(self, body: Any) -> Any:
        if self.phase is not _Phase.BODY or self._request is None:
            raise ProtocolError(f"request_body while {self.phase.value}")
        if not body.end_of_stream and not self._buffered:
            # Without end_of_stream this may be the first of many STREAMED chunks:
            # deciding on it would let the rest through unread.
            raise ProtocolError("a partial request body: request_body_mode must be BUFFERED")
        request = _with_body(self._request, bytes(body.body))
        return self._respond("request_body", await self.gate.check(request))

    async def _on_trailers(self) -> Any:
        if self.phase is _Phase.FORWARDED:
            return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
        if self.phase is not _Phase.BODY or self._request is None:
            raise ProtocolError(f"request_trailers while {self.phase.value}")
        # Trailers with no body message: the body was empty.
        answer = await self.gate.check(_with_body(self._request, b""))
        return self._respond("request_trailers", answer)

    def _respond(self, phase: str, answer: Answer) -> Any:
        if not answer.permits:
            self.phase = _Phase.ANSWERED
            return pb.ProcessingResponse(immediate_response=immediate_response(answer))
        self.phase = _Phase.FORWARDED
        if phase == "request_trailers":  # a trailers answer can only touch trailers
            return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
        common = pb.CommonResponse(header_mutation=self._mutation(answer))
        rewrite = answer.rewrite
        if rewrite is not None and rewrite.body is not None:
            common.body_mutation.body = rewrite.body
        if phase == "request_headers":
            return pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=common))
        return pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))

    def _mutation(self, answer: Answer) -> Any:
        headers = list(answer.headers)
        rewrite = answer.rewrite
        if rewrite is not None:
            request = self._request
            if rewrite.body is not None and request and request.header_values("content-length"):
                headers.append(("content-length", str(len(rewrite.body))))
            if rewrite.target is not None:
                headers.append((":path", rewrite.target))
        return pb.HeaderMutation(set_headers=[_header(k, v) for k, v in headers])


def immediate_response(answer: Answer) -> Any:
    """An ImmediateResponse: Envoy's local reply with our status, headers and body."""
    reply = pb.ImmediateResponse(
        headers=pb.HeaderMutation(set_headers=[_header(k, v) for k, v in answer.headers]),
        body=answer.body,
        # %RESPONSE_CODE_DETAILS% in Envoy's access log; no spaces allowed there.
        details=f"aegis_{answer.code}".replace(".", "_"),
    )
    reply.status.code = answer.status
    return reply


def request_from_headers(message: Any) -> EnvoyRequest:
    """The request an ext_proc request_headers message describes (pseudo-headers included)."""
    pairs = [(h.key.lower(), _header_text(h)) for h in message.request_headers.headers.headers]
    pseudo = {k: v for k, v in pairs if k.startswith(":")}
    attributes = _attributes(message)
    return EnvoyRequest(
        method=pseudo.get(":method", ""),
        target=pseudo.get(":path", ""),
        authority=pseudo.get(":authority", ""),
        scheme=pseudo.get(":scheme", ""),
        headers=tuple((k, v) for k, v in pairs if not k.startswith(":")),
        body=None,
        source_address=_address(attributes.get("source.address")),
        request_id=attributes.get("request.id") or None,
    )


def _with_body(request: EnvoyRequest, body: bytes) -> EnvoyRequest:
    return EnvoyRequest(
        method=request.method,
        target=request.target,
        authority=request.authority,
        scheme=request.scheme,
        headers=request.headers,
        body=body,
        source_address=request.source_address,
        request_id=request.request_id,
    )


def _attributes(message: Any) -> dict[str, str]:
    """String attributes Envoy attached (``request_attributes`` in the filter config,
    e.g. ``source.address``), whichever filter namespace they arrived under."""
    found: dict[str, str] = {}
    for struct in message.attributes.values():
        for key, value in struct.fields.items():
            if value.WhichOneof("kind") == "string_value":
                found[str(key)] = str(value.string_value)
    return found


def _address(value: str | None) -> str | None:
    """Envoy's "1.2.3.4:5678" or "[::1]:5678" attribute, without the port."""
    if not value:
        return None
    if value.startswith("[") and "]" in value:
        return value[1 : value.index("]")]
    return value.partition(":")[0] if value.count(":") == 1 else value


def _header(key: str, value: str) -> Any:
    # ext_proc carries header values in raw_value (external_processor.proto).
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, raw_value=value.encode("latin-1", "replace")),
        append_action=_OVERWRITE,
    )


def _header_text(header: Any) -> str:
    raw = bytes(header.raw_value)
    return raw.decode("latin-1") if raw else str(header.value)


class ExternalProcessorService:
    """The ExternalProcessor servicer (registered by name; no generated base class)."""

    def __init__(self, gate: EnvoyGate) -> None:
        self.gate = gate

    async def Process(  # noqa: N802 - the RPC's name
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        session = ExtProcSession(self.gate)
        async for message in request_iterator:
            try:
                response = await session.on_message(message)
            except ProtocolError as exc:
                self.gate.protocol_error(str(exc))
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
                return
            except Exception as exc:  # a bug: an error status, never a clean close
                self.gate.internal_error(f"{type(exc).__name__}: {exc}")
                await context.abort(grpc.StatusCode.INTERNAL, "aegis could not answer")
                return
            yield response

    def register(self, server: Any) -> None:
        external_processor_pb2_grpc.add_ExternalProcessorServicer_to_server(self, server)


def ext_proc_service(
    pipeline: Pipeline,
    mapping: MappingConfig | RequestMapper,
    *,
    metrics: GatewayMetrics | None = None,
    log: JsonLog | None = None,
) -> Register:
    gate = EnvoyGate(
        pipeline, mapping, door=DOOR_EXT_PROC, can_rewrite=True, metrics=metrics, log=log
    )
    return ExternalProcessorService(gate).register


def build_ext_proc_server(
    pipeline: Pipeline,
    mapping: MappingConfig | RequestMapper,
    *,
    metrics: GatewayMetrics | None = None,
    log: JsonLog | None = None,
) -> GrpcDoorServer:
    """An ext_proc gRPC server: ``await server.start(host, port)``, ``await server.stop(grace)``."""
    mapper = mapping if isinstance(mapping, RequestMapper) else RequestMapper(mapping)
    service = ext_proc_service(pipeline, mapper, metrics=metrics, log=log)
    return GrpcDoorServer(
        [service], max_message_bytes=mapper.config.max_body_bytes + MESSAGE_OVERHEAD_BYTES
    )
