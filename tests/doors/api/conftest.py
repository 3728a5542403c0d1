"""Fixtures for the decision API door: the example policies and a served API on 127.0.0.1."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aegis.doors.api import ApiLimits, create_api_server
from aegis.http.server import HttpLimits, HttpServer
from aegis.pipeline import Pipeline
from aegis.policy import CompiledPolicy, load_policy
from aegis.telemetry import GatewayMetrics
from aegis.telemetry.log import JsonLog

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def examples_policy() -> CompiledPolicy:
    return load_policy([EXAMPLES])


@dataclass
class Api:
    server: HttpServer
    client: httpx.AsyncClient
    metrics: GatewayMetrics
    server_log: io.StringIO

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def refused(self, code: str) -> float:
        return self.metric("aegis_requests_refused_total", door="api", code=code)


ApiFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def serve_api() -> ApiFactory:
    """``async with serve_api(pipeline, metrics=...) as api:`` -- served and stopped."""

    @asynccontextmanager
    async def factory(
        pipeline: Pipeline,
        *,
        metrics: GatewayMetrics | None = None,
        ready: Callable[[], bool] | None = None,
        limits: ApiLimits | None = None,
        http_limits: HttpLimits | None = None,
    ) -> AsyncIterator[Api]:
        metrics = metrics if metrics is not None else GatewayMetrics()
        log = io.StringIO()
        server = create_api_server(
            pipeline,
            metrics=metrics,
            ready=ready,
            limits=limits,
            http_limits=http_limits,
            log=JsonLog(log),
        )
        port = await server.start("127.0.0.1", 0)
        # trust_env=False: no proxy from the environment ever sees this traffic.
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10
        ) as client:
            try:
                yield Api(server, client, metrics, log)
            finally:
                await server.stop(2.0)

    return factory
