"""What a tenant's own bundle may claim, and what decides a tenant whose bundle is missing."""

from __future__ import annotations

import json
from typing import Final

from aegis.bundles.errors import BundleError, BundleErrorCode
from aegis.bundles.layout import root_segments
from aegis.bundles.verify import LoadedBundle
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.compiler import compile_text

#: The shared policy's slot: tenants without a bundle of their own are decided by it.
SHARED: Final = ""
#: Every tenant bundle's roots lie under ``tenants/<tenant>``.
TENANT_ROOT: Final = "tenants"

_DENY_ALL = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {{name: {name}, version: {name}}}
defaults:
  outcome: deny
  reason: {reason}
"""


def check_tenant_bundle(tenant: str, bundle: LoadedBundle, *, shared_bundle: bool = False) -> None:
    """A tenant's bundle may claim only ``tenants/<tenant>/...`` and scope rules to it.

    OPA refuses bundles whose roots overlap (two bundles would own the same
    data); a tenant bundle rooted anywhere else -- ``""`` claims everything --
    could overlap another tenant's, so it is refused before it could.
    ``shared_bundle``: the tenant's part of a bundle holding several tenants,
    whose roots are each ``tenants/<someone>`` and include this tenant's.
    """
    mine = [TENANT_ROOT, tenant]
    for root in bundle.manifest.roots:
        parts = root_segments(root)
        inside = parts[:2] == mine or (
            shared_bundle and len(parts) >= 2 and parts[0] == TENANT_ROOT
        )
        if not inside:
            raise BundleError(
                BundleErrorCode.ROOTS_OVERLAP,
                f"tenant {tenant!r} bundle root {root!r} is outside {TENANT_ROOT}/{tenant} "
                "and could overlap another tenant's (build it with --tenant "
                f"{tenant})",
            )
    if shared_bundle and not any(root_segments(root)[:2] == mine for root in bundle.manifest.roots):
        raise BundleError(
            BundleErrorCode.ROOTS_OVERLAP,
            f"the bundle does not claim {TENANT_ROOT}/{tenant} among its roots",
        )
    check_tenant_rules(tenant, bundle.compiled_policy)


def check_tenant_rules(tenant: str, policy: CompiledPolicy) -> None:
    """Every rule of a tenant's policy is that tenant's (``bundle.tenant_mismatch``)."""
    for rule in policy.rules:
        if rule.tenants is not None and rule.tenants != frozenset({tenant}):
            others = ", ".join(sorted(rule.tenants - {tenant})) or "none"
            raise BundleError(
                BundleErrorCode.TENANT_MISMATCH,
                f"rule {rule.id!r} in tenant {tenant!r}'s bundle is scoped to other tenants "
                f"({others}); a tenant's bundle decides only its own calls",
            )


def deny_all_policy(name: str, reason: str) -> CompiledPolicy:
    """A policy that denies every call with ``reason``: what decides where no real
    version can (yet) -- never an allow by omission."""
    # A JSON string is a valid YAML 1.2 double-quoted scalar.
    return compile_text(_DENY_ALL.format(name=name, reason=json.dumps(reason)), f"<{name}>")


def unavailable_policy(tenant: str, why: str) -> CompiledPolicy:
    """Deny everything, naming why: what decides a tenant whose bundle never loaded
    (never the shared policy, which could allow what its own bundle would not)."""
    return deny_all_policy(
        "unavailable", f"the policy bundle for tenant {tenant!r} is unavailable: {why}"
    )
