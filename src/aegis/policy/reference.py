"""A deliberately simple evaluator: linear scan, conditions interpreted from the model.

It shares no evaluation code with the indexed engine (only the meaning of the
primitives: JSON equality, globs, host parsing, redaction), so the property
test that compares the two catches index bugs, specialisation bugs and
precedence bugs alike. It also powers ``aegis policy explain``: every rule gets
a verdict and, when it does not match, the first reason why.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from aegis.core.call import ToolCall, ToolKind
from aegis.core.decision import Mode, Outcome
from aegis.core.paths import MISSING, lookup, parse_path
from aegis.core.regex import compile_re2
from aegis.net import CidrSet, HostSet, load_public_suffix_list, parse_destination
from aegis.policy import model as m
from aegis.policy.compiled import CompiledPolicy, CompiledRule
from aegis.policy.conditions import call_field
from aegis.policy.values import glob_matcher, is_number, json_equal, parse_clock

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class RuleTrace:
    rule_id: str
    effect: str
    mode: str
    matched: bool
    why: str
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    outcome: Outcome
    rule_ids: tuple[str, ...]
    sanitizer_ids: tuple[str, ...]
    shadow_outcome: Outcome
    traces: tuple[RuleTrace, ...]


def _tool_decl(policy: CompiledPolicy, tool: str) -> m.ToolDecl | None:
    """The exact declaration of a tool, else the first glob declaration matching it."""
    for decl in policy.declarations.tools:
        if decl.name == tool:
            return decl
    for decl in policy.declarations.tools:
        if ("*" in decl.name or "?" in decl.name) and glob_matcher(decl.name)(tool):
            return decl
    return None


def _kind(policy: CompiledPolicy, call: ToolCall) -> ToolKind:
    decl = _tool_decl(policy, call.tool)
    if decl is not None:
        return ToolKind(decl.kind)
    return call.kind or ToolKind.WRITE


def _scope(rule: CompiledRule, call: ToolCall, kind: ToolKind) -> str | None:
    s = rule.model.match
    if rule.tenants is not None and call.tenant not in rule.tenants:
        return f"tenant {call.tenant!r} not in {sorted(rule.tenants)}"
    if not any(glob_matcher(t)(call.tool) for t in s.tools):
        return f"tool {call.tool!r} not in {s.tools}"
    if s.kind is not None and s.kind != kind:
        return f"tool kind is {kind}, rule wants {s.kind}"
    if s.phase is not None and s.phase != call.phase:
        return f"phase is {call.phase}, rule wants {s.phase}"
    if s.agents is not None and not any(glob_matcher(a)(call.agent_id) for a in s.agents):
        return f"agent {call.agent_id!r} not in {s.agents}"
    if s.labels is not None and not set(s.labels) & call.agent_labels:
        return f"agent labels {sorted(call.agent_labels)} share none of {s.labels}"
    return None


@cache
def _hosts(patterns: tuple[str, ...]) -> HostSet:
    return HostSet.parse(list(patterns), load_public_suffix_list())


@cache
def _cidrs(blocks: tuple[str, ...]) -> CidrSet:
    return CidrSet.parse(list(blocks))


@cache
def _regex(pattern: str) -> Any:
    return compile_re2(pattern)


def _kind_of_json(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if is_number(v):
        return "number"
    return type(v).__name__


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "gt":
        return bool(a > b)
    if op == "gte":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    return bool(a <= b)


def _value_ok(
    cond: m.ParamCondition | m.DestinationTest, v: object, call: ToolCall | None = None
) -> str | None:
    """None when every operator holds on present value v, else the first failure."""
    fields = cond.model_fields_set
    if isinstance(cond, m.ParamCondition):
        if "eq" in fields and not json_equal(v, cond.eq):
            return f"{v!r} != {cond.eq!r}"
        if "ne" in fields and (
            _kind_of_json(v) != _kind_of_json(cond.ne) or json_equal(v, cond.ne)
        ):
            return f"not ({v!r} ne {cond.ne!r})"
        if cond.in_ is not None and not any(json_equal(v, x) for x in cond.in_):
            return f"{v!r} not in {cond.in_!r}"
        if cond.not_in is not None and (
            _kind_of_json(v) not in {_kind_of_json(x) for x in cond.not_in}
            or any(json_equal(v, x) for x in cond.not_in)
        ):
            return f"not ({v!r} not_in {cond.not_in!r})"
        for op in ("gt", "gte", "lt", "lte"):
            bound = getattr(cond, op)
            if bound is not None and not (is_number(v) and _compare(op, v, bound)):
                return f"not ({v!r} {op} {bound})"
        sized = isinstance(v, str | list | dict)
        if cond.min_length is not None and not (sized and len(v) >= cond.min_length):  # type: ignore[arg-type]
            return f"length below {cond.min_length}"
        if cond.max_length is not None and not (sized and len(v) <= cond.max_length):  # type: ignore[arg-type]
            return f"length above {cond.max_length}"
        if cond.same_as is not None:
            mine = call_field(call, cond.same_as) if call is not None else None
            if not (isinstance(v, str) and mine is not None and v == mine):
                return f"{v!r} is not the call's {cond.same_as} {mine!r}"
        if cond.matches is not None and not (
            isinstance(v, str) and _regex(cond.matches).search(v) is not None
        ):
            return f"does not match /{cond.matches}/"
        if cond.not_matches is not None and not (
            isinstance(v, str) and _regex(cond.not_matches).search(v) is None
        ):
            return f"matches /{cond.not_matches}/"
    host = parse_destination(v) if isinstance(v, str) else None
    if cond.host_in is not None and not (
        host is not None and _hosts(tuple(cond.host_in)).matches(host)
    ):
        return f"host of {v!r} not in {cond.host_in}"
    if cond.host_not_in is not None and not (
        isinstance(v, str) and (host is None or not _hosts(tuple(cond.host_not_in)).matches(host))
    ):
        return f"host of {v!r} is in {cond.host_not_in}"
    if cond.ip_in is not None and not (
        host is not None and _cidrs(tuple(cond.ip_in)).contains_host(host)
    ):
        return f"{v!r} not in {cond.ip_in}"
    if cond.ip_not_in is not None and not (
        isinstance(v, str)
        and (host is None or not _cidrs(tuple(cond.ip_not_in)).contains_host(host))
    ):
        return f"{v!r} is in {cond.ip_not_in}"
    if isinstance(cond, m.DestinationTest):
        if cond.scheme_in is not None:
            scheme = v.partition("://")[0].lower() if isinstance(v, str) and "://" in v else ""
            if host is None or scheme not in {s.lower().rstrip(":") for s in cond.scheme_in}:
                return f"scheme {scheme!r} not in {cond.scheme_in}"
        if cond.port_in is not None and not (
            host is not None and host.port is not None and host.port in cond.port_in
        ):
            return f"port not in {cond.port_in}"
    return None


def _check(cond: m.Condition, call: ToolCall, now: datetime, policy: CompiledPolicy) -> str | None:
    """None when the condition holds, else why not."""
    if isinstance(cond, m.ParamCondition):
        v = lookup(call.params, parse_path(cond.param).segments)
        if cond.exists is False:
            # Every operator must hold, and all but "exists: false" fail on a missing value.
            if cond.model_fields_set - {"param", "exists"}:
                return "'exists: false' with other tests never holds"
            return None if v is MISSING else f"{cond.param} exists"
        if v is MISSING:
            return f"{cond.param} is missing"
        why = _value_ok(cond, v, call)
        return f"{cond.param}: {why}" if why else None
    if isinstance(cond, m.DestinationCondition):
        t = cond.destination
        dest = call.destination
        if t.exists is False:
            if t.model_fields_set - {"exists"}:
                return "'exists: false' with other tests never holds"
            return None if dest is None else "destination exists"
        if dest is None:
            return "no destination"
        why = _value_ok(t, dest)
        return f"destination: {why}" if why else None
    if isinstance(cond, m.TimeCondition):
        w = cond.time
        local = now.astimezone(ZoneInfo(w.timezone))
        minute = local.hour * 60 + local.minute
        start, end = parse_clock(w.start), parse_clock(w.end)
        day = local.weekday()
        if start < end:
            inside = start <= minute < end
        elif minute >= start:
            inside = True
        elif minute < end:
            inside, day = True, (day - 1) % 7
        else:
            inside = False
        if not inside:
            return f"{local:%H:%M} outside {w.start}-{w.end} {w.timezone}"
        if w.days and _DAYS[day] not in w.days:
            return f"{_DAYS[day]} not in {w.days}"
        return None
    if isinstance(cond, m.ChainCondition):
        c = cond.chain
        chain = call.parent_chain
        if c.parent_in is not None and not (chain and chain[-1] in c.parent_in):
            return f"parent {chain[-1] if chain else None!r} not in {c.parent_in}"
        if c.root_in is not None and not (chain and chain[0] in c.root_in):
            return f"root {chain[0] if chain else None!r} not in {c.root_in}"
        if c.includes_any is not None and not any(a in c.includes_any for a in chain):
            return f"no ancestor in {c.includes_any}"
        if c.excludes is not None and any(a in c.excludes for a in chain):
            return f"an ancestor is in {c.excludes}"
        if c.depth_lte is not None and not len(chain) <= c.depth_lte:
            return f"depth {len(chain)} > {c.depth_lte}"
        if c.depth_gte is not None and not len(chain) >= c.depth_gte:
            return f"depth {len(chain)} < {c.depth_gte}"
        if c.follows_spawn_graph is not None:
            hops = [*chain, call.agent_id]
            graph = policy.spawn_graph
            ok = all(
                parent in graph and child in graph[parent]
                for parent, child in itertools.pairwise(hops)
            )
            if ok != c.follows_spawn_graph:
                return "chain follows the spawn graph" if ok else "chain breaks the spawn graph"
        return None
    if isinstance(cond, m.CostCondition):
        cost = call.cost_estimate
        if cost is None:  # fall back to the declared cost of the tool
            decl = _tool_decl(policy, call.tool)
            cost = float(decl.cost) if decl is not None and decl.cost is not None else None
        if cost is None:
            return "no cost estimate and no declared tool cost"
        for op, bound in (
            ("gt", cond.cost.gt),
            ("gte", cond.cost.gte),
            ("lt", cond.cost.lt),
            ("lte", cond.cost.lte),
        ):
            if bound is None:
                continue
            ok = {
                "gt": cost > bound,
                "gte": cost >= bound,
                "lt": cost < bound,
                "lte": cost <= bound,
            }[op]
            if not ok:
                return f"cost {cost} not {op} {bound}"
        return None
    if isinstance(cond, m.AnyCondition):
        whys = [_check(c, call, now, policy) for c in cond.any]
        return (
            None
            if any(w is None for w in whys)
            else "none of 'any' holds: " + "; ".join(str(w) for w in whys)
        )
    if isinstance(cond, m.AllCondition):
        for sub in cond.all:
            why = _check(sub, call, now, policy)
            if why:
                return why
        return None
    return "'not' condition holds inside" if _check(cond.not_, call, now, policy) is None else None


def _rule_why(
    policy: CompiledPolicy, rule: CompiledRule, call: ToolCall, now: datetime, kind: ToolKind
) -> str | None:
    why = _scope(rule, call, kind)
    if why:
        return why
    for i, cond in enumerate(rule.model.when):
        why = _check(cond, call, now, policy)
        if why:
            return f"when[{i}]: {why}"
    return None


def _pick(matched: list[CompiledRule]) -> tuple[Outcome, tuple[str, ...], tuple[str, ...]] | None:
    by = {e: [r for r in matched if r.effect is e] for e in Outcome}
    if by[Outcome.DENY]:
        return Outcome.DENY, (by[Outcome.DENY][0].id,), ()
    sanitizers = tuple(r.id for r in by[Outcome.SANITIZE])
    if by[Outcome.APPROVAL_NEEDED]:
        return Outcome.APPROVAL_NEEDED, (by[Outcome.APPROVAL_NEEDED][0].id,), sanitizers
    if sanitizers:
        return Outcome.SANITIZE, sanitizers, sanitizers
    if by[Outcome.ALLOW]:
        return Outcome.ALLOW, (by[Outcome.ALLOW][0].id,), ()
    return None


def reference_evaluate(policy: CompiledPolicy, call: ToolCall, now: datetime) -> ReferenceResult:
    kind = _kind(policy, call)
    traces = []
    matched: list[CompiledRule] = []
    for rule in policy.rules:  # linear scan, in source order, no index
        why = _rule_why(policy, rule, call, now, kind)
        traces.append(
            RuleTrace(
                rule.id,
                str(rule.effect),
                str(rule.mode),
                why is None,
                why or "matched",
                rule.source.file,
                rule.source.line,
            )
        )
        if why is None:
            matched.append(rule)
    live = _pick([r for r in matched if r.mode is Mode.ENFORCE])
    would = _pick(matched)
    default = policy.defaults.outcome
    outcome, ids, sanitizers = live if live else (default, (), ())
    return ReferenceResult(outcome, ids, sanitizers, would[0] if would else default, tuple(traces))
