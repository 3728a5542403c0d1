"""A slot's versions: what each accepted bundle is, and the slot that holds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aegis.bundles.history import SlotRecord
from aegis.bundles.layout import Manifest
from aegis.bundles.sources import BundleSource
from aegis.policy.compiled import CompiledPolicy


@dataclass(frozen=True, slots=True, eq=False)
class Version:
    """One accepted bundle. Only the active version and the candidate keep their
    compiled policy in memory (a 5,000-rule policy is ~75 MB); the others keep
    their archive and are loaded -- and verified -- again when promoted or
    rolled back to."""

    id: str  # the policy files' bundle hash ("sha256:<hex>")
    revision: str
    policy_version: str
    rules: int
    manifest: Manifest
    archive: bytes
    origin: str
    loaded_at: str
    compiled: CompiledPolicy | None = None
    #: How long reading, verifying and compiling it took (0 when restored lazily).
    load_seconds: float = 0.0

    @property
    def policy(self) -> CompiledPolicy:
        if self.compiled is None:  # the manager compiles before it serves a version
            raise RuntimeError(f"version {self.id} is not loaded")
        return self.compiled

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "revision": self.revision,
            "policy_version": self.policy_version,
            "rules": self.rules,
            "origin": self.origin,
            "loaded_at": self.loaded_at,
        }


@dataclass(slots=True)
class Slot:
    tenant: str
    source: BundleSource | None
    #: The tenant's policy is its ``tenants/<tenant>`` part of a bundle of several.
    subtree: bool = False
    record: SlotRecord = field(default_factory=SlotRecord)
    versions: dict[str, Version] = field(default_factory=dict)
    failures: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"activated": 0, "candidate": 0, "unchanged": 0, "failed": 0}
    )
    last_error: dict[str, str] | None = None
    last_fetch_at: str | None = None
    last_load_seconds: float | None = None
    unavailable: CompiledPolicy | None = None

    @property
    def active(self) -> Version | None:
        rid = self.record.active
        return self.versions.get(rid) if rid is not None else None

    @property
    def candidate(self) -> Version | None:
        rid = self.record.candidate
        return self.versions.get(rid) if rid is not None else None
