"""Gateway settings: one file, parsed once into one object, passed down.

``aegis serve --config aegis.yaml`` reads the file with the same safe reader as
policies (YAML 1.2 core schema, no aliases or tags, bounded size and depth) and
validates it here; nothing else in the code reads configuration or the
environment. Every section has working defaults, so an empty file serves the
example policies on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aegis.errors import Diagnostic, ErrorCode
from aegis.policy.source import read_source


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Tenant ids as the policy language spells them ("" is the shared policy's slot).
_TenantId = Annotated[str, Field(pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]


class BundleSourceSettings(_Section):
    """One bundle source: a file, a folder (policy sources or an unpacked bundle),
    or an http(s) URL polled with ETag / If-None-Match (docs/bundles.md "Serving")."""

    tenant: _TenantId = Field(default="", description="'': the shared policy; else a tenant.")
    source: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with HTTP fetches.")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    ca_file: Path | None = None  # PEM CA for an https:// source; relative to the config
    subtree: bool = Field(
        default=False,
        description="The source is a bundle of several tenants; this tenant decides by "
        "its tenants/<tenant> part (build with `aegis bundle build --tenants`).",
    )

    @model_validator(mode="after")
    def _subtree_is_a_tenants(self) -> BundleSourceSettings:
        if self.subtree and not self.tenant:
            raise ValueError("subtree needs a tenant: the shared policy is a whole bundle")
        return self


class PolicySettings(_Section):
    """Where policies come from, how they reload and how new versions roll out.

    Without a ``bundles`` entry for the shared policy, ``paths`` is its source
    (rebuilt when the files change). ``bundles`` entries with a ``tenant`` give
    that tenant its own bundle, roots under ``tenants/<tenant>``.
    """

    paths: list[Path] = Field(default_factory=lambda: [Path("examples")])
    bundles: list[BundleSourceSettings] = Field(default_factory=list)
    reload: bool = Field(default=True, description="Poll the sources for new versions.")
    poll_seconds: float = Field(default=10.0, gt=0, le=3600)
    backoff_max_seconds: float = Field(default=120.0, gt=0, le=86400)
    require_signature: bool = False
    public_key_paths: list[Path] = Field(default_factory=list)  # PEM; relative
    signature_scope: str | None = None
    rollout: Literal["direct", "staged"] = Field(
        default="direct",
        description="direct: a new version becomes active; staged: it becomes the "
        "shadow candidate until promoted.",
    )
    # Where versions and rollout state persist across restarts (relative to the
    # config file). None: in memory only, as OPA's bundles without `persist`.
    state_dir: Path | None = None
    keep_versions: int = Field(default=20, ge=2, le=1000)
    # Replicas share what each slot serves (active, candidate, stage, pinned) through
    # PostgreSQL, so a promote or rollback on one reaches all within poll_seconds.
    shared_state_dsn: str | None = None
    shared_state_table_prefix: str = Field(
        default="aegis_policy", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,40}$"
    )

    @model_validator(mode="after")
    def _one_source_per_tenant(self) -> PolicySettings:
        seen: set[str] = set()
        for entry in self.bundles:
            if entry.tenant in seen:
                raise ValueError(f"policy.bundles: two sources for tenant {entry.tenant!r}")
            seen.add(entry.tenant)
        if self.require_signature and not self.public_key_paths:
            raise ValueError("policy.require_signature needs policy.public_key_paths")
        return self


class PipelineSettings(_Section):
    timeout_seconds: float = Field(default=0.25, gt=0, le=30)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    decisions: bool = Field(default=True, description="One JSON line per decision.")


#: gRPC metadata keys: lower-case (HTTP/2 field names, RFC 9113 §8.2.1).
_MetadataKey = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")]


class OtlpSettings(_Section):
    """Where ``tracing.exporter: otlp`` sends spans: an OTLP/gRPC receiver, normally
    an OpenTelemetry Collector beside the gateway (docs/telemetry.md)."""

    endpoint: str = Field(
        default="127.0.0.1:4317",
        min_length=1,
        description="host:port, or an http:// or https:// URL (https:// always means TLS).",
    )
    insecure: bool = Field(default=True, description="Plaintext gRPC; false: TLS, system roots.")
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    headers: dict[_MetadataKey, str] = Field(
        default_factory=dict, description="gRPC metadata sent with every export."
    )


class TracingSettings(_Section):
    exporter: Literal["none", "console", "otlp"] = "none"
    service_name: str = "aegis-gateway"
    otlp: OtlpSettings = Field(default_factory=OtlpSettings)


class Listener(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


class ApiSettings(Listener):
    port: int = Field(default=8181, ge=0, le=65535)
    max_body_bytes: int = Field(default=1 << 20, gt=0)


class EnvoySettings(Listener):
    """ext_authz (gRPC) and ext_proc share one gRPC listener; the HTTP
    authorization-service mode is mounted on the API listener under ``http_prefix``."""

    port: int = Field(default=9191, ge=0, le=65535)
    http_prefix: str = "/envoy/authz"
    mapping: dict[str, Any] = Field(default_factory=dict)


class ProxySettings(Listener):
    port: int = Field(default=3128, ge=0, le=65535)
    options: dict[str, Any] = Field(default_factory=dict)


class McpSettings(Listener):
    port: int = Field(default=8765, ge=0, le=65535)
    options: dict[str, Any] = Field(default_factory=dict)


# -- audit (the signed audit log's recording half: docs/audit.md "Recording") -------------
class AuditSettings(_Section):
    enabled: bool = True
    store: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: Path = Path(".aegis/audit.db")  # relative to the config file
    postgres_dsn: str | None = None
    postgres_table: str = Field(default="aegis_audit", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
    log_id: str = Field(default="aegis", min_length=1, max_length=200)
    signing_key_path: Path | None = Path(".aegis/audit-signing-key.pem")  # PEM; relative
    generate_key: bool = True  # create the key on first start when the file is missing
    on_key_error: Literal["refuse_to_start", "fail_writes_closed"] = "refuse_to_start"
    checkpoint_every_records: int = Field(default=1000, gt=0)
    checkpoint_every_seconds: float = Field(default=10.0, gt=0)
    max_queue: int = Field(default=10_000, gt=0)
    max_batch: int = Field(default=512, gt=0, le=100_000)


# -- end audit ----------------------------------------------------------------------------


# -- identity (agent tokens: docs/identity.md "In the gateway") ---------------------------
class IdentitySettings(_Section):
    """``unverified`` (the default): identities are taken from calls as stated.
    ``tokens``: every call must carry an agent token that the gateway verifies."""

    mode: Literal["unverified", "tokens"] = "unverified"
    issuer: str | None = None
    audience: str | None = None
    jwks_path: Path | None = None  # a JWK Set (JSON) of the issuer's public keys
    public_key_paths: list[Path] = Field(default_factory=list)  # or PEM public keys
    leeway_seconds: float = Field(default=30.0, ge=0, le=120)
    require_chain_match: bool = True
    killswitch_redis_url: str | None = None  # None: revocations kept in this process

    @model_validator(mode="after")
    def _tokens_need_keys(self) -> IdentitySettings:
        if self.mode == "tokens":
            if not self.issuer or not self.audience:
                raise ValueError("identity.mode tokens needs identity.issuer and identity.audience")
            if (self.jwks_path is None) == (not self.public_key_paths):
                raise ValueError(
                    "identity.mode tokens needs exactly one of identity.jwks_path "
                    "and identity.public_key_paths"
                )
        return self


# -- end identity -------------------------------------------------------------------------


# -- control (the control-plane HTTP API on the api listener: docs/gateway.md) ------------
class ControlSettings(_Section):
    """The operators' API under ``/v1/control``: agents, tokens, revocations."""

    enabled: bool = False
    operators_file: Path | None = None  # YAML/JSON list of {name, role, tenants, token_sha256}
    registry_sqlite_path: Path = Path(".aegis/agents.db")  # relative to the config file
    registry_postgres_dsn: str | None = None  # set: the registry lives in PostgreSQL
    signing_key_paths: list[Path] = Field(default_factory=list)  # PEM private keys; first active
    issuer: str | None = None  # None: identity.issuer
    audience: str | None = None  # None: identity.audience
    token_lifetime_seconds: int = Field(default=300, gt=0, le=3600)

    @model_validator(mode="after")
    def _enabled_needs_operators(self) -> ControlSettings:
        if self.enabled and self.operators_file is None:
            raise ValueError("control.enabled needs control.operators_file")
        return self


# -- end control --------------------------------------------------------------------------


class AegisSettings(_Section):
    policy: PolicySettings = Field(default_factory=PolicySettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    envoy: EnvoySettings = Field(default_factory=EnvoySettings)
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    mcp: McpSettings = Field(default_factory=lambda: McpSettings(enabled=False))
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=300)
    audit: AuditSettings = Field(default_factory=AuditSettings)  # audit log
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    control: ControlSettings = Field(default_factory=ControlSettings)


class SettingsError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(str(d) for d in diagnostics))
        self.diagnostics = diagnostics


def load_settings(path: Path | None) -> AegisSettings:
    """Settings from a YAML/JSON file (relative policy paths resolve against it)."""
    if path is None:
        return AegisSettings()
    parsed = read_source(path)
    if isinstance(parsed, Diagnostic):
        raise SettingsError([parsed])
    data = parsed.data if parsed.data is not None else {}
    try:
        settings = AegisSettings.model_validate(data)
    except ValidationError as exc:
        diags = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            line, col = parsed.locate(loc)
            where = ".".join(str(p) for p in loc)
            diags.append(
                Diagnostic(
                    ErrorCode.CONFIG_INVALID,
                    f"{where}: {err['msg']}",
                    file=str(path),
                    line=line,
                    column=col,
                )
            )
        raise SettingsError(diags) from None
    base = path.parent
    pol = settings.policy  # policy: paths, file sources, keys and state resolve too
    policy_paths: dict[str, Any] = {
        "paths": [_under(base, p) for p in pol.paths],
        "public_key_paths": [_under(base, p) for p in pol.public_key_paths],
        "state_dir": None if pol.state_dir is None else _under(base, pol.state_dir),
        "bundles": [
            b.model_copy(
                update={
                    "ca_file": None if b.ca_file is None else _under(base, b.ca_file),
                    **(
                        {}
                        if b.source.lower().startswith(("http://", "https://"))
                        else {"source": str(_under(base, Path(b.source)))}
                    ),
                }
            )
            for b in pol.bundles
        ],
    }
    audit = settings.audit  # audit: file paths resolve against the config file too
    audit_paths = {
        "sqlite_path": audit.sqlite_path
        if audit.sqlite_path.is_absolute()
        else base / audit.sqlite_path
    }
    if audit.signing_key_path is not None and not audit.signing_key_path.is_absolute():
        audit_paths["signing_key_path"] = base / audit.signing_key_path
    ident = settings.identity  # identity: key files resolve against the config file too
    ident_paths: dict[str, Any] = {
        "public_key_paths": [p if p.is_absolute() else base / p for p in ident.public_key_paths]
    }
    if ident.jwks_path is not None and not ident.jwks_path.is_absolute():
        ident_paths["jwks_path"] = base / ident.jwks_path
    control = settings.control  # control: files resolve against the config file too
    control_paths: dict[str, Any] = {
        "registry_sqlite_path": _under(base, control.registry_sqlite_path),
        "signing_key_paths": [_under(base, p) for p in control.signing_key_paths],
    }
    if control.operators_file is not None:
        control_paths["operators_file"] = _under(base, control.operators_file)
    return settings.model_copy(
        update={
            "policy": pol.model_copy(update=policy_paths),
            "audit": audit.model_copy(update=audit_paths),
            "identity": ident.model_copy(update=ident_paths),
            "control": control.model_copy(update=control_paths),
        }
    )


def _under(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path
