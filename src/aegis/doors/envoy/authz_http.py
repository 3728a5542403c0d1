"""Envoy ext_authz as an HTTP authorization service (the filter's ``http_service``).

Envoy mirrors the client's request to the authorization service: the same
method, ``path_prefix`` + the original path and query, the headers that
``allowed_headers`` lets through (Host, Method, Path, Content-Length and
Authorization always), and -- with ``with_request_body`` -- the buffered body.
A 200 answer lets the request through and copies the response headers listed
in ``authorization_response.allowed_upstream_headers`` onto it; any other status
is sent to the client with its body and (``allowed_client_headers``) headers.
A 5xx or no answer is an authorization *error*: Envoy answers ``status_on_error``
(403) unless ``failure_mode_allow`` is set.

The handler is an :data:`aegis.http.types.Handler`, so the shared HTTP server
mounts it under the ``path_prefix`` Envoy is configured with.

What this mode cannot know: the client's address (the peer is Envoy; the
``X-Forwarded-For`` it may pass is not trusted) and, when Envoy forwarded no
body, whether there was one (Envoy sets Content-Length to what it forwards).
The scheme comes from ``x-forwarded-proto``, which Envoy sets itself at the edge
(``use_remote_address: true``); list it in ``allowed_headers``.
"""

from __future__ import annotations

from aegis.doors.envoy.answer import AuthzSanitize
from aegis.doors.envoy.authz_grpc import PARTIAL_BODY_HEADER
from aegis.doors.envoy.gate import DOOR_AUTHZ_HTTP, EnvoyGate
from aegis.doors.envoy.mapping import MappingConfig, MappingRefusal, RequestMapper
from aegis.doors.envoy.request import EnvoyRequest
from aegis.errors import ErrorCode
from aegis.http.types import Handler, HttpRequest, HttpResponse, json_response
from aegis.pipeline import Pipeline
from aegis.telemetry import GatewayMetrics, JsonLog


def request_from_http(request: HttpRequest, path_prefix: str) -> EnvoyRequest | MappingRefusal:
    """The client's request, as Envoy mirrored it to us under ``path_prefix``."""
    path = request.path
    if path_prefix:
        if not path.startswith(path_prefix):
            return MappingRefusal(ErrorCode.REQUEST_NOT_FOUND, f"not under {path_prefix}")
        path = path[len(path_prefix) :] or "/"
    target = f"{path}?{request.query}" if request.query else path
    headers = request.headers
    return EnvoyRequest(
        method=request.method,
        target=target,
        authority=request.header("host") or "",
        scheme=request.header("x-forwarded-proto") or "",
        headers=headers,
        body=request.body or None,
        body_truncated=any(
            k == PARTIAL_BODY_HEADER and v.strip().lower() == "true" for k, v in headers
        ),
        source_address=None,
        request_id=request.header("x-request-id"),
    )


def build_authz_http_handler(
    pipeline: Pipeline,
    mapping: MappingConfig | RequestMapper,
    *,
    path_prefix: str = "",
    metrics: GatewayMetrics | None = None,
    log: JsonLog | None = None,
    sanitize: AuthzSanitize = AuthzSanitize.DENY_IF_REWRITE,
) -> Handler:
    """A Handler answering Envoy's ext_authz ``http_service`` calls under ``path_prefix``."""
    if path_prefix and (not path_prefix.startswith("/") or path_prefix.endswith("/")):
        raise ValueError("path_prefix starts with '/' and does not end with one")
    gate = EnvoyGate(
        pipeline,
        mapping,
        door=DOOR_AUTHZ_HTTP,
        can_rewrite=False,
        authz_sanitize=sanitize,
        metrics=metrics,
        log=log,
    )

    async def handle(request: HttpRequest) -> HttpResponse:
        try:
            envoy_request = request_from_http(request, path_prefix)
            if isinstance(envoy_request, MappingRefusal):
                answer = gate.refuse(envoy_request)
            else:
                answer = await gate.check(envoy_request)
        except Exception as exc:  # a bug: a 5xx is an error Envoy fails closed on
            gate.internal_error(f"{type(exc).__name__}: {exc}")
            return json_response(
                500,
                {
                    "error": {
                        "type": "InternalError",
                        "code": str(ErrorCode.PIPELINE_INTERNAL_ERROR),
                        "reason": "aegis could not answer",
                    }
                },
            )
        return HttpResponse(answer.status, answer.headers, answer.body)

    return handle
