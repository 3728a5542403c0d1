"""The Envoy door: ext_authz (gRPC and HTTP) and ext_proc in front of the one pipeline.

Envoy's request becomes a ToolCall through a configurable mapping
(:class:`MappingConfig`), the pipeline decides, and each mode answers in its
own wire format. docs/doors/envoy.md is the operator's guide;
docs/envoy/envoy.yaml a working Envoy configuration.
"""

from aegis.doors.envoy.answer import Answer, AuthzSanitize
from aegis.doors.envoy.authz_grpc import build_authz_grpc_server
from aegis.doors.envoy.authz_http import build_authz_http_handler
from aegis.doors.envoy.config import (
    DEFAULT_TOOL_TEMPLATE,
    MappingConfig,
    NonJsonBody,
    QueryParams,
    RouteRule,
)
from aegis.doors.envoy.ext_proc import build_ext_proc_server
from aegis.doors.envoy.gate import DOOR_AUTHZ_GRPC, DOOR_AUTHZ_HTTP, DOOR_EXT_PROC
from aegis.doors.envoy.grpc_server import GrpcDoorServer
from aegis.doors.envoy.mapping import MappedCall, MappingRefusal, RequestMapper
from aegis.doors.envoy.request import EnvoyRequest
from aegis.doors.envoy.routes import MappingConfigError
from aegis.doors.envoy.servers import build_envoy_grpc_server

__all__ = [
    "DEFAULT_TOOL_TEMPLATE",
    "DOOR_AUTHZ_GRPC",
    "DOOR_AUTHZ_HTTP",
    "DOOR_EXT_PROC",
    "Answer",
    "AuthzSanitize",
    "EnvoyRequest",
    "GrpcDoorServer",
    "MappedCall",
    "MappingConfig",
    "MappingConfigError",
    "MappingRefusal",
    "NonJsonBody",
    "QueryParams",
    "RequestMapper",
    "RouteRule",
    "build_authz_grpc_server",
    "build_authz_http_handler",
    "build_envoy_grpc_server",
    "build_ext_proc_server",
]
