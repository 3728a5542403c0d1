"""The generated Envoy protobuf and gRPC modules, imported in one place.

grpcio, protobuf and xds-protos ship no type information, so each import is
marked here once and the rest of the package treats messages as ``Any``; the
wire shapes are pinned by the tests instead (a gRPC client playing Envoy).
"""

from __future__ import annotations

import grpc  # type: ignore[import-untyped]
from envoy.config.core.v3 import base_pb2  # type: ignore[import-untyped]
from envoy.service.auth.v3 import (  # type: ignore[import-untyped]
    external_auth_pb2,
    external_auth_pb2_grpc,
)
from envoy.service.ext_proc.v3 import (  # type: ignore[import-untyped]
    external_processor_pb2,
    external_processor_pb2_grpc,
)
from envoy.type.v3 import http_status_pb2  # type: ignore[import-untyped]
from google.rpc import code_pb2, status_pb2  # type: ignore[import-untyped]

__all__ = [
    "base_pb2",
    "code_pb2",
    "external_auth_pb2",
    "external_auth_pb2_grpc",
    "external_processor_pb2",
    "external_processor_pb2_grpc",
    "grpc",
    "http_status_pb2",
    "status_pb2",
]
