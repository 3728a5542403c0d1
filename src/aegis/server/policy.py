"""The gateway's policy manager: sources from settings; reloads and activations
turned into metrics, log lines and audit records (docs/bundles.md "Serving")."""

from __future__ import annotations

import ssl
from typing import Any

from aegis.audit.sink import AuditSink
from aegis.bundles import (
    BundleError,
    PolicyPathsSource,
    PublicKey,
    keyring,
    open_source,
)
from aegis.bundles.history import VersionHistory
from aegis.bundles.manager import ManagerConfig, PolicyManager
from aegis.bundles.shared import PostgresRolloutStore
from aegis.bundles.sources import BundleSource
from aegis.bundles.tenancy import SHARED, TENANT_ROOT, deny_all_policy
from aegis.bundles.versions import Version
from aegis.pipeline import PolicyStore
from aegis.policy.compiled import CompiledPolicy
from aegis.server.errors import ConfigError
from aegis.settings import PolicySettings
from aegis.telemetry import GatewayMetrics, JsonLog


def loading_policy() -> CompiledPolicy:
    """What the store holds until the first bundle is installed: deny everything.
    No door listens before then; this only keeps the store's type honest."""
    return deny_all_policy("loading", "the policy bundle has not been loaded yet")


class GatewayPolicyEvents:
    """:class:`aegis.bundles.manager.ManagerEvents` for the gateway."""

    def __init__(self, metrics: GatewayMetrics, log: JsonLog) -> None:
        self.metrics = metrics
        self.log = log
        self.audit: AuditSink | None = None  # set once the audit log is open
        self._active: dict[str, tuple[str, str, str, str]] = {}

    def reloaded(
        self, tenant: str, result: str, version: Version | None, error: BundleError | None
    ) -> None:
        self.metrics.policy_reloads.labels(tenant, result).inc()
        if error is not None:
            self.log.warning(
                "policy.reload_failed",
                tenant=tenant,
                code=str(error.code),
                error=error.message,
                serving="the last good version",
            )
        elif version is not None:
            self.metrics.policy_load_seconds.labels(tenant).observe(version.load_seconds)
            self.log.info(
                "policy.reloaded",
                tenant=tenant,
                result=result,
                version=version.policy.version,
                revision=version.revision,
                bundle_hash=version.id,
                load_seconds=round(version.load_seconds, 4),
            )

    async def activated(self, tenant: str, version: Version, how: str, actor: str | None) -> None:
        labels = (tenant, version.policy.version, version.revision, version.id)
        previous = self._active.get(tenant)
        if previous is not None and previous != labels:
            self.metrics.policy_active.remove(*previous)
        self.metrics.policy_active.labels(*labels).set(1)
        self._active[tenant] = labels
        self.log.info(
            "policy.activated",
            tenant=tenant,
            how=how,
            actor=actor,
            version=version.policy.version,
            revision=version.revision,
            bundle_hash=version.id,
            rules=len(version.policy.rules),
        )
        if self.audit is not None:
            aegis_meta = version.manifest.metadata.get("aegis")
            bundle: dict[str, Any] = {
                "revision": version.revision,
                "origin": version.origin,
                "how": how,
                "actor": actor,
                "manifest": aegis_meta if isinstance(aegis_meta, dict) else {},
            }
            await self.audit.record_policy_activation(
                version.policy, tenant=tenant or None, bundle=bundle
            )


def _keys(settings: PolicySettings) -> dict[str, PublicKey] | None:
    if not settings.public_key_paths:
        return None
    try:
        return keyring(PublicKey.from_pem(p.read_bytes()) for p in settings.public_key_paths)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"policy.public_key_paths: {exc}") from None


def build_policy_manager(
    settings: PolicySettings, store: PolicyStore, metrics: GatewayMetrics, log: JsonLog
) -> tuple[PolicyManager, GatewayPolicyEvents]:
    sources: list[tuple[str, BundleSource]] = []
    if not any(b.tenant == SHARED for b in settings.bundles):
        sources.append((SHARED, PolicyPathsSource(settings.paths)))
    for entry in settings.bundles:
        try:
            source = open_source(
                entry.source,
                headers=entry.headers,
                timeout=entry.timeout_seconds,
                roots=(
                    [f"{TENANT_ROOT}/{entry.tenant}"]
                    if entry.tenant and not entry.subtree
                    else None
                ),
                ca_file=entry.ca_file,
                tenant_subtrees=entry.subtree,
            )
        except (ValueError, OSError, ssl.SSLError) as exc:  # a bad URL or CA file
            raise ConfigError(f"policy.bundles: {exc}") from None
        sources.append((entry.tenant, source))
    events = GatewayPolicyEvents(metrics, log)
    manager = PolicyManager(
        sources,
        store.install,
        config=ManagerConfig(
            poll_seconds=settings.poll_seconds,
            backoff_max_seconds=settings.backoff_max_seconds,
            keys=_keys(settings),
            require_signature=settings.require_signature,
            scope=settings.signature_scope,
            staged=settings.rollout == "staged",
            keep_versions=settings.keep_versions,
            quiet_gc=True,  # the gateway owns its process's GC (gc.freeze at start too)
        ),
        history=VersionHistory(settings.state_dir),
        events=events,
        subtrees=[b.tenant for b in settings.bundles if b.subtree],
        shared=(
            PostgresRolloutStore(
                settings.shared_state_dsn, table_prefix=settings.shared_state_table_prefix
            )
            if settings.shared_state_dsn
            else None
        ),
    )
    return manager, events
