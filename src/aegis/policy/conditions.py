"""The resolve stage for conditions: model objects to specialised predicates.

Each condition becomes a closure ``(call, now) -> bool`` with everything that
can be done ahead of time done here: paths split, regexes compiled by RE2, host
patterns canonicalised by the WHATWG host parser, CIDRs parsed, time windows
turned into minutes. Errors are reported through :class:`Resolver` with the
model path of the offending value, so the compiler can locate them in the file.

Semantics (shared with the reference evaluator and docs/policy-language.md):
a missing value fails every test except ``exists: false``; a value of the
wrong type fails the test (``ne`` and ``not_in`` included -- a negative test
never passes by accident on a value it cannot judge).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aegis.core.call import ToolCall
from aegis.core.paths import MISSING, PathSyntaxError, lookup, parse_path
from aegis.core.regex import compile_test
from aegis.errors import Diagnostic, ErrorCode, HostPatternError, PatternError, Severity
from aegis.net import CidrSet, Host, HostSet, PublicSuffixList, parse_destination
from aegis.policy import model as m
from aegis.policy.values import is_number, json_equal, parse_clock

Predicate = Callable[[ToolCall, datetime], bool]
ValueTest = Callable[[object], bool]
LocPath = tuple[str | int, ...]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _always(_call: ToolCall, _now: datetime) -> bool:
    return True


@dataclass
class Resolver:
    """Collects resolve-stage diagnostics; ``file`` and ``locate`` place them."""

    psl: PublicSuffixList
    spawn_graph: Mapping[str, frozenset[str]]
    tool_cost: Callable[[str], float | None]
    diagnostics: list[tuple[ErrorCode, str, LocPath, Severity]] = field(default_factory=list)

    def error(self, code: ErrorCode, message: str, loc: LocPath) -> None:
        self.diagnostics.append((code, message, loc, Severity.ERROR))

    def warn(self, code: ErrorCode, message: str, loc: LocPath) -> None:
        self.diagnostics.append((code, message, loc, Severity.WARNING))

    # -- building blocks -------------------------------------------------------

    def regex(self, pattern: str, loc: LocPath) -> Callable[[str], bool] | None:
        try:
            return compile_test(pattern)
        except PatternError as exc:
            self.error(exc.code, exc.message, loc)
            return None

    def hosts(self, patterns: list[str], loc: LocPath) -> HostSet | None:
        try:
            return HostSet.parse(patterns, self.psl)
        except HostPatternError as exc:
            index = getattr(exc, "index", None)
            self.error(exc.code, exc.message, (*loc, index) if index is not None else loc)
            return None

    def cidrs(self, blocks: list[str], loc: LocPath) -> CidrSet | None:
        try:
            return CidrSet.parse(blocks)
        except HostPatternError as exc:
            index = getattr(exc, "index", None)
            self.error(exc.code, exc.message, (*loc, index) if index is not None else loc)
            return None

    # -- conditions ------------------------------------------------------------

    def conditions(self, conds: list[m.Condition], loc: LocPath) -> Predicate:
        preds = [self.condition(c, (*loc, i)) for i, c in enumerate(conds)]
        preds = [p for p in preds if p is not _always]
        if not preds:
            return _always
        if len(preds) == 1:
            return preds[0]
        if len(preds) == 2:
            a, b = preds
            return lambda call, now: a(call, now) and b(call, now)
        frozen = tuple(preds)
        return lambda call, now: all(p(call, now) for p in frozen)

    def condition(self, cond: m.Condition, loc: LocPath) -> Predicate:
        if isinstance(cond, m.ParamCondition):
            return self.param(cond, loc)
        if isinstance(cond, m.DestinationCondition):
            return self.destination(cond.destination, (*loc, "destination"))
        if isinstance(cond, m.TimeCondition):
            return self.time(cond.time, (*loc, "time"))
        if isinstance(cond, m.ChainCondition):
            return self.chain(cond.chain, (*loc, "chain"))
        if isinstance(cond, m.CostCondition):
            return self.cost(cond.cost, (*loc, "cost"))
        if isinstance(cond, m.AnyCondition):
            preds = tuple(self.condition(c, (*loc, "any", i)) for i, c in enumerate(cond.any))
            return lambda call, now: any(p(call, now) for p in preds)
        if isinstance(cond, m.AllCondition):
            return self.conditions(cond.all, (*loc, "all"))
        inner = self.condition(cond.not_, (*loc, "not"))
        return lambda call, now: not inner(call, now)

    def value_tests(
        self, cond: m.ParamCondition | m.DestinationTest, loc: LocPath
    ) -> list[ValueTest]:
        """Tests on a present value, one per operator written."""
        tests: list[ValueTest] = []
        fields = cond.model_fields_set
        if isinstance(cond, m.ParamCondition):
            tests.extend(self._comparisons(cond, fields, loc))
        host_in = getattr(cond, "host_in", None)
        if host_in is not None:
            hs = self.hosts(host_in, (*loc, "host_in"))
            if hs is not None:
                tests.append(_host_in(hs))
        host_not_in = getattr(cond, "host_not_in", None)
        if host_not_in is not None:
            hs = self.hosts(host_not_in, (*loc, "host_not_in"))
            if hs is not None:
                tests.append(_host_not_in(hs))
        if cond.ip_in is not None:
            cs = self.cidrs(cond.ip_in, (*loc, "ip_in"))
            if cs is not None:
                tests.append(_ip_in(cs))
        if cond.ip_not_in is not None:
            cs = self.cidrs(cond.ip_not_in, (*loc, "ip_not_in"))
            if cs is not None:
                tests.append(_ip_not_in(cs))
        return tests

    def _comparisons(
        self, cond: m.ParamCondition, fields: set[str], loc: LocPath
    ) -> list[ValueTest]:
        tests: list[ValueTest] = []
        if "eq" in fields:
            want = cond.eq
            tests.append(lambda v: json_equal(v, want))
        if "ne" in fields:
            other = cond.ne
            # "Not equal" only judges a value of the same JSON type (module doc).
            tests.append(lambda v: _same_type(v, other) and not json_equal(v, other))
        if cond.in_ is not None:
            tests.append(_in_test(cond.in_))
        if cond.not_in is not None:
            inner = _in_test(cond.not_in)
            kinds = {_json_kind(x) for x in cond.not_in}
            tests.append(lambda v: _json_kind(v) in kinds and not inner(v))
        for op in ("gt", "gte", "lt", "lte"):
            bound = getattr(cond, op)
            if bound is not None:
                tests.append(_numeric(op, bound))
        if cond.min_length is not None:
            lo = cond.min_length
            tests.append(lambda v: isinstance(v, str | list | dict) and len(v) >= lo)
        if cond.max_length is not None:
            hi = cond.max_length
            tests.append(lambda v: isinstance(v, str | list | dict) and len(v) <= hi)
        if cond.matches is not None:
            found = self.regex(cond.matches, (*loc, "matches"))
            if found is not None:
                tests.append(lambda v: isinstance(v, str) and found(v))
        if cond.not_matches is not None:
            absent = self.regex(cond.not_matches, (*loc, "not_matches"))
            if absent is not None:
                tests.append(lambda v: isinstance(v, str) and not absent(v))
        return tests

    def param(self, cond: m.ParamCondition, loc: LocPath) -> Predicate:
        pred = self._param(cond, loc)
        if cond.same_as is None or pred is _always:
            return pred
        attr = cond.same_as
        try:
            segs = parse_path(cond.param).segments
        except PathSyntaxError:
            return pred

        def same(call: ToolCall, now: datetime) -> bool:
            mine = call_field(call, attr)
            return mine is not None and lookup(call.params, segs) == mine and pred(call, now)

        return same

    def _param(self, cond: m.ParamCondition, loc: LocPath) -> Predicate:
        try:
            path = parse_path(cond.param)
        except PathSyntaxError as exc:
            self.error(ErrorCode.POLICY_INVALID_PATH, f"{cond.param!r}: {exc}", (*loc, "param"))
            return _always
        if path.has_wildcard:
            self.error(
                ErrorCode.POLICY_INVALID_PATH,
                f"{cond.param!r}: wildcards are only allowed in sanitize paths",
                (*loc, "param"),
            )
            return _always
        errors_before = len(self.diagnostics)
        tests = self.value_tests(cond, loc)
        exists = cond.exists
        if cond.same_as is not None:
            tests.append(lambda v: isinstance(v, str))
        if len(self.diagnostics) > errors_before:
            return _always  # an operator failed to resolve; it is already reported
        if not tests and exists is None:
            self.error(
                ErrorCode.POLICY_INVALID_OPERATOR,
                f"condition on {cond.param!r} has no operator",
                loc,
            )
            return _always
        if exists is False and tests:
            self.warn(
                ErrorCode.POLICY_RULE_NEVER_FIRES,
                f"'exists: false' with other tests on {cond.param!r} can never hold",
                loc,
            )
        segs = path.segments
        if len(segs) == 1 and isinstance(segs[0], str):
            key = segs[0]

            def get(call: ToolCall) -> object:
                return call.params.get(key, MISSING)
        else:

            def get(call: ToolCall) -> object:
                return lookup(call.params, segs)

        return _value_predicate(get, tests, exists)

    def destination(self, test: m.DestinationTest, loc: LocPath) -> Predicate:
        errors_before = len(self.diagnostics)
        tests = self.value_tests(test, loc)
        if len(self.diagnostics) > errors_before:
            return _always
        if test.scheme_in is not None:
            schemes = frozenset(s.lower().rstrip(":") for s in test.scheme_in)
            # The scheme counts only for a destination the host parser accepts.
            tests.append(
                lambda v: (
                    isinstance(v, str) and _host_of(v) is not None and url_scheme(v) in schemes
                )
            )
        if test.port_in is not None:
            ports = frozenset(test.port_in)
            tests.append(lambda v: _port_in(v, ports))
        if not tests and test.exists is None:
            self.error(ErrorCode.POLICY_INVALID_OPERATOR, "destination test has no operator", loc)
            return _always

        def get(call: ToolCall) -> object:
            return MISSING if call.destination is None else call.destination

        return _value_predicate(get, tests, test.exists)

    def time(self, window: m.TimeWindow, loc: LocPath) -> Predicate:
        zone = start = end = None
        try:
            zone = ZoneInfo(window.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.error(
                ErrorCode.POLICY_INVALID_TIMEZONE,
                f"unknown time zone {window.timezone!r} (use an IANA name such as Europe/Paris)",
                (*loc, "timezone"),
            )
        try:
            start = parse_clock(window.start)
        except ValueError as exc:
            self.error(ErrorCode.POLICY_INVALID_TIME_WINDOW, str(exc), (*loc, "start"))
        try:
            end = parse_clock(window.end)
        except ValueError as exc:
            self.error(ErrorCode.POLICY_INVALID_TIME_WINDOW, str(exc), (*loc, "end"))
        if zone is None or start is None or end is None:
            return _always
        if start == end:
            self.error(
                ErrorCode.POLICY_INVALID_TIME_WINDOW, "start and end are equal: empty window", loc
            )
            return _always
        days = frozenset(WEEKDAYS.index(d) for d in window.days) if window.days else None
        return _time_predicate(zone, start, end, days)

    def chain(self, test: m.ChainTest, loc: LocPath) -> Predicate:
        preds: list[Callable[[ToolCall], bool]] = []
        if test.parent_in is not None:
            parents = frozenset(test.parent_in)
            preds.append(lambda c: bool(c.parent_chain) and c.parent_chain[-1] in parents)
        if test.root_in is not None:
            roots = frozenset(test.root_in)
            preds.append(lambda c: bool(c.parent_chain) and c.parent_chain[0] in roots)
        if test.includes_any is not None:
            some = frozenset(test.includes_any)
            preds.append(lambda c: not some.isdisjoint(c.parent_chain))
        if test.excludes is not None:
            none_of = frozenset(test.excludes)
            preds.append(lambda c: none_of.isdisjoint(c.parent_chain))
        if test.depth_lte is not None:
            hi = test.depth_lte
            preds.append(lambda c: len(c.parent_chain) <= hi)
        if test.depth_gte is not None:
            lo = test.depth_gte
            preds.append(lambda c: len(c.parent_chain) >= lo)
        if test.follows_spawn_graph is not None:
            want = test.follows_spawn_graph
            graph = self.spawn_graph
            preds.append(lambda c: follows_spawn_graph(c, graph) is want)
        if not preds:
            self.error(ErrorCode.POLICY_INVALID_OPERATOR, "chain test has no operator", loc)
            return _always
        frozen = tuple(preds)
        return lambda call, _now: all(p(call) for p in frozen)

    def cost(self, test: m.CostTest, loc: LocPath) -> Predicate:
        tests = [
            _numeric(op, getattr(test, op))
            for op in ("gt", "gte", "lt", "lte")
            if getattr(test, op) is not None
        ]
        if not tests:
            self.error(ErrorCode.POLICY_INVALID_OPERATOR, "cost test has no operator", loc)
            return _always
        frozen = tuple(tests)
        tool_cost = self.tool_cost

        def pred(call: ToolCall, _now: datetime) -> bool:
            # The caller's estimate, else the cost the policy declares for the tool.
            cost = call.cost_estimate if call.cost_estimate is not None else tool_cost(call.tool)
            return cost is not None and all(t(cost) for t in frozen)

        return pred


# -- shared semantics, used by the reference evaluator too -----------------------


def call_field(call: ToolCall, name: str) -> str | None:
    """The call's own identity fields that ``same_as`` may compare with; "" is absent."""
    value = call.parent_agent_id if name == "parent_agent_id" else getattr(call, name)
    return value or None


def follows_spawn_graph(call: ToolCall, graph: Mapping[str, frozenset[str]]) -> bool:
    """True when every hop of root -> ... -> parent -> agent is a declared may_spawn edge."""
    hops = (*call.parent_chain, call.agent_id)
    for parent, child in itertools.pairwise(hops):
        allowed = graph.get(parent)
        if allowed is None or child not in allowed:
            return False
    return True


def _never(_call: ToolCall, _now: datetime) -> bool:
    return False


def _value_predicate(
    get: Callable[[ToolCall], object], tests: list[ValueTest], exists: bool | None
) -> Predicate:
    if exists is False:
        # Every operator must hold, and the others all fail on a missing value.
        return _never if tests else lambda call, _now: get(call) is MISSING
    if len(tests) == 1:
        (test,) = tests
        return lambda call, _now: (v := get(call)) is not MISSING and test(v)
    if len(tests) == 2:  # ranges (gt + lte) are the common pair; avoid all()'s generator
        t1, t2 = tests
        return lambda call, _now: (v := get(call)) is not MISSING and t1(v) and t2(v)
    frozen = tuple(tests)

    def pred(call: ToolCall, _now: datetime) -> bool:
        v = get(call)
        if v is MISSING:
            return False
        return all(t(v) for t in frozen)

    return pred


def _json_kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if is_number(v):
        return "number"
    if isinstance(v, str):
        return "string"
    if v is None:
        return "null"
    if isinstance(v, list):
        return "array"
    return "object"


def _same_type(a: object, b: object) -> bool:
    return _json_kind(a) == _json_kind(b)


def _in_test(values: list[Any]) -> ValueTest:
    # Strings (the common case: channel names, envs) get a set lookup; the rest
    # fall back to JSON equality, which keeps True distinct from 1.
    strings = frozenset(v for v in values if isinstance(v, str))
    others = tuple(v for v in values if not isinstance(v, str))
    if not others:
        return lambda v: isinstance(v, str) and v in strings
    return lambda v: (isinstance(v, str) and v in strings) or any(json_equal(v, o) for o in others)


def _numeric(op: str, bound: float) -> ValueTest:
    # ``type(v) is int`` rather than isinstance: it excludes bool (a subclass of
    # int that JSON keeps distinct) and is the cheapest test on the hot path.
    if op == "gt":
        return lambda v: (type(v) is int or type(v) is float) and v > bound
    if op == "gte":
        return lambda v: (type(v) is int or type(v) is float) and v >= bound
    if op == "lt":
        return lambda v: (type(v) is int or type(v) is float) and v < bound
    return lambda v: (type(v) is int or type(v) is float) and v <= bound


def _host_of(v: object) -> Host | None:
    return parse_destination(v) if isinstance(v, str) else None


def _host_in(hs: HostSet) -> ValueTest:
    def test(v: object) -> bool:
        host = _host_of(v)
        return host is not None and hs.matches(host)

    return test


def _host_not_in(hs: HostSet) -> ValueTest:
    # An unparseable host is in no set, so it *is* "not in" the set: a deny rule
    # "host_not_in allowlist" must catch what the parser refused.
    def test(v: object) -> bool:
        if not isinstance(v, str):
            return False
        host = parse_destination(v)
        return host is None or not hs.matches(host)

    return test


def _ip_in(cs: CidrSet) -> ValueTest:
    def test(v: object) -> bool:
        host = _host_of(v)
        return host is not None and cs.contains_host(host)

    return test


def _ip_not_in(cs: CidrSet) -> ValueTest:
    def test(v: object) -> bool:
        if not isinstance(v, str):
            return False
        host = parse_destination(v)
        return host is None or not cs.contains_host(host)

    return test


def url_scheme(v: str) -> str:
    head, sep, _rest = v.partition("://")
    return head.lower() if sep else ""


def _port_in(v: object, ports: frozenset[int]) -> bool:
    host = _host_of(v)
    return host is not None and host.port is not None and host.port in ports


def _time_predicate(zone: ZoneInfo, start: int, end: int, days: frozenset[int] | None) -> Predicate:
    def pred(_call: ToolCall, now: datetime) -> bool:
        local = now.astimezone(zone)
        minute = local.hour * 60 + local.minute
        # A window that wraps midnight: its early-morning part belongs to the
        # previous day's window, so "fri 22:00-06:00" covers Saturday 03:00.
        if start < end:
            inside, day = start <= minute < end, local.weekday()
        elif minute >= start:
            inside, day = True, local.weekday()
        elif minute < end:
            inside, day = True, (local.weekday() - 1) % 7
        else:
            inside, day = False, local.weekday()
        return inside and (days is None or day in days)

    return pred


def diagnostics_to_located(
    resolver: Resolver, locate: Callable[[LocPath], tuple[str, int, int]]
) -> list[Diagnostic]:
    out = []
    for code, message, loc, severity in resolver.diagnostics:
        file, line, col = locate(loc)
        out.append(Diagnostic(code, message, severity, file, line, col))
    return out
