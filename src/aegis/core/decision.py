"""`Decision`: the core's answer for one ToolCall, with everything DESIGN.md §3 names.

Outcomes rank deny > approval_needed > sanitize > allow. A Decision never carries
a secret value: redactions name the field path and the detector, and the
sanitized params hold the replacement markers, not what they replaced.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from aegis.core.call import Params
from aegis.errors import ErrorCode


class Outcome(StrEnum):
    ALLOW = "allow"
    SANITIZE = "sanitize"
    APPROVAL_NEEDED = "approval_needed"
    DENY = "deny"

    @property
    def rank(self) -> int:
        """Higher wins (DESIGN.md §3 precedence)."""
        return _RANK[self]

    @property
    def permits(self) -> bool:
        """True when the call may proceed now (possibly rewritten)."""
        return self is Outcome.ALLOW or self is Outcome.SANITIZE


_RANK = {Outcome.ALLOW: 0, Outcome.SANITIZE: 1, Outcome.APPROVAL_NEEDED: 2, Outcome.DENY: 3}


class Mode(StrEnum):
    """Per-rule (and later per-bundle) mode: enforce, or only record what would happen."""

    ENFORCE = "enforce"
    SHADOW = "shadow"


class FailMode(StrEnum):
    """What a door answers when it could not decide (DESIGN.md §3 fail modes)."""

    CLOSED = "closed"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class Redaction:
    """One redacted span or field: where (a params path) and why (detector or "field")."""

    path: str
    detector: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "detector": self.detector}


@dataclass(frozen=True, slots=True)
class ApprovalRequirement:
    """Who must approve an approval_needed call, where to ask, and how long it may wait."""

    group: str
    channel: str | None
    ttl_seconds: int
    rule_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "channel": self.channel,
            "ttl_seconds": self.ttl_seconds,
            "rule_id": self.rule_id,
        }


@dataclass(frozen=True, slots=True)
class ShadowResult:
    """What shadow rules -- or another policy version in rollout -- would have
    decided, recorded only when it differs from live.

    ``policy_version`` and ``bundle_hash`` are set when the would-be outcome
    comes from another version (a candidate bundle in shadow or canary, or the
    active one beside a canary); they are None for shadow rules of the policy
    that decided.
    """

    outcome: Outcome
    rule_ids: tuple[str, ...]
    reason: str
    policy_version: str | None = None
    bundle_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "outcome": str(self.outcome),
            "rule_ids": list(self.rule_ids),
            "reason": self.reason,
        }
        if self.policy_version is not None:
            out["policy_version"] = self.policy_version
            out["bundle_hash"] = self.bundle_hash
        return out


class Decision(NamedTuple):
    """The core's answer. ``code`` is the stable reason code (``decision.*``).

    A NamedTuple rather than a frozen dataclass: it is built once per call on
    the hot path, and tuple construction costs a third of frozen-dataclass
    ``__init__`` (which sets each field through ``object.__setattr__``).
    """

    outcome: Outcome
    reason: str
    code: ErrorCode
    rule_ids: tuple[str, ...]
    policy_version: str
    bundle_hash: str
    decision_id: str
    redactions: tuple[Redaction, ...] = ()
    sanitized_params: Params | None = None
    approval: ApprovalRequirement | None = None
    retry_after: float | None = None
    shadow: ShadowResult | None = None
    approval_id: str | None = None

    @property
    def permits(self) -> bool:
        return self.outcome.permits

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the body every door returns (DESIGN.md §3 error model)."""
        return {
            "decision_id": self.decision_id,
            "outcome": str(self.outcome),
            "code": str(self.code),
            "reason": self.reason,
            "rule_ids": list(self.rule_ids),
            "policy_version": self.policy_version,
            "bundle_hash": self.bundle_hash,
            "redactions": [r.to_dict() for r in self.redactions],
            "sanitized_params": self.sanitized_params,
            "approval": self.approval.to_dict() if self.approval else None,
            "retry_after": self.retry_after,
            "shadow": self.shadow.to_dict() if self.shadow else None,
            "approval_id": self.approval_id,
        }

    def error_body(self) -> dict[str, Any]:
        """The one error body every door returns for a call it does not let through
        (DESIGN.md §3): a PolicyViolation with its stable code."""
        return {
            "error": {
                "type": "PolicyViolation",
                "code": str(self.code),
                "outcome": str(self.outcome),
                "reason": self.reason,
                "rule_ids": list(self.rule_ids),
                "policy_version": self.policy_version,
                "bundle_hash": self.bundle_hash,
                "decision_id": self.decision_id,
                "approval_id": self.approval_id,
                "retry_after": self.retry_after,
            }
        }


def new_decision_id(now: datetime, rng: random.Random | None = None) -> str:
    """A UUIDv7 (RFC 9562 §5.7): unix-ms timestamp then 74 random bits.

    Time-ordered so audit stores index well.
    """
    ms = int(now.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
    # The stdlib's shared PRNG: ids need uniqueness across replicas, not secrecy.
    bits = rng.getrandbits(74) if rng is not None else random.getrandbits(74)
    # Layout: unix_ts_ms(48) | ver=7(4) | rand_a(12) | var=0b10(2) | rand_b(62).
    return (
        f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7{bits >> 62:03x}-"
        f"{0x8000 | ((bits >> 48) & 0x3FFF):04x}-{bits & 0xFFFF_FFFF_FFFF:012x}"
    )
