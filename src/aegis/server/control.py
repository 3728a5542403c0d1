"""The control plane's parts: operators, registry, minter, verifier, kill switch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from aegis.audit.record import RecordKind
from aegis.audit.sink import AuditSink
from aegis.control import OperatorStore, build_control_routes
from aegis.errors import Diagnostic
from aegis.http.router import Route
from aegis.identity.keys import SigningKeys
from aegis.identity.killswitch import KillSwitch, MemoryRevocationStore
from aegis.identity.registry import AgentRegistry
from aegis.identity.tokens import TokenMinter
from aegis.identity.verifier import TokenVerifier
from aegis.policy.source import read_source
from aegis.server.errors import ConfigError
from aegis.server.identity import IdentityBuild
from aegis.settings import AegisSettings, ControlSettings, IdentitySettings


@dataclass(eq=False)
class ControlBuild:
    build_routes: Callable[..., list[Route]]
    operators: OperatorStore
    registry: AgentRegistry
    kill_switch: KillSwitch
    minter: TokenMinter | None
    verifier: TokenVerifier | None


def audit_recorder(
    sink: AuditSink,
) -> Callable[[str, str | None, dict[str, Any]], Awaitable[None]]:
    """The control API's record hook: every mutation becomes an audit record
    (kinds ``agent``, ``token``, ``revocation``), durable before the API answers."""

    async def record(kind: str, tenant: str | None, body: dict[str, Any]) -> None:
        await sink.record_event(RecordKind(kind), tenant, body)

    return record


def _operators(path: Path) -> OperatorStore:
    parsed = read_source(path)  # the same safe reader as policies
    if isinstance(parsed, Diagnostic):
        raise ConfigError(f"control.operators_file: {parsed}")
    entries = parsed.data
    if not isinstance(entries, list):
        raise ConfigError(f"control.operators_file: {path} is not a list of operators")
    try:
        return OperatorStore(entries)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"control.operators_file: {path}: {exc}") from None


def control_registry(cfg: ControlSettings) -> AgentRegistry:
    if cfg.registry_postgres_dsn:
        from aegis.identity.registry_postgres import PostgresAgentRegistry  # noqa: PLC0415

        return PostgresAgentRegistry(cfg.registry_postgres_dsn)
    from aegis.identity.registry import RegistryStoreError  # noqa: PLC0415
    from aegis.identity.registry_sqlite import SqliteAgentRegistry  # noqa: PLC0415

    try:
        return SqliteAgentRegistry(cfg.registry_sqlite_path)
    except RegistryStoreError as exc:
        raise ConfigError(f"control.registry_sqlite_path: {exc}") from None


def _control_minter(
    cfg: ControlSettings, identity: IdentitySettings
) -> tuple[TokenMinter | None, SigningKeys | None]:
    if not cfg.signing_key_paths:
        return None, None
    issuer = cfg.issuer or identity.issuer
    audience = cfg.audience or identity.audience
    if not issuer or not audience:
        raise ConfigError(
            "control.signing_key_paths needs an issuer and audience "
            "(control.issuer/audience or identity.issuer/audience)"
        )
    try:
        keys = SigningKeys.from_pems(p.read_bytes() for p in cfg.signing_key_paths)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"control.signing_key_paths: {exc}") from None
    minter = TokenMinter(
        keys,
        issuer=issuer,
        audience=audience,
        lifetime=timedelta(seconds=cfg.token_lifetime_seconds),
    )
    return minter, keys


def build_control(
    settings: AegisSettings, registry: AgentRegistry, identity: IdentityBuild | None
) -> ControlBuild:
    """The control plane's parts; the routes are built when the API listener starts."""
    cfg = settings.control
    if cfg.operators_file is None:  # the settings validate this already
        raise ConfigError("control.enabled needs control.operators_file")
    operators = _operators(cfg.operators_file)
    minter, keys = _control_minter(cfg, settings.identity)
    verifier: TokenVerifier | None = None
    if identity is not None:
        verifier = identity.stage.verifier
    elif keys is not None and minter is not None:
        verifier = TokenVerifier(
            keys.verification_keys(),
            issuer=cfg.issuer or settings.identity.issuer or "",
            audience=cfg.audience or settings.identity.audience or "",
            leeway=timedelta(seconds=settings.identity.leeway_seconds),
        )
    if identity is not None and identity.kill_switch is not None:
        kill_switch = identity.kill_switch
    else:
        kill_switch = KillSwitch(MemoryRevocationStore(), registry=registry)
    return ControlBuild(build_control_routes, operators, registry, kill_switch, minter, verifier)
