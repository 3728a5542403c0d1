"""The app factory: settings in, a running gateway out (DESIGN.md §2).

Every component is built here from the one settings object and handed its
dependencies explicitly -- the policy store, the pipeline, metrics, the log,
the tracer -- so nothing is a global and every door decides through the same
pipeline. Listeners (all on the configured host, 127.0.0.1 by default):

    api     decision API, /metrics, /healthz, /readyz, Envoy's HTTP authz mode
    envoy   ext_authz (gRPC) and ext_proc on one gRPC port
    proxy   the egress forward proxy
    mcp     the MCP proxy over Streamable HTTP (when upstreams are configured)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import IO, Any, Protocol

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from aegis.doors.api import build_api_routes
from aegis.doors.envoy import MappingConfig, build_authz_http_handler, build_envoy_grpc_server
from aegis.doors.mcp import build_mcp_proxy, load_config
from aegis.doors.proxy import ProxyConfig, build_forward_proxy
from aegis.errors import ErrorCode
from aegis.http.router import Route, Router
from aegis.http.server import HttpLimits, HttpServer
from aegis.pipeline import Pipeline, PolicyStore
from aegis.policy import load_policy
from aegis.settings import AegisSettings
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence

_ALL_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Listener(Protocol):
    async def stop(self, grace: float) -> None: ...


class ConfigError(Exception):
    """A door's options in the settings file are not valid."""

    code = ErrorCode.CONFIG_INVALID


@dataclass(eq=False)
class Gateway:
    settings: AegisSettings
    store: PolicyStore
    pipeline: Pipeline
    metrics: GatewayMetrics
    log: JsonLog
    tracer_provider: TracerProvider | None
    #: The environment as the command line captured it (MCP upstream credentials).
    environment: Mapping[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _stoppers: list[tuple[str, Any]] = field(default_factory=list)

    async def start(self) -> dict[str, int]:
        """Start every enabled listener; return the bound ports by name."""
        s = self.settings
        try:
            if s.api.enabled:
                await self._start_api()
            if s.envoy.enabled:
                server = build_envoy_grpc_server(
                    self.pipeline, self._mapping(), metrics=self.metrics, log=self.log
                )
                self.ports["envoy"] = await server.start(s.envoy.host, s.envoy.port)
                self._stoppers.append(("envoy", server.stop))
            if s.proxy.enabled:
                proxy = build_forward_proxy(
                    self.pipeline,
                    _proxy_config(s.proxy.options),
                    metrics=self.metrics,
                    log=self.log,
                )
                self.ports["proxy"] = await proxy.start(s.proxy.host, s.proxy.port)
                self._stoppers.append(("proxy", proxy.stop))
            if s.mcp.enabled:
                config = load_config(s.mcp.options, env=self.environment)
                mcp = build_mcp_proxy(self.pipeline, config, metrics=self.metrics, log=self.log)
                self.ports["mcp"] = await mcp.start(s.mcp.host, s.mcp.port)
                self._stoppers.append(("mcp", lambda _grace: mcp.stop()))
        except BaseException:
            await self.stop()
            raise
        # The policy and every listener are built: freeze that heap so the
        # collector never walks it again (a full pass costs a p99 spike).
        gc.collect()
        gc.freeze()
        self.log.info(
            "gateway.started",
            ports=self.ports,
            policy_version=self.store.current.version,
            bundle_hash=self.store.current.bundle_hash,
            rules=len(self.store.current.rules),
            identity="unverified (tokens not configured: identities are taken from calls)",
        )
        return dict(self.ports)

    async def _start_api(self) -> None:
        s = self.settings
        routes = build_api_routes(
            self.pipeline, metrics=self.metrics, ready=lambda: bool(self.ports)
        )
        if s.envoy.enabled:
            handler = build_authz_http_handler(
                self.pipeline,
                self._mapping(),
                path_prefix=s.envoy.http_prefix,
                metrics=self.metrics,
                log=self.log,
            )
            routes.append(Route(s.envoy.http_prefix, handler, _ALL_METHODS, prefix=True))
        server = HttpServer(
            Router(routes),
            HttpLimits(max_body_bytes=s.api.max_body_bytes),
            log=self.log,
        )
        self.ports["api"] = await server.start(s.api.host, s.api.port)
        self._stoppers.append(("api", lambda grace: server.stop(grace_seconds=grace)))

    def _mapping(self) -> MappingConfig:
        return MappingConfig.from_dict(self.settings.envoy.mapping)

    async def stop(self) -> None:
        """Stop accepting, let in-flight calls finish (up to the grace period), flush."""
        grace = self.settings.shutdown_grace_seconds
        stoppers, self._stoppers = self._stoppers, []
        results = await asyncio.gather(
            *(stop(grace) for _, stop in reversed(stoppers)), return_exceptions=True
        )
        for (name, _), result in zip(reversed(stoppers), results, strict=True):
            if isinstance(result, BaseException):
                self.log.error("gateway.stop_failed", listener=name, error=repr(result))
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        self.log.info("gateway.stopped")
        self.log.flush()

    async def run_until_signalled(self) -> None:
        """Serve until SIGINT or SIGTERM, then drain and stop."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            self.log.info("gateway.stopping", grace_seconds=self.settings.shutdown_grace_seconds)
            await self.stop()


def _proxy_config(options: dict[str, Any]) -> ProxyConfig:
    known = {f.name for f in fields(ProxyConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"proxy.options: unknown key(s) {', '.join(unknown)}")
    try:
        return ProxyConfig(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"proxy.options: {exc}") from None


def build_gateway(
    settings: AegisSettings,
    *,
    log_stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Gateway:
    """Load the policy and assemble the pipeline and evidence; listeners start in start()."""
    log = JsonLog(log_stream, level=settings.log.level)
    store = PolicyStore(load_policy(settings.policy.paths))
    metrics = GatewayMetrics()
    provider: TracerProvider | None = None
    tracer: trace.Tracer = trace.NoOpTracer()
    if settings.tracing.exporter != "none":
        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.tracing.service_name})
        )
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        tracer = provider.get_tracer("aegis")
    evidence = TelemetryEvidence(
        tracer=tracer, metrics=metrics, log=log, policy=store, log_decisions=settings.log.decisions
    )
    pipeline = Pipeline.with_defaults(
        store, evidence=evidence, timeout=settings.pipeline.timeout_seconds
    )
    return Gateway(settings, store, pipeline, metrics, log, provider, dict(environ or {}))
