"""Envoy ext_authz over gRPC: ``envoy.service.auth.v3.Authorization/Check``.

Envoy sends a ``CheckRequest`` (``attributes.request.http``: method, path with
query, host, scheme, headers or ``header_map``, and -- with ``with_request_body``
-- ``body`` or, with ``pack_as_bytes``, ``raw_body``) and reads the
``CheckResponse``: ``status.code == OK`` lets the request through with
``ok_response`` headers added upstream; any other code denies it with
``denied_response`` (HTTP status, headers, body) sent to the client. An RPC that
fails outright is an authorization *error*, which Envoy answers with
``status_on_error`` (403) unless ``failure_mode_allow`` is set.

Decision           google.rpc code          HTTP to the client
allow / sanitize   OK (0)                   the upstream's; x-aegis-* added upstream
deny               PERMISSION_DENIED (7)    403 + PolicyViolation JSON
limits             RESOURCE_EXHAUSTED (8)   429 + Retry-After
approval_needed    FAILED_PRECONDITION (9)  428 + x-aegis-approval-id
identity.missing   UNAUTHENTICATED (16)     401 + WWW-Authenticate: Bearer
malformed request  INVALID_ARGUMENT (3)     400 / 413 / 415

"Could not decide" arrives already decided by the fail mode (decision.fail_closed
403, or decision.fail_open OK for a declared read that may fail open).
"""

from __future__ import annotations

from typing import Any, Final

from aegis.doors.envoy._proto import (
    base_pb2,
    code_pb2,
    external_auth_pb2,
    external_auth_pb2_grpc,
    grpc,
    status_pb2,
)
from aegis.doors.envoy.answer import Answer, AuthzSanitize
from aegis.doors.envoy.gate import DOOR_AUTHZ_GRPC, EnvoyGate
from aegis.doors.envoy.grpc_server import MESSAGE_OVERHEAD_BYTES, GrpcDoorServer, Register
from aegis.doors.envoy.mapping import MappingConfig, MappingRefusal, RequestMapper
from aegis.doors.envoy.request import EnvoyRequest
from aegis.errors import ErrorCode
from aegis.pipeline import Pipeline
from aegis.pipeline.wire import DECISION_ID_HEADER
from aegis.telemetry import GatewayMetrics, JsonLog

#: HTTP status of the answer -> google.rpc code of the CheckResponse.
_RPC_CODE: Final = {
    200: code_pb2.OK,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    428: code_pb2.FAILED_PRECONDITION,
    429: code_pb2.RESOURCE_EXHAUSTED,
}
_OVERWRITE: Final = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
PARTIAL_BODY_HEADER: Final = "x-envoy-auth-partial-body"


def rpc_code(status: int) -> int:
    return int(
        _RPC_CODE.get(status, code_pb2.INVALID_ARGUMENT if status < 500 else code_pb2.INTERNAL)
    )


def request_from_check(check: Any) -> EnvoyRequest:
    """The EnvoyRequest a CheckRequest describes (AttributeContext.HttpRequest)."""
    http = check.attributes.request.http
    if len(http.header_map.headers):
        # encode_raw_headers: repeats kept, values as raw bytes.
        pairs = [(h.key.lower(), _header_text(h)) for h in http.header_map.headers]
    else:
        # The map form: Envoy has already merged repeats into one comma-joined value.
        pairs = [(str(k).lower(), str(v)) for k, v in http.headers.items()]
    pseudo = {k: v for k, v in pairs if k.startswith(":")}
    headers = tuple((k, v) for k, v in pairs if not k.startswith(":"))
    if http.raw_body:
        body: bytes | None = bytes(http.raw_body)
    elif http.body:
        body = str(http.body).encode("utf-8")
    else:
        body = None
    partial = [v for k, v in headers if k == PARTIAL_BODY_HEADER]
    socket = check.attributes.source.address.socket_address
    return EnvoyRequest(
        method=str(http.method or pseudo.get(":method", "")),
        target=str(http.path or pseudo.get(":path", "")),
        authority=str(http.host or pseudo.get(":authority", "")),
        scheme=str(http.scheme or pseudo.get(":scheme", "")),
        headers=headers,
        body=body,
        body_truncated=any(v.strip().lower() == "true" for v in partial),
        source_address=str(socket.address) or None,
        request_id=str(http.id) or None,
    )


def check_response(answer: Answer) -> Any:
    """The CheckResponse for an answer (external_auth.proto)."""
    headers = [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=key, value=value), append_action=_OVERWRITE
        )
        for key, value in answer.headers
    ]
    if answer.permits:
        # headers go upstream (a client's own x-aegis-* are overwritten, not
        # appended to); the decision id also goes back to the client.
        ok = external_auth_pb2.OkHttpResponse(
            headers=headers,
            response_headers_to_add=[
                base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=DECISION_ID_HEADER, value=answer.decision_id),
                    append_action=_OVERWRITE,
                )
            ],
        )
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK), ok_response=ok
        )
    denied = external_auth_pb2.DeniedHttpResponse(headers=headers, body=answer.body.decode())
    denied.status.code = answer.status
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=rpc_code(answer.status), message=answer.reason),
        denied_response=denied,
    )


class AuthorizationService:
    """The Authorization servicer (registered by name; no generated base class needed)."""

    def __init__(self, gate: EnvoyGate) -> None:
        self.gate = gate

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        try:
            envoy_request = request_from_check(request)
        except (UnicodeError, ValueError) as exc:
            answer = self.gate.refuse(MappingRefusal(ErrorCode.REQUEST_MALFORMED, str(exc)))
        else:
            try:
                answer = await self.gate.check(envoy_request)
            except Exception as exc:  # a bug: end the RPC with an error, never an OK
                self.gate.internal_error(f"{type(exc).__name__}: {exc}")
                await context.abort(grpc.StatusCode.INTERNAL, "aegis could not answer")
                raise  # abort raises; this keeps type checkers and readers honest
        return check_response(answer)

    def register(self, server: Any) -> None:
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(self, server)


def _header_text(header: Any) -> str:
    # HTTP field values are octets (RFC 9110 §5.5); Latin-1 maps each to one
    # character, so nothing is lost and nothing fails to decode.
    raw = bytes(header.raw_value)
    return raw.decode("latin-1") if raw else str(header.value)


def authz_grpc_service(
    pipeline: Pipeline,
    mapping: MappingConfig | RequestMapper,
    *,
    metrics: GatewayMetrics | None = None,
    log: JsonLog | None = None,
    sanitize: AuthzSanitize = AuthzSanitize.DENY_IF_REWRITE,
) -> Register:
    gate = EnvoyGate(
        pipeline,
        mapping,
        door=DOOR_AUTHZ_GRPC,
        can_rewrite=False,
        authz_sanitize=sanitize,
        metrics=metrics,
        log=log,
    )
    return AuthorizationService(gate).register


def build_authz_grpc_server(
    pipeline: Pipeline,
    mapping: MappingConfig | RequestMapper,
    *,
    metrics: GatewayMetrics | None = None,
    log: JsonLog | None = None,
    sanitize: AuthzSanitize = AuthzSanitize.DENY_IF_REWRITE,
) -> GrpcDoorServer:
    """An ext_authz gRPC server: ``await server.start(host, port)``, then ``stop(grace)``."""
    mapper = mapping if isinstance(mapping, RequestMapper) else RequestMapper(mapping)
    service = authz_grpc_service(pipeline, mapper, metrics=metrics, log=log, sanitize=sanitize)
    return GrpcDoorServer(
        [service], max_message_bytes=mapper.config.max_body_bytes + MESSAGE_OVERHEAD_BYTES
    )
