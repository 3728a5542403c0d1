"""Which compiled policy decides a call: one per tenant, with a candidate in rollout.

A :class:`Policies` snapshot maps tenants to a :class:`TenantPolicy` -- the
active version, and optionally a candidate being rolled out -- and falls back
to the shared policy for tenants without their own. A snapshot is immutable:
the pipeline reads it once per call, so a reload that installs a new snapshot
mid-call never mixes two versions in one decision.

Rollout follows DESIGN.md §3 ("shadow mode never changes the live outcome"):

- ``shadow``: the active version decides; the candidate is evaluated beside it
  and, when its outcome differs, the decision carries it in ``shadow`` (with the
  candidate's version), so evidence records and counts the difference.
- ``canary``: a deterministic share of agents (or of calls) is decided by the
  candidate, the rest by the active version; each decision carries the other
  version's outcome in ``shadow`` when the two differ.
- enforce: the candidate becomes the active version (a new snapshot).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from aegis.core.call import ToolCall
from aegis.core.decision import Decision, ShadowResult, new_decision_id
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.engine import decide

#: Canary shares are in basis points (1/100 of a percent): 10,000 is everyone.
BASIS_POINTS: Final = 10_000


class RolloutStage(StrEnum):
    SHADOW = "shadow"
    CANARY = "canary"


class CanaryBy(StrEnum):
    """What a canary share is a share of: agents (sticky) or individual calls."""

    AGENT = "agent"
    CALL = "call"


def canary_bucket(tenant: str, key: str) -> int:
    """A stable bucket in [0, BASIS_POINTS) for ``key`` within ``tenant``.

    BLAKE2b rather than ``hash()``: Python salts str hashes per process, and
    every gateway replica must put the same agent in the same bucket.
    """
    digest = hashlib.blake2b(f"{tenant}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BASIS_POINTS


@dataclass(frozen=True, slots=True, eq=False)
class Candidate:
    policy: CompiledPolicy
    stage: RolloutStage
    share_bp: int = 0
    by: CanaryBy = CanaryBy.AGENT

    def __post_init__(self) -> None:
        if not 0 <= self.share_bp <= BASIS_POINTS:
            raise ValueError(f"canary share must be 0..{BASIS_POINTS} basis points")


@dataclass(frozen=True, slots=True, eq=False)
class TenantPolicy:
    """A tenant's active version and, while one is rolled out, its candidate."""

    active: CompiledPolicy
    candidate: Candidate | None = None

    def in_canary(self, call: ToolCall, decision_id: str) -> bool:
        c = self.candidate
        if c is None or c.stage is not RolloutStage.CANARY or c.share_bp == 0:
            return False
        key = call.agent_id if c.by is CanaryBy.AGENT else decision_id
        return canary_bucket(call.tenant, key) < c.share_bp

    def decide(self, call: ToolCall, now: datetime) -> tuple[Decision, CompiledPolicy]:
        """The live decision and the version that made it."""
        candidate = self.candidate
        if candidate is None:
            return decide(self.active, call, now), self.active
        decision_id = new_decision_id(now)
        if self.in_canary(call, decision_id):
            live_policy, other = candidate.policy, self.active
        else:
            live_policy, other = self.active, candidate.policy
        live = decide(live_policy, call, now, decision_id=decision_id)
        alt = decide(other, call, now, decision_id=decision_id)
        if alt.outcome is not live.outcome:
            # The other version's would-be outcome replaces a rule-level shadow:
            # during a rollout the version comparison is the one being watched.
            live = live._replace(
                shadow=ShadowResult(
                    outcome=alt.outcome,
                    rule_ids=alt.rule_ids,
                    reason=alt.reason,
                    policy_version=other.version,
                    bundle_hash=other.bundle_hash,
                )
            )
        return live, live_policy


@dataclass(frozen=True, slots=True, eq=False)
class Policies:
    """An immutable snapshot: the shared policy and every tenant's own."""

    shared: TenantPolicy
    tenants: Mapping[str, TenantPolicy] = field(default_factory=dict)

    @classmethod
    def single(cls, policy: CompiledPolicy) -> Policies:
        return cls(TenantPolicy(policy))

    def route(self, tenant: str) -> TenantPolicy:
        """The tenant's own policy, or the shared one when it has none."""
        return self.tenants.get(tenant, self.shared)
