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
from pathlib import Path
from typing import IO, Any, Protocol

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from aegis import __version__
from aegis.audit.sink import AuditSink
from aegis.audit.store import AuditStoreError
from aegis.bundles.manager import PolicyManager
from aegis.bundles.tenancy import SHARED
from aegis.doors.api import build_api_routes, refusal_counter
from aegis.doors.envoy import MappingConfig, build_authz_http_handler, build_envoy_grpc_server
from aegis.doors.mcp import build_mcp_proxy, load_config
from aegis.doors.proxy import ProxyConfig, build_forward_proxy
from aegis.errors import ErrorCode
from aegis.http.router import Route, Router
from aegis.http.server import HttpLimits, HttpServer
from aegis.identity.registry import AgentRegistry
from aegis.pipeline import Pipeline, PolicyStore
from aegis.policy import load_policy
from aegis.server.audit import AuditBuild, AuditStartError, build_audit
from aegis.server.control import ControlBuild, audit_recorder, build_control, control_registry
from aegis.server.errors import ConfigError
from aegis.server.identity import GET_HEAD, JWKS_PATH, IdentityBuild, build_identity, jwks_handler
from aegis.server.policy import GatewayPolicyEvents, build_policy_manager, loading_policy
from aegis.settings import AegisSettings
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence

_ALL_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Listener(Protocol):
    async def stop(self, grace: float) -> None: ...


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
    #: audit: the signed audit log, opened in start() (None when disabled).
    audit: AuditBuild | None = None
    #: identity: the token stage, kill switch and JWKS (None: identity.mode unverified).
    identity: IdentityBuild | None = None
    #: control: the control-plane API's parts (None: control.enabled is false).
    control: ControlBuild | None = None
    #: policy: sources, versions, reload and rollout (docs/bundles.md "Serving").
    policy: PolicyManager | None = None
    policy_events: GatewayPolicyEvents | None = None
    #: Where relative paths in door options resolve (the configuration file's folder).
    base_dir: Path | None = None
    #: True from the moment every listener is up until shutdown begins (/readyz).
    ready: bool = False
    _audit_sink: AuditSink | None = None
    _stoppers: list[tuple[str, Any]] = field(default_factory=list)
    _closers: list[tuple[str, Any]] = field(default_factory=list)

    async def start(self) -> dict[str, int]:
        """Start every enabled listener; return the bound ports by name."""
        s = self.settings
        try:
            await self._start_audit()  # audit: before any door can decide
            await self._start_policy()  # policy: every source fetched once, then polled
            await self._start_identity()  # identity: revocations loaded before any call
            await self._start_control()  # control: its own kill switch, the registry
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
                config = load_config(s.mcp.options, env=self.environment, base_dir=self.base_dir)
                mcp = build_mcp_proxy(self.pipeline, config, metrics=self.metrics, log=self.log)
                self.ports["mcp"] = await mcp.start(s.mcp.host, s.mcp.port)
                self._stoppers.append(("mcp", mcp.stop))
        except BaseException:
            await self.stop()
            raise
        # The policy and every listener are built: freeze that heap so the
        # collector never walks it again (a full pass costs a p99 spike).
        gc.collect()
        gc.freeze()
        self.ready = True
        if self.identity is None:
            self.log.warning(
                "identity.unverified",
                reason="agent tokens are not configured: tenant and agent ids are taken from calls",
            )
            identity = "unverified (tokens not configured: identities are taken from calls)"
        else:
            identity = "tokens (every call needs a verified agent token)"
        self.log.info(
            "gateway.started",
            ports=self.ports,
            policy_version=self.store.current.version,
            bundle_hash=self.store.current.bundle_hash,
            rules=len(self.store.current.rules),
            identity=identity,
        )
        return dict(self.ports)

    # -- audit ---------------------------------------------------------------------------
    async def _start_audit(self) -> None:
        if self.audit is None:
            return
        try:
            await self.audit.log.open()
        except AuditStoreError as exc:
            raise AuditStartError(f"{ErrorCode.AUDIT_UNAVAILABLE}: {exc}") from exc
        sink = AuditSink(self.audit.log, self.store)
        self.pipeline.audit = sink
        self._audit_sink = sink
        if self.policy is None:
            await sink.record_policy_activation(self.store.current)

        async def close_audit(_grace: float) -> None:
            self.pipeline.audit = None
            await self.audit_log_close()

        self._closers.append(("audit", close_audit))  # after every listener has drained

    async def audit_log_close(self) -> None:
        if self.audit is not None:
            await self.audit.log.close()

    # -- end audit -------------------------------------------------------------------------

    async def _start_policy(self) -> None:
        manager = self.policy
        if manager is None:
            return
        if self.policy_events is not None:
            self.policy_events.audit = self._audit_sink  # activations become audit records
        await manager.start(poll=self.settings.policy.reload)

        async def close_policy(_grace: float) -> None:
            await manager.close()

        self._closers.append(("policy", close_policy))

    async def _start_identity(self) -> None:
        if self.identity is None or self.identity.kill_switch is None:
            return
        kill_switch = self.identity.kill_switch
        await kill_switch.start()

        async def close_kill_switch(_grace: float) -> None:
            await kill_switch.close()

        self._closers.append(("kill_switch", close_kill_switch))

    async def _start_control(self) -> None:
        control = self.control
        if control is None:
            return
        own_switch = self.identity is None or self.identity.kill_switch is None
        if own_switch:
            await control.kill_switch.start()

        async def close_control(_grace: float) -> None:
            try:
                if own_switch:
                    await control.kill_switch.close()
            finally:
                await control.registry.close()

        self._closers.append(("control", close_control))

    def _control_routes(self) -> list[Route]:
        control = self.control
        if control is None:
            return []
        record = audit_recorder(self._audit_sink) if self._audit_sink is not None else None
        routes: list[Route] = control.build_routes(
            operators=control.operators,
            registry=control.registry,
            kill_switch=control.kill_switch,
            minter=control.minter,
            verifier=control.verifier,
            record=record,
            policies=self.policy,
        )
        return routes

    async def _start_api(self) -> None:
        s = self.settings
        http_limits = HttpLimits(max_body_bytes=s.api.max_body_bytes)
        count_refusal = refusal_counter(self.metrics)
        routes = build_api_routes(
            self.pipeline, metrics=self.metrics, ready=lambda: self.ready, http_limits=http_limits
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
        if self.identity is not None:
            routes.append(Route(JWKS_PATH, jwks_handler(self.identity.jwks), GET_HEAD))
        routes.extend(self._control_routes())
        server = HttpServer(
            Router(routes, on_refusal=count_refusal),
            http_limits,
            log=self.log,
            on_refusal=count_refusal,
        )
        self.ports["api"] = await server.start(s.api.host, s.api.port)
        self._stoppers.append(("api", lambda grace: server.stop(grace_seconds=grace)))

    def _mapping(self) -> MappingConfig:
        return MappingConfig.from_dict(self.settings.envoy.mapping)

    async def stop(self) -> None:
        """Stop accepting, let in-flight calls finish (up to the grace period), flush."""
        grace = self.settings.shutdown_grace_seconds
        self.ready = False  # load balancers stop sending new calls first
        # Listeners drain together; what they decide is still recorded, so the
        # audit log closes only once they are all done.
        for group in (self._stoppers, self._closers):
            parts = list(reversed(group))
            group.clear()
            results = await asyncio.gather(
                *(stop(grace) for _, stop in parts), return_exceptions=True
            )
            for (name, _), result in zip(parts, results, strict=True):
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
    base_dir: Path | None = None,
) -> Gateway:
    """Load the policy and assemble the pipeline and evidence; listeners start in start()."""
    log = JsonLog(log_stream, level=settings.log.level)
    metrics = GatewayMetrics()
    # A policy from `paths` is compiled now, so a broken one stops `aegis serve`
    # before anything starts; bundle sources are fetched in start().
    from_paths = not any(b.tenant == SHARED for b in settings.policy.bundles)
    store = PolicyStore(load_policy(settings.policy.paths) if from_paths else loading_policy())
    policy, policy_events = build_policy_manager(settings.policy, store, metrics, log)
    provider: TracerProvider | None = None
    tracer: trace.Tracer = trace.NoOpTracer()
    if settings.tracing.exporter != "none":
        provider = TracerProvider(
            resource=Resource.create(
                {"service.name": settings.tracing.service_name, "service.version": __version__}
            )
        )
        exporter: SpanExporter = ConsoleSpanExporter()
        if settings.tracing.exporter == "otlp":
            # The settings' values win; the SDK falls back to OTEL_EXPORTER_OTLP_*
            # only for what they leave unset (no headers, compression, CA files).
            otlp = settings.tracing.otlp
            exporter = OTLPSpanExporter(
                endpoint=otlp.endpoint,
                insecure=otlp.insecure,
                timeout=otlp.timeout_seconds,
                headers=dict(otlp.headers),
            )
        # Batched off the hot path; Gateway.stop() shuts the provider down, which flushes.
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("aegis", __version__)
    evidence = TelemetryEvidence(
        tracer=tracer, metrics=metrics, log=log, policy=store, log_decisions=settings.log.decisions
    )
    pipeline = Pipeline.with_defaults(
        store, evidence=evidence, timeout=settings.pipeline.timeout_seconds
    )
    registry = control_registry(settings.control) if settings.control.enabled else None
    try:
        identity = build_identity(settings.identity, registry=registry)  # before the audit store
        if identity is not None:
            pipeline.identity = identity.stage
        control = build_control(settings, registry, identity) if registry is not None else None
    except BaseException:
        if registry is not None:
            _close_now(registry)
        raise
    audit = (
        build_audit(settings.audit, metrics=metrics, log=log) if settings.audit.enabled else None
    )
    return Gateway(
        settings,
        store,
        pipeline,
        metrics,
        log,
        provider,
        dict(environ or {}),
        audit=audit,
        identity=identity,
        control=control,
        base_dir=base_dir,
        policy=policy,
        policy_events=policy_events,
    )


def _close_now(registry: AgentRegistry) -> None:
    """Close a registry when building fails (outside a running event loop only)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with contextlib.suppress(Exception):
            asyncio.run(registry.close())
