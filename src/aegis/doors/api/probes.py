"""Operational endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from aegis.http.types import Handler, HttpRequest, HttpResponse

_JSON = ("content-type", "application/json")
_NO_STORE = ("cache-control", "no-store")  # probes and metrics are always fresh
_OK = HttpResponse(200, (_JSON, _NO_STORE), b'{"status":"ok"}')
_READY = HttpResponse(200, (_JSON, _NO_STORE), b'{"status":"ready"}')
_NOT_READY = HttpResponse(503, (_JSON, _NO_STORE), b'{"status":"not_ready"}')


async def healthz(request: HttpRequest) -> HttpResponse:  # noqa: ARG001 - a Handler
    """The process is up and its event loop answers."""
    return _OK


def readyz(ready: Callable[[], bool]) -> Handler:
    """200 while ``ready()`` is true, else 503 (a raising check is not ready)."""

    async def handler(request: HttpRequest) -> HttpResponse:  # noqa: ARG001 - a Handler
        try:
            is_ready = bool(ready())
        except Exception:  # a broken readiness check means: do not send traffic here
            is_ready = False
        return _READY if is_ready else _NOT_READY

    return handler


def metrics(registry: CollectorRegistry) -> Handler:
    """The registry in Prometheus' text exposition format."""

    async def handler(request: HttpRequest) -> HttpResponse:  # noqa: ARG001 - a Handler
        return HttpResponse(
            200, (("content-type", CONTENT_TYPE_LATEST), _NO_STORE), generate_latest(registry)
        )

    return handler


def static_json(document: dict[str, Any]) -> Handler:
    """A JSON document serialised once (the OpenAPI document does not change)."""
    response = HttpResponse(200, (_JSON,), json.dumps(document, separators=(",", ":")).encode())

    async def handler(request: HttpRequest) -> HttpResponse:  # noqa: ARG001 - a Handler
        return response

    return handler
