"""The decision API door: ask the pipeline about a call over HTTP/1.1 + JSON.

Endpoints (docs/doors/api.md)::

    POST /v1/decide          a ToolCall -> 200 Decision (every outcome; the caller enforces)
    POST /v1/decide/batch    {"calls": [...]} -> {"results": [...]}, in order
    GET  /openapi.json       the OpenAPI 3.1 document
    GET  /metrics            Prometheus text (with a GatewayMetrics)
    GET  /healthz, /readyz   liveness, readiness

Assemble with :func:`create_api_server` (a ready HttpServer), or take the
routes (:func:`build_api_routes`) or router (:func:`build_api_router`) to
serve them beside others.
"""

from aegis.doors.api.app import (
    build_api_router,
    build_api_routes,
    create_api_server,
    refusal_counter,
)
from aegis.doors.api.decide import DOOR, DecideHandlers
from aegis.doors.api.limits import DEFAULT_MAX_BATCH, ApiLimits
from aegis.doors.api.openapi import openapi_document

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DOOR",
    "ApiLimits",
    "DecideHandlers",
    "build_api_router",
    "build_api_routes",
    "create_api_server",
    "openapi_document",
    "refusal_counter",
]
