"""The compiled policy: resolved rules and declarations, and the index over them.

The index answers "which rules could decide a call of tenant T to tool X in
phase P of kind K" -- the candidates, already split by effect and mode and in
source order. It is built per tenant (so another tenant's rules cost nothing)
and memoised per (tenant, tool, phase, kind) key on first sight (so glob rules
cost nothing after the first call either). Evaluation then looks only at the
handful of rules that can apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from aegis.core.call import McpPhase, ToolCall, ToolKind
from aegis.core.decision import ApprovalRequirement, FailMode, Mode, Outcome
from aegis.dlp import Redactor, combine
from aegis.errors import Diagnostic
from aegis.policy import model as m
from aegis.policy.conditions import Predicate

#: Memo entries kept before the memo is cleared. Bounds memory when agents
#: invent tool names (each unknown name is one entry).
MEMO_LIMIT: Final = 100_000

ANY_TENANT: Final = "*"


@dataclass(frozen=True, slots=True)
class SourceRef:
    file: str
    line: int
    column: int


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    id: str
    order: int
    effect: Outcome
    mode: Mode
    reason: str
    tenants: frozenset[str] | None
    agent_match: Callable[[str], bool] | None
    labels: frozenset[str] | None
    tool_match: Callable[[str], bool]
    tool_patterns: tuple[str, ...]
    kind: ToolKind | None
    phase: McpPhase | None
    when: Predicate | None
    redactor: Redactor | None
    approval: ApprovalRequirement | None
    source: SourceRef
    model: m.Rule

    ids: tuple[str, ...]
    """``(id,)``, built once: a Decision's rule_ids when this rule alone decides."""
    test: Predicate
    """Agent and label scope, then ``when``, as one call (tenant, tool, kind and
    phase are settled by the index before a rule is looked at)."""


def rule_test(
    agent_match: Callable[[str], bool] | None, labels: frozenset[str] | None, when: Predicate | None
) -> Predicate:
    """Fuse a rule's remaining scope checks and its condition into one predicate."""
    if agent_match is None and labels is None:
        if when is None:
            return lambda _call, _now: True
        return when
    if labels is None:
        assert agent_match is not None
        if when is None:
            return lambda call, _now: agent_match(call.agent_id)
        return lambda call, now: agent_match(call.agent_id) and when(call, now)

    def test(call: ToolCall, now: datetime) -> bool:
        if agent_match is not None and not agent_match(call.agent_id):
            return False
        if labels.isdisjoint(call.agent_labels):
            return False
        return when is None or when(call, now)

    return test


@dataclass(frozen=True, slots=True)
class Candidates:
    """Rules that may decide one (tenant, tool, phase, kind), by effect, in source order."""

    deny: tuple[CompiledRule, ...]
    approval: tuple[CompiledRule, ...]
    sanitize: tuple[CompiledRule, ...]
    allow: tuple[CompiledRule, ...]
    shadow: Candidates | None  # the shadow-mode rules alone, when any applies


@dataclass(frozen=True, slots=True)
class Defaults:
    outcome: Outcome
    reason: str
    approval: ApprovalRequirement | None
    fail_read: FailMode
    fail_write: FailMode


@dataclass(frozen=True, slots=True)
class ToolInfo:
    kind: ToolKind
    cost: float | None


@dataclass(frozen=True, slots=True)
class Declarations:
    """Limits, budgets, approval caps and tool costs: checked now, enforced by services."""

    limits: tuple[m.LimitDecl, ...] = ()
    budgets: tuple[m.BudgetDecl, ...] = ()
    approval_caps: tuple[m.ApprovalCapDecl, ...] = ()
    agents: tuple[m.AgentDecl, ...] = ()
    tools: tuple[m.ToolDecl, ...] = ()


@dataclass(slots=True)
class _TenantRules:
    exact: dict[str, list[CompiledRule]] = field(default_factory=dict)
    globbed: list[CompiledRule] = field(default_factory=list)


@dataclass(eq=False)
class CompiledPolicy:
    """A compiled policy set. Immutable in meaning; the memo is a cache."""

    version: str
    bundle_hash: str
    rules: tuple[CompiledRule, ...]
    defaults: Defaults
    declarations: Declarations
    warnings: tuple[Diagnostic, ...]
    sources: tuple[str, ...]
    tool_exact: Mapping[str, ToolInfo]
    tool_globs: tuple[tuple[Callable[[str], bool], ToolInfo], ...]
    spawn_graph: Mapping[str, frozenset[str]]
    _by_tenant: dict[str, _TenantRules] = field(default_factory=dict, repr=False)
    _memo: dict[tuple[str, str, McpPhase, ToolKind], Candidates] = field(
        default_factory=dict, repr=False
    )
    _redactors: dict[tuple[int, ...], Redactor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for rule in self.rules:
            tenants = rule.tenants if rule.tenants is not None else (ANY_TENANT,)
            for tenant in tenants:
                bucket = self._by_tenant.setdefault(tenant, _TenantRules())
                for pattern in rule.tool_patterns:
                    if "*" in pattern or "?" in pattern:
                        if rule not in bucket.globbed:
                            bucket.globbed.append(rule)
                    else:
                        bucket.exact.setdefault(pattern, []).append(rule)

    def redactor_for(self, rules: tuple[CompiledRule, ...]) -> Redactor:
        """One redactor for the sanitize rules that matched together (combined once)."""
        if len(rules) == 1 and rules[0].redactor is not None:
            return rules[0].redactor
        key = tuple(r.order for r in rules)
        found = self._redactors.get(key)
        if found is None:
            found = combine([r.redactor for r in rules if r.redactor is not None])
            if len(self._redactors) >= MEMO_LIMIT:
                self._redactors.clear()
            self._redactors[key] = found
        return found

    @property
    def memo_size(self) -> int:
        """Candidate lists cached so far (bounded by MEMO_LIMIT)."""
        return len(self._memo)

    def tool_info(self, tool: str) -> ToolInfo | None:
        info = self.tool_exact.get(tool)
        if info is not None:
            return info
        for match, glob_info in self.tool_globs:
            if match(tool):
                return glob_info
        return None

    def kind_of(self, call: ToolCall) -> ToolKind:
        """The kind rules match on: the policy's declaration wins over the call's
        ``kind``; an undeclared tool takes the call's kind, and is a write when
        the call names none (the riskier kind)."""
        info = self.tool_info(call.tool)
        if info is not None:
            return info.kind
        return call.kind if call.kind is not None else ToolKind.WRITE

    def fail_mode_for(self, call: ToolCall) -> FailMode:
        """What a door answers when it cannot decide this call.

        Only a tool this policy *declares* as a read may fail open: the call's
        own ``kind`` comes from the agent side, and an agent must not talk its
        way into fail-open by labelling a write as a read (DESIGN.md §3).
        """
        info = self.tool_info(call.tool)
        if info is not None and info.kind is ToolKind.READ:
            return self.defaults.fail_read
        return FailMode.CLOSED

    def candidates(self, tenant: str, tool: str, phase: McpPhase, kind: ToolKind) -> Candidates:
        key = (tenant, tool, phase, kind)
        found = self._memo.get(key)
        if found is not None:
            return found
        built = self._build_candidates(tenant, tool, phase, kind)
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = built
        return built

    def _build_candidates(
        self, tenant: str, tool: str, phase: McpPhase, kind: ToolKind
    ) -> Candidates:
        seen: dict[int, CompiledRule] = {}
        for bucket_key in (tenant, ANY_TENANT):
            bucket = self._by_tenant.get(bucket_key)
            if bucket is None:
                continue
            for rule in bucket.exact.get(tool, ()):
                seen[rule.order] = rule
            for rule in bucket.globbed:
                if rule.tool_match(tool):
                    seen[rule.order] = rule
        applicable = [
            r
            for _, r in sorted(seen.items())
            if (r.kind is None or r.kind is kind) and (r.phase is None or r.phase is phase)
        ]
        enforce = [r for r in applicable if r.mode is Mode.ENFORCE]
        shadow = [r for r in applicable if r.mode is Mode.SHADOW]
        return _split(enforce, _split(shadow, None) if shadow else None)


def _split(rules: list[CompiledRule], shadow: Candidates | None) -> Candidates:
    return Candidates(
        deny=tuple(r for r in rules if r.effect is Outcome.DENY),
        approval=tuple(r for r in rules if r.effect is Outcome.APPROVAL_NEEDED),
        sanitize=tuple(r for r in rules if r.effect is Outcome.SANITIZE),
        allow=tuple(r for r in rules if r.effect is Outcome.ALLOW),
        shadow=shadow,
    )
