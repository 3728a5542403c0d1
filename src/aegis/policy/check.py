"""The check stage: warnings about rules that cannot do what their author meant.

Warnings never stop a load (``aegis policy validate --strict`` turns them into
failures for CI). Each check is conservative: it warns only when it can show
the problem from the rule text alone, so a warning is worth reading.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from aegis.core.decision import Mode, Outcome
from aegis.errors import ErrorCode
from aegis.policy import model as m
from aegis.policy.compiled import CompiledRule, Defaults, ToolInfo
from aegis.policy.values import glob_matcher, is_glob

Finding = tuple[ErrorCode, str, tuple[Any, ...], str | None]


def run_checks(
    docs: list[m.PolicyDocument],
    rules: list[CompiledRule],
    rule_docs: list[int],
    defaults: Defaults,
    tools: Mapping[str, ToolInfo],
) -> Iterator[Finding]:
    locs = _rule_locs(docs)
    if defaults.outcome is Outcome.ALLOW:
        doc_index = next((i for i, d in enumerate(docs) if d.defaults is not None), 0)
        yield (
            ErrorCode.POLICY_DEFAULT_ALLOW,
            "default outcome is allow: calls no rule covers will pass",
            (doc_index, "defaults", "outcome"),
            None,
        )
    declared_agents = {a.id for doc in docs for a in doc.agents}
    agent_tenants = {a.id: a.tenant for doc in docs for a in doc.agents if a.tenant}
    for rule in rules:
        loc = locs[rule.id]
        yield from _never_fires(rule, loc, tools, agent_tenants)
        yield from _always_allow(rule, loc)
        if tools:
            yield from _unknown_tools(rule, loc, tools)
        if declared_agents:
            yield from _unknown_agents(rule, loc, declared_agents)
    yield from _unreachable(rules, locs)
    del rule_docs  # rules carry their own locations


def _rule_locs(docs: list[m.PolicyDocument]) -> dict[str, tuple[Any, ...]]:
    return {
        rule.id: (d, "rules", r) for d, doc in enumerate(docs) for r, rule in enumerate(doc.rules)
    }


def _numeric_bounds(conds: list[m.Condition]) -> dict[str, tuple[float, bool, float, bool]]:
    """Per param path: (low, low_inclusive, high, high_inclusive) implied by top-level ANDs."""
    bounds: dict[str, tuple[float, bool, float, bool]] = {}
    inf = float("inf")
    for cond in conds:
        if not isinstance(cond, m.ParamCondition):
            continue
        lo, lo_inc, hi, hi_inc = bounds.get(cond.param, (-inf, True, inf, True))
        if cond.gt is not None and cond.gt >= lo:
            lo, lo_inc = float(cond.gt), False
        if cond.gte is not None and cond.gte > lo:
            lo, lo_inc = float(cond.gte), True
        if cond.lt is not None and cond.lt <= hi:
            hi, hi_inc = float(cond.lt), False
        if cond.lte is not None and cond.lte < hi:
            hi, hi_inc = float(cond.lte), True
        bounds[cond.param] = (lo, lo_inc, hi, hi_inc)
    return bounds


def _never_fires(
    rule: CompiledRule,
    loc: tuple[Any, ...],
    tools: Mapping[str, ToolInfo],
    agent_tenants: Mapping[str, str],
) -> Iterator[Finding]:
    model = rule.model
    scope = model.match

    def finding(why: str, where: tuple[Any, ...] = ()) -> Finding:
        return (
            ErrorCode.POLICY_RULE_NEVER_FIRES,
            f"rule {rule.id!r} can never fire: {why}",
            (*loc, *where),
            rule.id,
        )

    for key in ("tenants", "agents", "labels"):
        if getattr(scope, key) == []:
            yield finding(f"match.{key} is empty", ("match", key))
    if scope.tools == []:
        yield finding("match.tools is empty", ("match", "tools"))
    for path, (lo, lo_inc, hi, hi_inc) in _numeric_bounds(model.when).items():
        if lo > hi or (lo == hi and not (lo_inc and hi_inc)):
            yield finding(f"no number satisfies every bound on {path!r}", ("when",))
    for i, cond in enumerate(model.when):
        if isinstance(cond, m.ParamCondition):
            if cond.in_ == []:
                yield finding(f"'in: []' on {cond.param!r}", ("when", i))
            if (
                cond.min_length is not None
                and cond.max_length is not None
                and cond.min_length > cond.max_length
            ):
                yield finding(f"min_length > max_length on {cond.param!r}", ("when", i))
    if scope.kind is not None:
        exact = [t for t in scope.tools if not is_glob(t)]
        if (
            exact
            and all(t in tools and tools[t].kind != scope.kind for t in exact)
            and len(exact) == len(scope.tools)
        ):
            yield finding(
                f"its tools are declared with a kind other than {scope.kind!r}",
                ("match", "kind"),
            )
    if scope.agents and rule.tenants is not None:
        exact_agents = [a for a in scope.agents if not is_glob(a)]
        if (
            exact_agents
            and len(exact_agents) == len(scope.agents)
            and all(
                a in agent_tenants and agent_tenants[a] not in rule.tenants for a in exact_agents
            )
        ):
            yield finding("its agents are declared in other tenants", ("match", "agents"))


def _always_allow(rule: CompiledRule, loc: tuple[Any, ...]) -> Iterator[Finding]:
    scope = rule.model.match
    if (
        rule.effect is Outcome.ALLOW
        and rule.mode is Mode.ENFORCE
        and not rule.model.when
        and "*" in scope.tools
        and scope.agents is None
        and scope.labels is None
    ):
        yield (
            ErrorCode.POLICY_ALWAYS_ALLOW,
            f"rule {rule.id!r} allows every tool for every agent with no condition",
            loc,
            rule.id,
        )


def _unknown_tools(
    rule: CompiledRule, loc: tuple[Any, ...], tools: Mapping[str, ToolInfo]
) -> Iterator[Finding]:
    for i, pattern in enumerate(rule.model.match.tools):
        if pattern == "*":
            continue
        if is_glob(pattern):
            match = glob_matcher(pattern)
            if not any(match(name) for name in tools):
                yield (
                    ErrorCode.POLICY_UNKNOWN_TOOL,
                    f"tool pattern {pattern!r} matches no declared tool",
                    (*loc, "match", "tools", i),
                    rule.id,
                )
        elif pattern not in tools:
            yield (
                ErrorCode.POLICY_UNKNOWN_TOOL,
                f"tool {pattern!r} is not declared in any 'tools' section",
                (*loc, "match", "tools", i),
                rule.id,
            )


def _unknown_agents(
    rule: CompiledRule, loc: tuple[Any, ...], agents: set[str]
) -> Iterator[Finding]:
    for i, agent in enumerate(rule.model.match.agents or ()):
        if not is_glob(agent) and agent not in agents:
            yield (
                ErrorCode.POLICY_UNKNOWN_AGENT,
                f"agent {agent!r} is not declared in any 'agents' section",
                (*loc, "match", "agents", i),
                rule.id,
            )
    for c, cond in enumerate(rule.model.when):
        if isinstance(cond, m.ChainCondition):
            for key in ("parent_in", "root_in", "includes_any", "excludes"):
                for name in getattr(cond.chain, key) or ():
                    if name not in agents:
                        yield (
                            ErrorCode.POLICY_UNKNOWN_AGENT,
                            f"agent {name!r} in chain.{key} is not declared",
                            (*loc, "when", c, "chain", key),
                            rule.id,
                        )


def _covers(deny: CompiledRule, other: CompiledRule) -> bool:
    """True when every call in ``other``'s scope is in ``deny``'s scope."""
    d, o = deny.model.match, other.model.match
    if deny.tenants is not None and (other.tenants is None or not other.tenants <= deny.tenants):
        return False
    if d.agents is not None or d.labels is not None:
        return False
    if d.kind is not None and d.kind != o.kind:
        return False
    if d.phase is not None and d.phase != o.phase:
        return False
    if "*" in d.tools:
        return True
    for pattern in o.tools:
        if is_glob(pattern):
            if pattern not in d.tools:
                return False
        elif not deny.tool_match(pattern):
            return False
    return True


def _unreachable(
    rules: list[CompiledRule], locs: Mapping[str, tuple[Any, ...]]
) -> Iterator[Finding]:
    blanket = [
        r for r in rules if r.effect is Outcome.DENY and r.mode is Mode.ENFORCE and not r.model.when
    ]
    if not blanket:
        return
    for rule in rules:
        if rule.mode is not Mode.ENFORCE:
            continue
        for deny in blanket:
            if deny.order < rule.order and _covers(deny, rule):
                yield (
                    ErrorCode.POLICY_RULE_UNREACHABLE,
                    f"rule {rule.id!r} can never decide: rule {deny.id!r} above it denies "
                    "every call in its scope unconditionally",
                    locs[rule.id],
                    rule.id,
                )
                break
