"""The evaluator: ``decide(compiled, call, now) -> Decision``. Pure: no I/O, no clock.

Precedence is DESIGN.md §3's deny > approval_needed > sanitize > allow, whatever
the order of the rules; a call no rule permits gets the policy's default
outcome (deny unless a policy says otherwise). Within an effect, source order
picks the deciding rule: the first matching deny or approval rule decides, all
matching sanitize rules combine their redactions. Redactions also ride along
with approval_needed, so the call that is finally approved goes out sanitized.

Shadow rules are evaluated beside the live ones: the live outcome comes from
enforce rules only; when enforce + shadow would decide differently, the
Decision carries that would-be outcome in ``shadow`` and nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aegis.core.call import Params, ToolCall
from aegis.core.decision import Decision, Outcome, Redaction, ShadowResult, new_decision_id
from aegis.errors import ErrorCode
from aegis.policy.compiled import Candidates, CompiledPolicy, CompiledRule


@dataclass(frozen=True, slots=True)
class _Verdict:
    outcome: Outcome
    deciding: tuple[CompiledRule, ...]
    sanitizers: tuple[CompiledRule, ...]


def _evaluate(c: Candidates, call: ToolCall, now: datetime) -> _Verdict | None:
    for rule in c.deny:
        if rule.test(call, now):
            return _Verdict(Outcome.DENY, (rule,), ())
    approval = None
    for rule in c.approval:
        if rule.test(call, now):
            approval = rule
            break
    sanitizers = tuple(r for r in c.sanitize if r.test(call, now)) if c.sanitize else ()
    if approval is not None:
        return _Verdict(Outcome.APPROVAL_NEEDED, (approval,), sanitizers)
    if sanitizers:
        return _Verdict(Outcome.SANITIZE, sanitizers, sanitizers)
    for rule in c.allow:
        if rule.test(call, now):
            return _Verdict(Outcome.ALLOW, (rule,), ())
    return None


def _first(*rules: CompiledRule | None) -> CompiledRule | None:
    present = [r for r in rules if r is not None]
    return min(present, key=lambda r: r.order) if present else None


def _merge(live: _Verdict | None, shadow: _Verdict | None) -> _Verdict | None:
    """What enforce + shadow rules decide together, from each set's own verdict.

    Each verdict holds what precedence needs from its set: a deny verdict its
    first deny; otherwise the first approval (if any) and every matching
    sanitizer; an allow verdict its first allow. Merging by precedence, with
    source order between the two sets, equals evaluating the union -- without
    evaluating the enforce rules twice.
    """
    if shadow is None:
        return live
    if live is None:
        return shadow

    def pick(verdict: _Verdict, outcome: Outcome) -> CompiledRule | None:
        return verdict.deciding[0] if verdict.outcome is outcome else None

    deny = _first(pick(live, Outcome.DENY), pick(shadow, Outcome.DENY))
    if deny is not None:
        return _Verdict(Outcome.DENY, (deny,), ())
    sanitizers = tuple(sorted((*live.sanitizers, *shadow.sanitizers), key=lambda r: r.order))
    approval = _first(pick(live, Outcome.APPROVAL_NEEDED), pick(shadow, Outcome.APPROVAL_NEEDED))
    if approval is not None:
        return _Verdict(Outcome.APPROVAL_NEEDED, (approval,), sanitizers)
    if sanitizers:
        return _Verdict(Outcome.SANITIZE, sanitizers, sanitizers)
    allow = _first(pick(live, Outcome.ALLOW), pick(shadow, Outcome.ALLOW))
    assert allow is not None  # both verdicts exist and neither denies, asks or sanitizes
    return _Verdict(Outcome.ALLOW, (allow,), ())


def decide(
    policy: CompiledPolicy, call: ToolCall, now: datetime, *, decision_id: str | None = None
) -> Decision:
    """Decide one call. ``now`` must be timezone-aware (time windows use it)."""
    if now.tzinfo is None:
        # A naive time would be read as the host's local zone: refuse, do not guess.
        raise ValueError("decide() needs a timezone-aware 'now'")
    kind = policy.kind_of(call)
    cands = policy.candidates(call.tenant, call.tool, call.phase, kind)
    verdict = _evaluate(cands, call, now)
    shadow: ShadowResult | None = None
    if cands.shadow is not None:
        would = _merge(verdict, _evaluate(cands.shadow, call, now))
        would_outcome = would.outcome if would else policy.defaults.outcome
        live_outcome = verdict.outcome if verdict else policy.defaults.outcome
        if would_outcome is not live_outcome:
            shadow = ShadowResult(
                outcome=would_outcome,
                rule_ids=tuple(r.id for r in would.deciding) if would else (),
                reason=would.deciding[0].reason if would else policy.defaults.reason,
            )
    return _build_decision(policy, call, verdict, shadow, decision_id or new_decision_id(now))


_CODES = {
    Outcome.DENY: ErrorCode.DECISION_DENIED_BY_RULE,
    Outcome.APPROVAL_NEEDED: ErrorCode.DECISION_APPROVAL_REQUIRED,
    Outcome.SANITIZE: ErrorCode.DECISION_SANITIZED,
    Outcome.ALLOW: ErrorCode.DECISION_ALLOWED,
}
_DEFAULT_CODES = {
    Outcome.DENY: ErrorCode.DECISION_DEFAULT_DENY,
    Outcome.APPROVAL_NEEDED: ErrorCode.DECISION_APPROVAL_REQUIRED,
    Outcome.ALLOW: ErrorCode.DECISION_DEFAULT_ALLOW,
}


def _build_decision(
    policy: CompiledPolicy,
    call: ToolCall,
    verdict: _Verdict | None,
    shadow: ShadowResult | None,
    decision_id: str,
) -> Decision:
    if verdict is None:
        d = policy.defaults
        return Decision(
            outcome=d.outcome,
            reason=d.reason,
            code=_DEFAULT_CODES[d.outcome],
            rule_ids=(),
            policy_version=policy.version,
            bundle_hash=policy.bundle_hash,
            decision_id=decision_id,
            approval=d.approval if d.outcome is Outcome.APPROVAL_NEEDED else None,
            shadow=shadow,
        )
    redactions: tuple[Redaction, ...] = ()
    sanitized: Params | None = None
    if verdict.sanitizers:
        sanitized, redactions = policy.redactor_for(verdict.sanitizers).apply(call.params)
    first = verdict.deciding[0]
    deciding = verdict.deciding
    rule_ids = deciding[0].ids if len(deciding) == 1 else tuple(r.id for r in deciding)
    if verdict.outcome is Outcome.APPROVAL_NEEDED and verdict.sanitizers:
        rule_ids += tuple(r.id for r in verdict.sanitizers)
    return Decision(
        outcome=verdict.outcome,
        reason=first.reason,
        code=_CODES[verdict.outcome],
        rule_ids=rule_ids,
        policy_version=policy.version,
        bundle_hash=policy.bundle_hash,
        decision_id=decision_id,
        redactions=redactions,
        sanitized_params=sanitized,
        approval=first.approval if verdict.outcome is Outcome.APPROVAL_NEEDED else None,
        shadow=shadow,
    )


def params_for_record(
    policy: CompiledPolicy, call: ToolCall, now: datetime
) -> tuple[Params, tuple[Redaction, ...]]:
    """The call's params as evidence may hold them: with every applicable enforce
    sanitize rule's redactions applied, whatever the outcome.

    A denied call is not sanitized for forwarding (nothing is forwarded), but
    its parameters still go into audit records and logs: the policy's redaction
    obligations must hold there too (DESIGN.md §6, "redact before recording").
    """
    kind = policy.kind_of(call)
    cands = policy.candidates(call.tenant, call.tool, call.phase, kind)
    sanitizers = tuple(r for r in cands.sanitize if r.test(call, now))
    if not sanitizers:
        return call.params, ()
    return policy.redactor_for(sanitizers).apply(call.params)
