"""Assembling the decision API: its routes, its router and its server."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter

from aegis.doors.api import probes
from aegis.doors.api.decide import DOOR, CountRefusal, DecideHandlers, no_count
from aegis.doors.api.limits import ApiLimits
from aegis.doors.api.openapi import openapi_document
from aegis.errors import ErrorCode
from aegis.http.router import Route, Router
from aegis.http.server import HttpLimits, HttpServer
from aegis.pipeline import Pipeline
from aegis.telemetry.log import JsonLog
from aegis.telemetry.metrics import GatewayMetrics

_POST = frozenset({"POST"})
_GET = frozenset({"GET"})


def refusal_counter(metrics: GatewayMetrics | None, door: str = DOOR) -> CountRefusal:
    """A function counting one refusal by code in ``aegis_requests_refused_total``."""
    if metrics is None:
        return no_count
    children: dict[str, Counter] = {}
    family = metrics.requests_refused

    def count(code: ErrorCode | str) -> None:
        key = str(code)
        child = children.get(key)
        if child is None:
            # Codes are a closed set (ErrorCode), so this cache stays small.
            child = children[key] = family.labels(door, key)
        child.inc()

    return count


def build_api_routes(
    pipeline: Pipeline,
    *,
    metrics: GatewayMetrics | None = None,
    ready: Callable[[], bool] | None = None,
    limits: ApiLimits | None = None,
    http_limits: HttpLimits | None = None,
) -> list[Route]:
    """The decision API's routes over ``pipeline``.

    ``metrics``: its registry is served at ``/metrics`` and door refusals are
    counted in it (no ``/metrics`` route without it). ``ready``: the readiness
    check behind ``/readyz``; by default, "the pipeline has a policy".
    ``http_limits`` only feeds the limits the OpenAPI document states.
    """
    limits = limits if limits is not None else ApiLimits()
    decide = DecideHandlers(pipeline, limits=limits, count_refusal=refusal_counter(metrics))
    if ready is None:
        store = pipeline.policy

        def ready() -> bool:
            return store.current is not None

    routes = [
        Route("/v1/decide", decide.decide, _POST),
        Route("/v1/decide/batch", decide.decide_batch, _POST),
        Route("/openapi.json", probes.static_json(openapi_document(limits, http_limits)), _GET),
        Route("/healthz", probes.healthz, _GET),
        Route("/readyz", probes.readyz(ready), _GET),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", probes.metrics(metrics.registry), _GET))
    return routes


def build_api_router(
    pipeline: Pipeline,
    *,
    metrics: GatewayMetrics | None = None,
    ready: Callable[[], bool] | None = None,
    limits: ApiLimits | None = None,
    http_limits: HttpLimits | None = None,
) -> Router:
    """:func:`build_api_routes` in a Router whose 404/405 are counted as refusals."""
    routes = build_api_routes(
        pipeline, metrics=metrics, ready=ready, limits=limits, http_limits=http_limits
    )
    return Router(routes, on_refusal=refusal_counter(metrics))


def create_api_server(
    pipeline: Pipeline,
    *,
    metrics: GatewayMetrics | None = None,
    ready: Callable[[], bool] | None = None,
    limits: ApiLimits | None = None,
    http_limits: HttpLimits | None = None,
    log: JsonLog | None = None,
) -> HttpServer:
    """The decision API server (not started: ``await server.start(host, port)``).

    Refusals by the server (limits, framing, timeouts), the router (404/405)
    and the door (415, invalid JSON, invalid calls) all land in
    ``aegis_requests_refused_total{door="api", code=...}``.
    """
    http_limits = http_limits if http_limits is not None else HttpLimits()
    router = build_api_router(
        pipeline, metrics=metrics, ready=ready, limits=limits, http_limits=http_limits
    )
    return HttpServer(router, http_limits, log=log, on_refusal=refusal_counter(metrics))
