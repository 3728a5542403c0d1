"""Export a compiled policy as a Rego module (``package aegis``).

The module decides ``data.aegis.decision`` = ``{"outcome", "rule_ids",
"sanitizer_ids", "shadow_outcome"}`` for the input built by :func:`rego_input`.
Facts Rego cannot compute faithfully (the tool kind from the policy's
declarations, the tool's declared cost, the call's identity fields, URLs parsed
by the WHATWG URL Standard, the local clock in each time zone the policy's
windows use) are computed in Python with the engine's own code and passed in
the input; the module only compares them. Redactions are not computed in
Rego: the DLP detectors run outside it, from ``sanitizer_ids``.

What the exporter cannot translate is listed in :attr:`RegoExport.unsupported`
and the rule is left out of the module, never silently changed. See
docs/rego-export.md.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Any
from zoneinfo import ZoneInfo

from aegis.core.call import ToolCall
from aegis.core.paths import WILDCARD, lookup, parse_path
from aegis.errors import HostPatternError
from aegis.net import CidrSet, HostPattern, load_public_suffix_list, parse_destination
from aegis.net.patterns import ip_key
from aegis.policy import model as m
from aegis.policy.compiled import CompiledPolicy, CompiledRule
from aegis.policy.conditions import WEEKDAYS, call_field, url_scheme
from aegis.policy.values import parse_clock

#: regorus refuses source lines wider than 1024 columns (tab included).
_MAX_LINE = 1000
#: Longer string literals are written as ``concat("", [...])`` of pieces this long,
#: one per line (at most 600 columns even if every character is JSON-escaped), so a
#: 4 KiB regex still fits regorus' line limit.
_CHUNK = 100
_SAME_AS = ("tenant", "agent_id", "session_id", "parent_agent_id")
#: ParamCondition operators other than eq/ne (which count when written, even as null).
_PARAM_OPERATORS = (
    "in_",
    "not_in",
    "gt",
    "gte",
    "lt",
    "lte",
    "min_length",
    "max_length",
    "matches",
    "not_matches",
    "host_in",
    "host_not_in",
    "ip_in",
    "ip_not_in",
)
_NET_OPERATORS = ("host_in", "host_not_in", "ip_in", "ip_not_in")

# -- regexes -----------------------------------------------------------------------
#
# Aegis runs patterns with RE2 (https://github.com/google/re2/wiki/Syntax);
# regorus runs them with the Rust regex crate (https://docs.rs/regex/latest/regex/#syntax).
# A pattern is exported only when it is built from pieces both read the same way,
# rewritten where the spelling differs but the meaning can be made identical:
#
# * RE2's Perl classes \d \w \s (and \D \W \S) are ASCII; Rust's are Unicode.
#   They are written out as RE2 defines them: [0-9], [0-9A-Za-z_], [\t\n\f\r ].
# * RE2's \b and \B are ASCII word boundaries; Rust's are Unicode, and its ASCII
#   boundary is spelled (?-u:\b) / (?-u:\B).
# * Inside a bracket class, Rust gives meaning to nested classes ([a[bc]]) and to
#   &&, -- and ~~ (intersection, difference, symmetric difference) where RE2
#   reads literal characters, so those are refused.
# * A leading (?i): both engines fold case by Unicode simple case folding (so
#   "k" also matches U+212A KELVIN SIGN in both); other flags are refused.
# * Repetition braces {n}, {n,} and {n,m} after an atom; RE2 reads a malformed
#   brace as a literal where Rust rejects it, so anything else is refused.
# * (?: ... ) groups, the operators . ^ $ * + ? | ( ), ASCII letters, digits and
#   the punctuation below, and escaped ASCII punctuation.
# Everything else (\p{..}, non-ASCII literals, other flags and escapes, named
# groups, POSIX classes) is reported as unsupported.
_ASCII_CLASSES = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_PLAIN = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _-:/@,=#%&~<>'\"!;"
)
_OPERATORS = frozenset(".^$*+?|()")
_CLASS_PLAIN = _PLAIN | frozenset(".^$*+?|(){}")
_REPEAT = re.compile(r"\{[0-9]{1,4}(?:,[0-9]{0,4})?\}")


class _RegexError(Exception):
    pass


def _escape(pattern: str, i: int, *, in_class: bool) -> str:
    """The Rust spelling of the escape at ``pattern[i]`` (a backslash)."""
    if i + 1 >= len(pattern):
        raise _RegexError("trailing backslash")
    nxt = pattern[i + 1]
    if nxt in _ASCII_CLASSES:
        return _ASCII_CLASSES[nxt] if in_class else f"[{_ASCII_CLASSES[nxt]}]"
    if nxt in "DWS" and not in_class:
        return f"[^{_ASCII_CLASSES[nxt.lower()]}]"
    if nxt in "bB" and not in_class:
        return f"(?-u:\\{nxt})"
    if nxt.isascii() and nxt.isprintable() and not nxt.isalnum() and nxt != " ":
        return "\\" + nxt
    raise _RegexError(f"escape \\{nxt}")


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The bracket class starting at ``pattern[i]``, and the index after it."""
    out = ["["]
    j = i + 1
    if pattern.startswith("^", j):
        out.append("^")
        j += 1
    first = True
    while j < len(pattern):
        ch = pattern[j]
        if ch == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        if ch == "]":  # a leading ']' is a literal in both engines
            out.append("\\]")
            j += 1
        elif ch == "\\":
            out.append(_escape(pattern, j, in_class=True))
            j += 2
        elif ch in "&-~" and pattern.startswith(ch * 2, j):
            raise _RegexError(f"{ch * 2} in a class is a set operation in Rust")
        elif ch in _CLASS_PLAIN:
            out.append(ch)
            j += 1
        else:
            raise _RegexError(f"{ch!r} in a class")
        first = False
    raise _RegexError("unclosed class")


def _translate_regex(pattern: str) -> str:
    """``pattern`` spelled so that Rust's regex crate matches exactly what RE2 matches."""
    out: list[str] = []
    i = 0
    if pattern.startswith("(?i)"):
        out.append("(?i)")
        i = 4
    atom = False  # whether the previous token can take a repetition brace
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(_escape(pattern, i, in_class=False))
            i += 2
            atom = True
        elif ch == "[":
            text, i = _class(pattern, i)
            out.append(text)
            atom = True
        elif ch == "{":
            brace = _REPEAT.match(pattern, i)
            if brace is None or not atom:
                raise _RegexError("repetition brace")
            out.append(brace.group(0))
            i = brace.end()
            if i < len(pattern) and pattern[i] in "*+?{":
                raise _RegexError("repetition of a repetition")
            atom = False
        elif pattern.startswith("(?:", i):
            out.append("(?:")
            i += 3
            atom = False
        elif pattern.startswith("(?", i):
            raise _RegexError("group flags")
        elif ch in _PLAIN or ch in _OPERATORS:
            out.append(ch)
            i += 1
            atom = ch in _PLAIN or ch in ".)"
        else:
            raise _RegexError(f"{ch!r}")
    return "".join(out)


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
    """A JSON value as a Rego literal (JSON is valid Rego term syntax).

    A long string becomes ``concat("", [...])`` of pieces on their own lines:
    regorus refuses source lines wider than 1024 columns."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    if not isinstance(value, str) or len(text) <= _MAX_LINE // 2:
        return text
    pieces = [value[k : k + _CHUNK] for k in range(0, len(value), _CHUNK)]
    return (
        'concat("", [\n'
        + "".join(f"\t\t{json.dumps(p, ensure_ascii=False)},\n" for p in pieces)
        + "\t])"
    )


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


def _set(values: Iterable[Any]) -> str:
    return "{" + ", ".join(_lit(v) for v in values) + "}"


def _is_index(segment: str) -> bool:
    # aegis.core.paths.lookup: ASCII digits, at most 9 of them, index a list.
    return segment.isascii() and segment.isdigit() and len(segment) <= 9


def _param_ref(segments: Iterable[str | int]) -> str:
    """The Rego term for the value at a wildcard-free path, as aegis.core.paths.lookup
    reads it: a numeric segment (``items[0]``, ``items.0``) indexes a list, and on an
    object is the key ``"0"``; which one depends on the value, so ``_seg`` decides."""
    ref = "input.call.params"
    for seg in segments:
        if isinstance(seg, int):
            ref = f"_seg({ref}, {_lit(str(seg))}, {seg})"
        elif _is_index(seg):
            ref = f"_seg({ref}, {_lit(seg)}, {int(seg)})"
        else:
            ref += f"[{_lit(seg)}]"
    return ref


def _check_width(body: list[str]) -> None:
    for line in (physical for b in body for physical in b.split("\n")):
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
        if not bodies:  # no way to hold: the name must still be defined
            self.lines.append(f"{name} := false")
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
            self.destination(name, cond.destination)
        elif isinstance(cond, m.TimeCondition):
            self.time(name, cond.time)
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
        ref = _param_ref(segments)
        fields = cond.model_fields_set
        # Which operators the engine builds a test for (conditions.Resolver.value_tests).
        tested = (
            "eq" in fields
            or "ne" in fields
            or any(getattr(cond, k) is not None for k in _PARAM_OPERATORS)
            or cond.same_as is not None
        )
        if cond.exists is False:
            if tested:
                self.rule(name, ["false"])  # every test fails on a missing value
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
            try:
                translated = _translate_regex(pattern)
            except _RegexError as exc:
                raise _UnsupportedError(
                    key,
                    f"pattern {pattern!r} uses syntax ({exc}) whose meaning may differ "
                    "between RE2 and regorus' regex engine",
                ) from None
            body.append("is_string(v)")
            body.append(("not " if negate else "") + f"regex.match({_lit(translated)}, v)")
        # Host and IP tests read the URL facts rego_input computes for this path
        # (present exactly when the value is a string; see _net_fact).
        self.net_tests(body, cond, f"input.net.params[{_lit(cond.param)}]")
        self.rule(name, body)

    def net_tests(
        self, body: list[str], cond: m.ParamCondition | m.DestinationTest, fact: str
    ) -> None:
        """Append the host_in / host_not_in / ip_in / ip_not_in tests of ``cond`` on ``fact``.

        As in conditions.py: ``*_in`` holds for a parsed host in the set; ``*_not_in``
        holds for any string that is not, an unparseable one included (a deny rule
        "host_not_in: allowlist" must catch what the parser refused)."""
        for key, negate in (("host_in", False), ("host_not_in", True)):
            patterns = getattr(cond, key)
            if patterns is not None:
                self.in_set(body, self.hosts(fact, patterns, key), fact, negate=negate)
        for key, negate in (("ip_in", False), ("ip_not_in", True)):
            blocks = getattr(cond, key)
            if blocks is not None:
                self.in_set(body, self.cidrs(fact, blocks, key), fact, negate=negate)

    @staticmethod
    def in_set(body: list[str], helper: str, fact: str, *, negate: bool) -> None:
        if negate:
            body.extend([f"_ = {fact}", f"not {helper}"])
        else:
            body.append(helper)

    def hosts(self, fact: str, patterns: list[str], key: str) -> str:
        """A rule true when the parsed host in ``fact`` matches a pattern, as HostSet.matches:
        an IP host only IP patterns (compared after IPv4-mapped unwrapping), a domain only
        domain patterns; ``*.suffix`` matches proper subdomains, not the apex."""
        name = self.fresh("hosts")
        bodies = []
        psl = load_public_suffix_list()
        for text in patterns:
            try:
                p = HostPattern.parse(text, psl)
            except HostPatternError as exc:
                raise _UnsupportedError(key, f"host pattern {text!r}: {exc}") from None
            body = [f"f := {fact}", "f.parsed == true"]
            if p.ip is not None:
                body.append(f"_ip_key(f) == {_lit(str(ip_key(p.ip)))}")
            elif p.wildcard:
                # HostSet tries each proper suffix of a name without empty labels,
                # which is exactly "ends with '.' + suffix".
                body.append(f"endswith(_dns_name(f), {_lit('.' + p.host)})")
            else:
                body.append(f"_dns_name(f) == {_lit(p.host)}")
            if p.port is not None:
                body.append(f"f.port == {p.port}")
            bodies.append(body)
        self.any_of(name, bodies)
        return name

    def cidrs(self, fact: str, blocks: list[str], key: str) -> str:
        """A rule true when the IP host in ``fact`` is in a block, as CidrSet.contains_host.

        Blocks (RFC 4632 / RFC 4291 §2.3) are tested with Rego's net.cidr_contains
        (https://www.openpolicyagent.org/docs/latest/policy-reference/#net), only ever
        on an address of the block's own family: implementations disagree on mixed
        families, and the engine's rule is explicit in the input -- an IPv4-mapped
        IPv6 host carries its IPv4 address as ``ipv4`` too (RFC 4291 §2.5.5.2)."""
        name = self.fresh("cidrs")
        try:
            networks = CidrSet.parse(blocks).networks
        except HostPatternError as exc:
            raise _UnsupportedError(key, str(exc)) from None
        bodies = []
        for network in networks:
            family = "ipv4" if isinstance(network, IPv4Network) else "ipv6"
            bodies.append(
                [
                    f"f := {fact}",
                    "f.parsed == true",
                    f"net.cidr_contains({_lit(str(network))}, f.{family})",
                ]
            )
        self.any_of(name, bodies)
        return name

    def destination(self, name: str, t: m.DestinationTest) -> None:
        fact = "input.net.destination"
        body = ["_ = input.call.destination"]
        self.net_tests(body, t, fact)
        if t.scheme_in is not None:
            # conditions.py: the scheme (text before "://", lowercased) counts only
            # for a destination the host parser accepts.
            schemes = sorted({s.lower().rstrip(":") for s in t.scheme_in})
            body.extend([f"{fact}.parsed == true", f"{fact}.scheme in {_set(schemes)}"])
        if t.port_in is not None:
            body.extend(
                [f"{fact}.parsed == true", f"{fact}.port in {_set(sorted(set(t.port_in)))}"]
            )
        tested = len(body) > 1
        if t.exists is False:
            self.rule(name, ["false"] if tested else ["not input.call.destination"])
        else:
            self.rule(name, body)

    def time(self, name: str, window: m.TimeWindow) -> None:
        """conditions._time_predicate over the local clock facts rego_input computes."""
        try:
            ZoneInfo(window.timezone)
            start, end = parse_clock(window.start), parse_clock(window.end)
        except (ValueError, KeyError) as exc:  # the compiler refuses these first
            raise _UnsupportedError("time", f"invalid time window: {exc}") from None
        if start == end:
            raise _UnsupportedError("time", "empty time window")
        days = sorted({WEEKDAYS.index(d) for d in window.days}) if window.days else None
        t = f"input.time[{_lit(window.timezone)}]"

        def on(weekdays: Iterable[int] | None) -> list[str]:
            return [] if weekdays is None else [f"{t}.weekday in {_set(sorted(weekdays))}"]

        if start < end:  # [start, end): start inclusive, end exclusive
            self.rule(name, [f"{t}.minute >= {start}", f"{t}.minute < {end}", *on(days)])
            return
        # Wraps midnight: the early-morning part belongs to the previous day's
        # window ("fri 22:00-06:00" covers Saturday 03:00), so its days shift by one.
        after = None if days is None else [(d + 1) % 7 for d in days]
        self.any_of(
            name,
            [[f"{t}.minute >= {start}", *on(days)], [f"{t}.minute < {end}", *on(after)]],
        )

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

_seg(x, k, _) := x[k] if is_object(x)

_seg(x, _, i) := x[i] if is_array(x)

_sized(v) if is_string(v)

_sized(v) if is_array(v)

_sized(v) if is_object(v)

_chain := object.get(input.call, "parent_chain", [])

_labels := object.get(input.call, "agent_labels", [])

default _cost := null

_cost := input.call.cost_estimate

_cost := input.tool_cost if not input.call.cost_estimate

# Host.match_name: one trailing dot names the same host (RFC 1034 §3.1); a name
# with an empty label matches no pattern (aegis.net.patterns.HostSet.matches).
_dns_name(f) := n if {
\tf.kind == "domain"
\tn := trim_suffix(f.host, ".")
\tnot "" in split(n, ".")
}

# aegis.net.patterns.ip_key: an IPv4-mapped IPv6 host is its IPv4 address.
_ip_key(f) := f.ipv4

_ip_key(f) := f.ipv6 if not f.ipv4

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


@dataclass(frozen=True, slots=True)
class _Facts:
    """What a policy needs pre-computed: the param paths its host/IP tests read,
    whether it tests the destination's host, IP, scheme or port, and the time
    zones of its windows."""

    params: tuple[str, ...]
    destination: bool
    zones: tuple[str, ...]


_FACTS: weakref.WeakKeyDictionary[CompiledPolicy, _Facts] = weakref.WeakKeyDictionary()


def _facts(policy: CompiledPolicy) -> _Facts:
    found = _FACTS.get(policy)
    if found is not None:
        return found
    params: set[str] = set()
    zones: set[str] = set()
    destination = False
    todo: list[m.Condition] = [c for rule in policy.rules for c in rule.model.when]
    while todo:
        cond = todo.pop()
        if isinstance(cond, m.ParamCondition):
            if any(getattr(cond, k) is not None for k in _NET_OPERATORS):
                params.add(cond.param)
        elif isinstance(cond, m.DestinationCondition):
            t = cond.destination
            if any(getattr(t, k) is not None for k in (*_NET_OPERATORS, "scheme_in", "port_in")):
                destination = True
        elif isinstance(cond, m.TimeCondition):
            zones.add(cond.time.timezone)
        elif isinstance(cond, m.AnyCondition):
            todo.extend(cond.any)
        elif isinstance(cond, m.AllCondition):
            todo.extend(cond.all)
        elif isinstance(cond, m.NotCondition):
            todo.append(cond.not_)
    found = _FACTS[policy] = _Facts(tuple(sorted(params)), destination, tuple(sorted(zones)))
    return found


def _net_fact(value: str) -> dict[str, Any]:
    """What host, IP, scheme and port tests see in a URL or ``host[:port]`` string,
    computed by the engine's own parser (aegis.net.parse_destination: the WHATWG URL
    Standard via ada, IDNA, every IPv4 spelling). ``{"parsed": false}`` when the
    parser refuses it."""
    host = parse_destination(value)
    if host is None:
        return {"parsed": False}
    fact: dict[str, Any] = {
        "parsed": True,
        "scheme": url_scheme(value),
        "kind": str(host.kind),
        "host": host.name,
    }
    if host.port is not None:
        fact["port"] = host.port
    if isinstance(host.ip, IPv4Address):
        fact["ipv4"] = str(host.ip)
    elif isinstance(host.ip, IPv6Address):
        fact["ipv6"] = str(host.ip)
        if host.ip.ipv4_mapped is not None:  # reaches the IPv4 host (RFC 4291 §2.5.5.2)
            fact["ipv4"] = str(host.ip.ipv4_mapped)
    return fact


def rego_input(policy: CompiledPolicy, call: ToolCall, now: datetime) -> dict[str, Any]:
    """The input document the exported module expects for one call.

    Besides the call, it carries facts the gateway computes with the engine's
    own code, where Rego has no faithful equivalent (docs/rego-export.md, "Input"):
    parsed URLs for the paths the policy's host/IP tests read and for the
    destination, and the local weekday and minute for each time zone its windows
    use.
    """
    info = policy.tool_info(call.tool)
    fields = {name: call_field(call, name) for name in _SAME_AS}
    needs = _facts(policy)
    net: dict[str, Any] = {"params": {}}
    for path in needs.params:
        value = lookup(call.params, parse_path(path).segments)
        if isinstance(value, str):
            net["params"][path] = _net_fact(value)
    if needs.destination and call.destination is not None:
        net["destination"] = _net_fact(call.destination)
    clocks = {}
    for zone in needs.zones:
        local = now.astimezone(ZoneInfo(zone))  # as conditions._time_predicate
        clocks[zone] = {"weekday": local.weekday(), "minute": local.hour * 60 + local.minute}
    out: dict[str, Any] = {
        "call": call.to_dict(),
        "kind": str(policy.kind_of(call)),
        "fields": {k: v for k, v in fields.items() if v is not None},
        "now": now.isoformat(),
        "net": net,
        "time": clocks,
    }
    if info is not None and info.cost is not None:
        out["tool_cost"] = float(info.cost)
    return out
