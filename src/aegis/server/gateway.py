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
import json
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from joserfc.jwk import ECKey, OKPKey
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from aegis import __version__
from aegis.audit.log import AuditLog  # audit
from aegis.audit.sink import AuditSink  # audit
from aegis.audit.store import AuditStore, AuditStoreError  # audit
from aegis.doors.api import build_api_routes, refusal_counter
from aegis.doors.envoy import MappingConfig, build_authz_http_handler, build_envoy_grpc_server
from aegis.doors.mcp import build_mcp_proxy, load_config
from aegis.doors.proxy import ProxyConfig, build_forward_proxy
from aegis.errors import ErrorCode
from aegis.http.router import Route, Router
from aegis.http.server import HttpLimits, HttpServer
from aegis.http.types import Handler, HttpRequest, HttpResponse
from aegis.identity.keys import VerificationKeys
from aegis.identity.killswitch import KillSwitch, MemoryRevocationStore, RevocationStore
from aegis.identity.stage import TokenIdentity
from aegis.identity.verifier import TokenVerifier
from aegis.pipeline import Pipeline, PolicyStore
from aegis.policy import load_policy
from aegis.settings import AegisSettings, AuditSettings, IdentitySettings
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
    #: audit: the signed audit log, opened in start() (None when disabled).
    audit: AuditBuild | None = None
    #: identity: the token stage, kill switch and JWKS (None: identity.mode unverified).
    identity: IdentityBuild | None = None
    #: Where relative paths in door options resolve (the configuration file's folder).
    base_dir: Path | None = None
    #: True from the moment every listener is up until shutdown begins (/readyz).
    ready: bool = False
    _stoppers: list[tuple[str, Any]] = field(default_factory=list)
    _closers: list[tuple[str, Any]] = field(default_factory=list)

    async def start(self) -> dict[str, int]:
        """Start every enabled listener; return the bound ports by name."""
        s = self.settings
        try:
            await self._start_audit()  # audit: before any door can decide
            await self._start_identity()  # identity: revocations loaded before any call
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
        await sink.record_policy_activation(self.store.current)

        async def close_audit(_grace: float) -> None:
            self.pipeline.audit = None
            await self.audit_log_close()

        self._closers.append(("audit", close_audit))  # after every listener has drained

    async def audit_log_close(self) -> None:
        if self.audit is not None:
            await self.audit.log.close()

    # -- end audit -------------------------------------------------------------------------

    async def _start_identity(self) -> None:
        if self.identity is None or self.identity.kill_switch is None:
            return
        kill_switch = self.identity.kill_switch
        await kill_switch.start()

        async def close_kill_switch(_grace: float) -> None:
            await kill_switch.close()

        self._closers.append(("kill_switch", close_kill_switch))

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
            routes.append(Route(JWKS_PATH, _jwks_handler(self.identity.jwks), _GET_HEAD))
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


# -- audit ---------------------------------------------------------------------------------
class AuditStartError(ValueError):
    """The audit log cannot run as configured: the gateway refuses to start."""


@dataclass(eq=False)
class AuditBuild:
    log: AuditLog
    store: AuditStore


def _load_signing_key(cfg: AuditSettings, log: JsonLog) -> tuple[Any, str | None]:
    """(key or None, why writes must fail closed or None). Raises AuditStartError when
    the key cannot be loaded and the gateway must refuse to start."""
    if cfg.signing_key_path is None:
        return None, None
    try:
        from aegis.audit import checkpoint  # noqa: PLC0415 - the other half may not exist yet
    except ImportError:
        log.warning("audit.signing_unavailable", reason="aegis.audit.checkpoint is not installed")
        return None, None
    path = cfg.signing_key_path
    try:
        if not path.exists() and cfg.generate_key:
            key = checkpoint.SigningKey.generate()
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("xb") as fh:  # never overwrite a key
                fh.write(key.to_pem())
            path.chmod(0o600)
            log.info("audit.key_generated", path=str(path), kid=key.kid)
            return key, None
        return checkpoint.SigningKey.from_pem(path.read_bytes()), None
    except Exception as exc:  # any failure to load is one condition: no key
        reason = f"{ErrorCode.AUDIT_KEY_UNAVAILABLE}: cannot load {path}: {exc}"
        if cfg.on_key_error == "refuse_to_start":
            raise AuditStartError(reason) from exc
        log.error("audit.key_unavailable", error=reason, writes="fail closed")
        return None, reason


def build_audit(settings: AuditSettings, *, metrics: GatewayMetrics, log: JsonLog) -> AuditBuild:
    key, unavailable = _load_signing_key(settings, log)
    store: AuditStore
    if settings.store == "postgres":
        from aegis.audit.postgres_store import PostgresAuditStore  # noqa: PLC0415 - optional

        if not settings.postgres_dsn:
            raise AuditStartError("audit.postgres_dsn is required with audit.store: postgres")
        store = PostgresAuditStore(settings.postgres_dsn, table=settings.postgres_table)
    else:
        from aegis.audit.sqlite_store import SqliteAuditStore  # noqa: PLC0415

        try:
            store = SqliteAuditStore(settings.sqlite_path)
        except AuditStoreError as exc:
            raise AuditStartError(f"{ErrorCode.AUDIT_UNAVAILABLE}: {exc}") from exc
    audit_log = AuditLog(
        store,
        signing_key=key,
        log_id=settings.log_id,
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        checkpoint_every_records=settings.checkpoint_every_records,
        checkpoint_every_seconds=settings.checkpoint_every_seconds,
        metrics=metrics,
        log=log,
        unavailable=unavailable,
    )
    return AuditBuild(audit_log, store)


# -- end audit -----------------------------------------------------------------------------


# -- identity ------------------------------------------------------------------------------
JWKS_PATH = "/.well-known/jwks.json"
_GET_HEAD = frozenset({"GET", "HEAD"})


@dataclass(eq=False)
class IdentityBuild:
    stage: TokenIdentity
    kill_switch: KillSwitch | None
    #: The public keys tokens are verified with, served at JWKS_PATH.
    jwks: dict[str, Any]


def _jwks_handler(jwks: dict[str, Any]) -> Handler:
    body = json.dumps(jwks, separators=(",", ":")).encode()
    response = HttpResponse(
        200, (("content-type", "application/jwk-set+json"), ("cache-control", "max-age=300")), body
    )

    async def handler(request: HttpRequest) -> HttpResponse:  # noqa: ARG001 - a Handler
        return response

    return handler


def _pem_jwk(path: Path) -> dict[str, Any]:
    """A public key PEM as a JWK bound to its algorithm (kid: RFC 7638 thumbprint)."""
    data = path.read_bytes()
    native = load_pem_public_key(data)
    key: OKPKey | ECKey
    if isinstance(native, ed25519.Ed25519PublicKey):
        key, alg = OKPKey.import_key(data), "EdDSA"
    elif isinstance(native, ec.EllipticCurvePublicKey) and isinstance(native.curve, ec.SECP256R1):
        key, alg = ECKey.import_key(data), "ES256"
    else:
        raise ConfigError(f"identity.public_key_paths: {path} is neither Ed25519 nor P-256")
    return {**key.as_dict(private=False), "kid": key.thumbprint(), "alg": alg, "use": "sig"}


def _load_jwks(cfg: IdentitySettings) -> dict[str, Any]:
    if cfg.jwks_path is not None:
        try:
            jwks = json.loads(cfg.jwks_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"identity.jwks_path: {cfg.jwks_path} is not JSON: {exc}") from None
        if not isinstance(jwks, dict):
            raise ConfigError(f"identity.jwks_path: {cfg.jwks_path} is not a JWK Set")
        return jwks
    return {"keys": [_pem_jwk(path) for path in cfg.public_key_paths]}


def build_identity(cfg: IdentitySettings) -> IdentityBuild | None:
    """The token identity stage for ``identity.mode: tokens`` (None when unverified).
    Key files are read here: a bad key set is ``config.invalid`` at start-up."""
    if cfg.mode != "tokens":
        return None
    if not cfg.issuer or not cfg.audience:  # the settings validate this already
        raise ConfigError("identity.mode tokens needs identity.issuer and identity.audience")
    jwks = _load_jwks(cfg)
    try:
        keys = VerificationKeys.from_jwks(jwks)
    except ValueError as exc:
        raise ConfigError(f"identity: {exc}") from None
    if not keys:
        raise ConfigError("identity: the key set holds no EdDSA or ES256 key")
    verifier = TokenVerifier(
        keys,
        issuer=cfg.issuer,
        audience=cfg.audience,
        leeway=timedelta(seconds=cfg.leeway_seconds),
    )
    store: RevocationStore
    if cfg.killswitch_redis_url:
        from aegis.identity.killswitch_redis import RedisRevocationStore  # noqa: PLC0415

        store = RedisRevocationStore(cfg.killswitch_redis_url, client_name="aegis-gateway")
    else:
        store = MemoryRevocationStore()
    kill_switch = KillSwitch(store)
    stage = TokenIdentity(
        verifier, kill_switch=kill_switch, require_chain_match=cfg.require_chain_match
    )
    return IdentityBuild(stage, kill_switch, jwks)


# -- end identity --------------------------------------------------------------------------


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
    store = PolicyStore(load_policy(settings.policy.paths))
    metrics = GatewayMetrics()
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
    identity = build_identity(settings.identity)  # before the audit store is opened
    if identity is not None:
        pipeline.identity = identity.stage
    audit = (  # audit
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
        base_dir=base_dir,
    )
