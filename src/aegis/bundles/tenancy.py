"""What a tenant's own bundle may claim, and what decides a tenant whose bundle is missing."""

from __future__ import annotations

import json
from typing import Final

from aegis.bundles.errors import BundleError, BundleErrorCode
from aegis.bundles.verify import LoadedBundle
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.compiler import compile_text

#: The shared policy's slot: tenants without a bundle of their own are decided by it.
SHARED: Final = ""
#: Every tenant bundle's roots lie under ``tenants/<tenant>``.
TENANT_ROOT: Final = "tenants"

_UNAVAILABLE = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {{name: bundle-unavailable, version: unavailable}}
defaults:
  outcome: deny
  reason: {reason}
"""


def _segments(root: str) -> list[str]:
    return [part for part in root.strip("/").split("/") if part]


def check_tenant_bundle(tenant: str, bundle: LoadedBundle) -> None:
    """A tenant's bundle may claim only ``tenants/<tenant>/...`` and scope rules to it.

    OPA refuses bundles whose roots overlap (two bundles would own the same
    data); a tenant bundle rooted anywhere else -- ``""`` claims everything --
    could overlap another tenant's, so it is refused before it could.
    """
    for root in bundle.manifest.roots:
        parts = _segments(root)
        if parts[:2] != [TENANT_ROOT, tenant]:
            raise BundleError(
                BundleErrorCode.ROOTS_OVERLAP,
                f"tenant {tenant!r} bundle root {root!r} is outside {TENANT_ROOT}/{tenant} "
                "and could overlap another tenant's (build it with --root "
                f"{TENANT_ROOT}/{tenant})",
            )
    for rule in bundle.compiled_policy.rules:
        if rule.tenants is not None and rule.tenants != frozenset({tenant}):
            others = ", ".join(sorted(rule.tenants - {tenant})) or "none"
            raise BundleError(
                BundleErrorCode.TENANT_MISMATCH,
                f"rule {rule.id!r} in tenant {tenant!r}'s bundle is scoped to other tenants "
                f"({others}); a tenant's bundle decides only its own calls",
            )


def unavailable_policy(tenant: str, why: str) -> CompiledPolicy:
    """Deny everything, naming why: what decides a tenant whose bundle never loaded
    (never the shared policy, which could allow what its own bundle would not)."""
    reason = f"the policy bundle for tenant {tenant!r} is unavailable: {why}"
    # A JSON string is a valid YAML 1.2 double-quoted scalar.
    return compile_text(_UNAVAILABLE.format(reason=json.dumps(reason)))
