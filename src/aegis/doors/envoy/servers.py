"""Both Envoy gRPC services on one server: the shape docs/envoy/envoy.yaml deploys.

Envoy can point its ext_authz and ext_proc filters at one cluster; each HTTP
request is still decided once, because the route table enables exactly one of
the two filters per route (ext_proc where sanitize must rewrite the body).
"""

from __future__ import annotations

from aegis.doors.envoy.answer import AuthzSanitize
from aegis.doors.envoy.authz_grpc import authz_grpc_service
from aegis.doors.envoy.ext_proc import ext_proc_service
from aegis.doors.envoy.grpc_server import MESSAGE_OVERHEAD_BYTES, GrpcDoorServer
from aegis.doors.envoy.mapping import MappingConfig, RequestMapper
from aegis.pipeline import Pipeline
from aegis.telemetry import GatewayMetrics, JsonLog


def build_envoy_grpc_server(
    pipeline: Pipeline,
    mapping: MappingConfig | RequestMapper,
    *,
    metrics: GatewayMetrics | None = None,
    log: JsonLog | None = None,
    sanitize: AuthzSanitize = AuthzSanitize.DENY_IF_REWRITE,
) -> GrpcDoorServer:
    """ext_authz (Authorization/Check) and ext_proc (ExternalProcessor/Process) together."""
    mapper = mapping if isinstance(mapping, RequestMapper) else RequestMapper(mapping)
    return GrpcDoorServer(
        [
            authz_grpc_service(pipeline, mapper, metrics=metrics, log=log, sanitize=sanitize),
            ext_proc_service(pipeline, mapper, metrics=metrics, log=log),
        ],
        max_message_bytes=mapper.config.max_body_bytes + MESSAGE_OVERHEAD_BYTES,
    )
