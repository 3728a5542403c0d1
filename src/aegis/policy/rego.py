"""Export a compiled policy as a Rego module (``package aegis``).

The module decides ``data.aegis.decision`` = ``{"outcome", "rule_ids",
"sanitizer_ids", "shadow_outcome"}`` for the input built by :func:`rego_input`.
Facts Rego cannot compute faithfully (the tool kind from the policy's
declarations, the tool's declared cost, the call's identity fields) are
computed in Python and passed in the input. Redactions are not computed in
Rego: the DLP detectors run outside it, from ``sanitizer_ids``.

What the exporter cannot translate is listed in :attr:`RegoExport.unsupported`
and the rule is left out of the module, never silently changed. See
docs/rego-export.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aegis.core.call import ToolCall
from aegis.core.paths import WILDCARD, parse_path
from aegis.policy import model as m
from aegis.policy.compiled import CompiledPolicy, CompiledRule
from aegis.policy.conditions import call_field

#: regorus refuses source lines wider than 1024 columns (tab included).
_MAX_LINE = 1000
_SAME_AS = ("tenant", "agent_id", "session_id", "parent_agent_id")
# Regex syntax whose meaning is the same in RE2 and regorus' Rust regex: literal
# characters, the basic operators and escaped punctuation. Classes like \d, \w,
# \s, \b and flags differ (Unicode vs ASCII) and are reported as unsupported.
_SAFE_REGEX = re.compile(r"^(?:[A-Za-z0-9 _\-:/@,.^$*+?()|\[\]=#%&~<>'\"!;]|\\[^A-Za-z0-9])*$")


@dataclass(frozen=True, slots=True)
class Unsupported:
    rule_id: str
    construct: str
    reason: str


@dataclass(frozen=True, slots=True)
class RegoExport:
    text: str
    unsupported: tuple[Unsupported, ...]

    @property
    def unsupported_rule_ids(self) -> frozenset[str]:
        return frozenset(u.rule_id for u in self.unsupported)


class _UnsupportedError(Exception):
    def __init__(self, construct: str, reason: str) -> None:
        super().__init__(reason)
        self.construct = construct
        self.reason = reason


def _lit(value: Any) -> str:
    """A JSON value as a Rego literal (JSON is valid Rego term syntax)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _glob_regex(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch.isascii() and ch.isalnum():
            out.append(ch)
        else:
            out.append(f"\\x{{{ord(ch):X}}}")
    return "(?s)^" + "".join(out) + "$"


def _glob_test(pattern: str, subject: str) -> str:
    if "*" not in pattern and "?" not in pattern:
        return f"{subject} == {_lit(pattern)}"
    return f"regex.match({_lit(_glob_regex(pattern))}, {subject})"


def _check_width(body: list[str]) -> None:
    for line in body:
        if len(line) > _MAX_LINE:
            raise _UnsupportedError(
                "long literal", f"a value of {len(line)} characters exceeds regorus' line width"
            )


class _Writer:
    def __init__(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        self.lines: list[str] = []
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.counter}"

    def rule(self, name: str, body: list[str]) -> None:
        _check_width(body)
        if not body:
            self.lines.append(f"{name} := true")
            return
        self.lines.append(f"{name} if {{")
        self.lines.extend(f"\t{b}" for b in body)
        self.lines.append("}")

    def any_of(self, name: str, bodies: list[list[str]]) -> None:
        for body in bodies:
            _check_width(body)
        for body in bodies:
            self.lines.append(f"{name} if {{")
            self.lines.extend(f"\t{b}" for b in body or ["true"])
            self.lines.append("}")

    # -- conditions ---------------------------------------------------------------

    def condition(self, cond: m.Condition) -> str:
        """Emit a helper rule that is true exactly when the condition holds; return its name."""
        name = self.fresh("cond")
        if isinstance(cond, m.ParamCondition):
            self.param(name, cond)
        elif isinstance(cond, m.DestinationCondition):
            t = cond.destination
            others = t.model_fields_set - {"exists"}
            if others:
                raise _UnsupportedError(
                    f"destination.{sorted(others)[0]}",
                    "host, IP, scheme and port tests need WHATWG URL parsing and the "
                    "public suffix list, which Rego does not have",
                )
            if t.exists is False:
                self.rule(name, ["not input.call.destination"])
            else:
                self.rule(name, ["_ = input.call.destination"])
        elif isinstance(cond, m.TimeCondition):
            raise _UnsupportedError("time", "time windows are not exported yet")
        elif isinstance(cond, m.ChainCondition):
            self.chain(name, cond.chain)
        elif isinstance(cond, m.CostCondition):
            body = ["cost := _cost", "is_number(cost)"]
            for op, sym in (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")):
                bound = getattr(cond.cost, op)
                if bound is not None:
                    body.append(f"cost {sym} {_lit(bound)}")
            self.rule(name, body)
        elif isinstance(cond, m.AnyCondition):
            subs = [self.condition(c) for c in cond.any]
            self.any_of(name, [[s] for s in subs])
        elif isinstance(cond, m.AllCondition):
            subs = [self.condition(c) for c in cond.all]
            self.rule(name, subs)
        else:
            sub = self.condition(cond.not_)
            self.rule(name, [f"not {sub}"])
        return name

    def param(self, name: str, cond: m.ParamCondition) -> None:
        segments = parse_path(cond.param).segments
        if WILDCARD in segments:
            raise _UnsupportedError("param wildcard", f"path {cond.param!r} has a '*' segment")
        if any(isinstance(x, int) or str(x).isdigit() for x in segments):
            raise _UnsupportedError(
                "param index",
                f"path {cond.param!r} has a numeric segment; Aegis reads it as a list index "
                "or an object key, which one Rego reference cannot express",
            )
        ref = "input.call.params" + "".join(f"[{_lit(s)}]" for s in segments)
        fields = cond.model_fields_set
        if cond.exists is False:
            if fields - {"param", "exists"}:
                self.rule(name, ["false"])
            else:
                present = self.fresh("present")
                self.rule(present, [f"_ = {ref}"])
                self.rule(name, [f"not {present}"])
            return
        body = [f"v := {ref}"]
        if "eq" in fields:
            body.append(f"v == {_lit(cond.eq)}")
        if "ne" in fields:
            body.append(f"type_name(v) == type_name({_lit(cond.ne)})")
            body.append(f"v != {_lit(cond.ne)}")
        if cond.in_ is not None:
            body.append(f"_member(v, {_lit(cond.in_)})")
        if cond.not_in is not None:
            body.append(f"_member(type_name(v), [type_name(x) | some x in {_lit(cond.not_in)}])")
            body.append(f"not _member(v, {_lit(cond.not_in)})")
        for op, sym in (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")):
            bound = getattr(cond, op)
            if bound is not None:
                body.append("is_number(v)")
                body.append(f"v {sym} {_lit(bound)}")
        if cond.min_length is not None:
            body.extend(["_sized(v)", f"count(v) >= {cond.min_length}"])
        if cond.max_length is not None:
            body.extend(["_sized(v)", f"count(v) <= {cond.max_length}"])
        if cond.same_as is not None:
            body.extend(["is_string(v)", f"v == input.fields[{_lit(cond.same_as)}]"])
        for key, negate in (("matches", False), ("not_matches", True)):
            pattern = getattr(cond, key)
            if pattern is None:
                continue
            if not _SAFE_REGEX.match(pattern) or "(?" in pattern:
                raise _UnsupportedError(
                    key,
                    f"pattern {pattern!r} uses syntax whose meaning may differ between "
                    "RE2 and regorus' regex engine",
                )
            body.append("is_string(v)")
            body.append(("not " if negate else "") + f"regex.match({_lit(pattern)}, v)")
        for key in ("host_in", "host_not_in", "ip_in", "ip_not_in"):
            if getattr(cond, key) is not None:
                raise _UnsupportedError(
                    key, "host and IP tests need WHATWG URL parsing and the public suffix list"
                )
        self.rule(name, body)

    def chain(self, name: str, c: m.ChainTest) -> None:
        body = ["chain := _chain"]
        if c.parent_in is not None:
            body.extend(["count(chain) > 0", f"chain[count(chain) - 1] in {_lit(c.parent_in)}"])
        if c.root_in is not None:
            body.extend(["count(chain) > 0", f"chain[0] in {_lit(c.root_in)}"])
        if c.includes_any is not None:
            body.append(f"_shares(chain, {_lit(c.includes_any)})")
        if c.excludes is not None:
            body.append(f"not _shares(chain, {_lit(c.excludes)})")
        if c.depth_lte is not None:
            body.append(f"count(chain) <= {c.depth_lte}")
        if c.depth_gte is not None:
            body.append(f"count(chain) >= {c.depth_gte}")
        if c.follows_spawn_graph is not None:
            body.append(("" if c.follows_spawn_graph else "not ") + "_follows_spawn_graph")
        self.rule(name, body)

    # -- rules --------------------------------------------------------------------

    def scope(self, rule: CompiledRule) -> list[str]:
        s = rule.model.match
        body: list[str] = []
        if rule.tenants is not None:
            body.append(f"input.call.tenant in {_lit(sorted(rule.tenants))}")
        if not rule.tool_patterns:
            return ["false"]
        tools = self.fresh("tool")
        self.any_of(tools, [[_glob_test(p, "input.call.tool")] for p in rule.tool_patterns])
        body.append(tools)
        if s.kind is not None:
            body.append(f"input.kind == {_lit(s.kind)}")
        if s.phase is not None:
            body.append(f"input.call.phase == {_lit(s.phase)}")
        if s.agents is not None and not s.agents:
            body.append("false")
        elif s.agents is not None:
            agents = self.fresh("agent")
            self.any_of(agents, [[_glob_test(a, "input.call.agent_id")] for a in s.agents])
            body.append(agents)
        if s.labels is not None:
            body.append(f"_shares(_labels, {_lit(sorted(set(s.labels)))})")
        return body


_PRELUDE = """\
package aegis

import rego.v1

_member(v, xs) if {
\tsome x in xs
\tx == v
}

_shares(xs, ys) if {
\tsome x in xs
\tx in ys
}

_sized(v) if is_string(v)

_sized(v) if is_array(v)

_sized(v) if is_object(v)

_chain := object.get(input.call, "parent_chain", [])

_labels := object.get(input.call, "agent_labels", [])

default _cost := null

_cost := input.call.cost_estimate

_cost := input.tool_cost if not input.call.cost_estimate

_hops := array.concat(_chain, [input.call.agent_id])

_broken_hop if {
\tsome i, parent in _hops
\ti + 1 < count(_hops)
\tchild := _hops[i + 1]
\tnot _spawn_graph[parent][child]
}

matched contains [-1, "", "", ""] if false

_follows_spawn_graph if not _broken_hop

_ids(ms, effect) := [m[1] | some m in sort([x | some x in ms; x[2] == effect])]

_verdict(ms) := v if {
\td := _ids(ms, "deny")
\tcount(d) > 0
\tv := {"outcome": "deny", "rule_ids": [d[0]], "sanitizer_ids": []}
} else := v if {
\ta := _ids(ms, "approval_needed")
\tcount(a) > 0
\ts := _ids(ms, "sanitize")
\tv := {"outcome": "approval_needed", "rule_ids": array.concat([a[0]], s), "sanitizer_ids": s}
} else := v if {
\ts := _ids(ms, "sanitize")
\tcount(s) > 0
\tv := {"outcome": "sanitize", "rule_ids": s, "sanitizer_ids": s}
} else := v if {
\tal := _ids(ms, "allow")
\tcount(al) > 0
\tv := {"outcome": "allow", "rule_ids": [al[0]], "sanitizer_ids": []}
} else := {"outcome": _default_outcome, "rule_ids": [], "sanitizer_ids": []}

_live := _verdict({m | some m in matched; m[3] == "enforce"})

_would := _verdict(matched)

decision := {
\t"outcome": _live.outcome,
\t"rule_ids": _live.rule_ids,
\t"sanitizer_ids": _live.sanitizer_ids,
\t"shadow_outcome": _would.outcome,
}
"""


def export_rego(compiled: CompiledPolicy) -> RegoExport:
    """Translate every rule that Rego can express; list the others as unsupported."""
    out = _Writer(compiled)
    unsupported: list[Unsupported] = []
    graph = {parent: sorted(children) for parent, children in compiled.spawn_graph.items()}
    out.lines.append(f"_default_outcome := {_lit(str(compiled.defaults.outcome))}")
    out.lines.append("")
    out.lines.append(
        "_spawn_graph := {"
        + ", ".join(f"{_lit(k)}: {{{', '.join(_lit(c) for c in v)}}}" for k, v in graph.items())
        + "}"
        if graph
        else "_spawn_graph := {}"
    )
    out.lines.append("")
    for rule in compiled.rules:
        mark = (len(out.lines), out.counter)
        try:
            body = out.scope(rule)
            body.extend(out.condition(c) for c in rule.model.when)
        except _UnsupportedError as exc:
            del out.lines[mark[0] :]
            unsupported.append(Unsupported(rule.id, exc.construct, exc.reason))
            continue
        name = f"rule_{rule.order}"
        out.rule(name, body)
        entry = [rule.order, rule.id, str(rule.effect), str(rule.mode)]
        out.lines.append(f"matched contains {_lit(entry)} if {name}")
        out.lines.append("")
    text = _PRELUDE + "\n" + "\n".join(out.lines) + "\n"
    return RegoExport(text, tuple(unsupported))


def rego_input(policy: CompiledPolicy, call: ToolCall, now: datetime) -> dict[str, Any]:
    """The input document the exported module expects for one call."""
    info = policy.tool_info(call.tool)
    fields = {name: call_field(call, name) for name in _SAME_AS}
    out: dict[str, Any] = {
        "call": call.to_dict(),
        "kind": str(policy.kind_of(call)),
        "fields": {k: v for k, v in fields.items() if v is not None},
        "now": now.isoformat(),
    }
    if info is not None and info.cost is not None:
        out["tool_cost"] = float(info.cost)
    return out
