"""What the doors-agree test compares: probes, the evidence they leave, and how two
decisions or two calls are judged the same.

A *probe* is one call with the in-process engine's answer to it: the call as a
conformance case file states it (``tests/conformance``), parsed by ``parse_call``
and decided by ``aegis.policy.decide`` at the case's ``now`` -- or the
``call.*`` code ``parse_call`` refuses it with. Every door is then asked the same
question and must come to the same decision.

Each door's pipeline records what it decided in a :class:`RecordingEvidence`
(the pipeline's evidence stage, DESIGN.md §2): the whole ``Decision`` and the
``ToolCall`` the door built. The test looks a decision up by the id the door put
on the wire, so it compares what the door *acted on*, not only what it chose to
show, and checks separately that the wire agrees with it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aegis.core.call import McpPhase, ToolCall, parse_call
from aegis.core.decision import Decision, Outcome
from aegis.errors import CallError, ErrorCode
from aegis.pipeline import PipelineResult, RequestContext
from aegis.policy import CompiledPolicy, decide
from aegis.testing.conformance import DEFAULT_NOW, compile_case, load_cases

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO / "tests" / "conformance"


# -- strict JSON --------------------------------------------------------------------------


def json_same(a: object, b: object) -> bool:
    """Equal as JSON values *and* JSON types: ``1 != 1.0 != True`` here, unlike in
    Python. A door that turned ``1.0`` into ``1`` changed the call (see the
    conformance case param-eq-int-equals-float for why a policy can tell)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if a is None or b is None:
        return a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_same(x, y) for x, y in zip(a, b, strict=True))
    return False


def json_exact(value: object) -> bool:
    """Whether ``value`` survives a trip through JSON text unchanged (no NaN, no
    non-string keys, no dates, no tuples turned lists that matter)."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError):
        return False
    return json_same(json.loads(text), value)


# -- probes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One call, and what the in-process engine says about it."""

    source: str  # "conformance/<file>#<index>" or "egress/<request>"
    raw: Any  # the call as stated (usually a mapping)
    now: datetime
    call: ToolCall | None  # parse_call(raw)
    error: CallError | None  # ...or its refusal
    reference: Decision | None  # decide(policy, call, now)
    #: Only for the forward proxy's probes: what to send it (agree_proxy.ProxyRequest).
    proxy_request: Any = None

    @property
    def raw_dict(self) -> dict[str, Any]:
        return self.raw if isinstance(self.raw, dict) else {}


@dataclass
class Group:
    """The probes of one policy: one conformance case file, or the egress set."""

    name: str
    policy: CompiledPolicy
    probes: list[Probe] = field(default_factory=list)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def make_probe(
    source: str, raw: Any, policy: CompiledPolicy, now: datetime, proxy_request: Any = None
) -> Probe:
    try:
        call = parse_call(raw)
    except CallError as exc:
        return Probe(source, raw, now, None, exc, None, proxy_request)
    return Probe(source, raw, now, call, None, decide(policy, call, now), proxy_request)


def conformance_groups() -> list[Group]:
    """Every case file with calls, its policy compiled once."""
    groups = []
    for case in load_cases(CONFORMANCE):
        spec = case.spec
        if not spec.cases or spec.expect_error is not None:
            continue
        policy = compile_case(case)
        group = Group(case.name, policy)
        for i, cc in enumerate(spec.cases):
            now = _aware(cc.now or spec.now or DEFAULT_NOW)
            group.probes.append(make_probe(f"conformance/{case.name}#{i}", cc.call, policy, now))
        groups.append(group)
    return groups


# -- evidence -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    decision: Decision
    call: ToolCall
    door: str
    error: ErrorCode | None


class RecordingEvidence:
    """An EvidenceSink that keeps every decision, by id and in order."""

    def __init__(self) -> None:
        self.records: list[Recorded] = []
        self.by_id: dict[str, Recorded] = {}

    def record(
        self, result: PipelineResult, ctx: RequestContext, start_ns: int, end_ns: int
    ) -> None:
        rec = Recorded(result.decision, result.call, ctx.door, result.error)
        self.records.append(rec)
        self.by_id[result.decision.decision_id] = rec

    def mark(self) -> int:
        return len(self.records)

    def since(self, mark: int) -> list[Recorded]:
        return self.records[mark:]


# -- judging ------------------------------------------------------------------------------


def decision_diff(want: Decision, got: Decision, *, ticket: bool = True) -> list[str]:
    """How ``got`` differs from ``want`` in what decides and obliges: outcome, code,
    rule ids, reason, the redactions (as a set) and sanitized params, the approval
    requirement, retry-after, the shadow result, the policy version. ``ticket``:
    ``got`` came through a pipeline, whose approval stage opens a ticket for
    every approval_needed decision and for nothing else."""
    out = []
    for name in (
        "outcome",
        "code",
        "rule_ids",
        "reason",
        "approval",
        "retry_after",
        "shadow",
        "policy_version",
        "bundle_hash",
    ):
        a, b = getattr(want, name), getattr(got, name)
        if a != b:
            out.append(f"{name}: want {a!r}, got {b!r}")
    if set(want.redactions) != set(got.redactions):
        out.append(f"redactions: want {sorted(want.redactions)}, got {sorted(got.redactions)}")
    if not json_same(want.sanitized_params, got.sanitized_params):
        out.append(
            f"sanitized_params: want {want.sanitized_params!r}, got {got.sanitized_params!r}"
        )
    # The engine never opens tickets; the pipeline's approval stage does, for
    # approval_needed only.
    needs_ticket = got.outcome is Outcome.APPROVAL_NEEDED
    if ticket and needs_ticket != bool(got.approval_id):
        out.append(f"approval_id {got.approval_id!r} on a {got.outcome} decision")
    return out


CALL_FIELDS = (
    "tenant",
    "agent_id",
    "tool",
    "kind",
    "phase",
    "parent_chain",
    "agent_labels",
    "session_id",
    "destination",
    "cost_estimate",
    "trace",
)


def call_diff(want: ToolCall, got: ToolCall) -> list[str]:
    out = [
        f"call.{name}: want {getattr(want, name)!r}, got {getattr(got, name)!r}"
        for name in CALL_FIELDS
        if getattr(want, name) != getattr(got, name)
        or type(getattr(want, name)) is not type(getattr(got, name))
    ]
    if not json_same(dict(want.params), dict(got.params)):
        out.append(f"call.params: want {dict(want.params)!r}, got {dict(got.params)!r}")
    return out


def same_decision(a: Decision, b: Decision) -> bool:
    """The engine decides two calls alike (neither decision has a ticket)."""
    return not decision_diff(a, b, ticket=False)


def with_fields(call: ToolCall, **changes: Any) -> ToolCall:
    data = {name: getattr(call, name) for name in (*CALL_FIELDS, "params")}
    data.update(changes)
    return ToolCall(**data)


def error_field(body: object, key: str) -> Any:
    """``body["error"][key]`` of a JSON error body, or None."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get(key)
    return None


def error_body_diff(decision: Decision, body: object, *, reason_prefix: bool = False) -> list[str]:
    """How a door's PolicyViolation body differs from ``decision.error_body()``."""
    want = decision.error_body()["error"]
    got = body.get("error") if isinstance(body, dict) else None
    if not isinstance(got, dict):
        return [f"error body is not a PolicyViolation body: {body!r}"[:300]]
    out = []
    for key, value in want.items():
        if key == "reason" and reason_prefix:
            # ext_authz explains why it refused a sanitize it cannot carry out.
            if not str(got.get(key, "")).startswith(value):
                out.append(f"body.reason {got.get(key)!r} does not start with {value!r}")
        elif not json_same(got.get(key), value):
            out.append(f"body.{key}: want {value!r}, got {got.get(key)!r}")
    return out


# -- results ------------------------------------------------------------------------------


@dataclass
class Tally:
    """Per door: compared pairs, skips by reason, and every disagreement."""

    compared: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add_compared(self, door: str, outcome: str | None) -> None:
        """One pair compared: decided with ``outcome``, or refused (None)."""
        self.compared[door] = self.compared.get(door, 0) + 1
        if outcome is None:
            self.refused[door] = self.refused.get(door, 0) + 1
        else:
            counts = self.outcomes.setdefault(door, {})
            counts[outcome] = counts.get(outcome, 0) + 1

    def add_skip(self, door: str, reason: str) -> None:
        reasons = self.skipped.setdefault(door, {})
        reasons[reason] = reasons.get(reason, 0) + 1

    def report(self, doors: list[str], seconds: float) -> str:
        lines = [f"doors agree: {sum(self.compared.values())} call x door pairs in {seconds:.1f}s"]
        for door in doors:
            n, r = self.compared.get(door, 0), self.refused.get(door, 0)
            skips = self.skipped.get(door, {})
            decided = ", ".join(f"{o} {c}" for o, c in sorted(self.outcomes.get(door, {}).items()))
            lines.append(
                f"  {door:<15} compared {n:4d} ({decided}; refused before deciding {r}), "
                f"skipped {sum(skips.values())}"
            )
            for reason, count in sorted(skips.items(), key=lambda kv: -kv[1]):
                lines.append(f"      {count:4d}  {reason}")
        return "\n".join(lines)


# -- doors --------------------------------------------------------------------------------


class Clock:
    """The pipelines' clock: the probe's ``now``, so time windows decide alike."""

    def __init__(self) -> None:
        self.now = DEFAULT_NOW

    def read(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Plan:
    """What one door is asked: the exact ToolCall it must build and decide, or the
    ``call.*`` code it must refuse the request with. ``send`` is the door's own
    rendering of it (headers, body, arguments...)."""

    call: ToolCall | None = None
    error: str | None = None
    send: Any = None


@dataclass
class Reply:
    """What came back. ``decision_id``: the id the door put on the wire (None when
    this wire does not carry one, e.g. an allowed MCP call)."""

    decision_id: str | None
    data: Any


class Door:
    """One door driven like its real clients drive it, over its own pipeline."""

    name = "door"
    #: RequestContext.door: the label its decisions carry in spans, metrics and logs.
    label = "door"

    def __init__(self, sink: RecordingEvidence) -> None:
        self.sink = sink

    def plan(self, probe: Probe, policy: CompiledPolicy) -> Plan | str:
        """The plan, or why this door cannot carry the probe exactly."""
        raise NotImplementedError

    async def send(self, probe: Probe, plan: Plan) -> Reply:
        raise NotImplementedError

    def check_decided(self, reply: Reply, rec: Recorded, plan: Plan) -> list[str]:
        """How the wire disagrees with the decision the pipeline recorded."""
        raise NotImplementedError

    def check_refused(self, reply: Reply, plan: Plan) -> list[str]:
        """How the wire disagrees with a refusal with ``plan.error``."""
        raise NotImplementedError

    def relevant(self, rec: Recorded, plan: Plan) -> bool:
        """Whether a recorded decision answers this plan (MCP lists decide every tool)."""
        assert plan.call is not None
        return rec.call.phase is plan.call.phase and (
            rec.call.phase is McpPhase.CALL or rec.call.tool == plan.call.tool
        )


def door_call_plan(
    probe: Probe, policy: CompiledPolicy, door_call: ToolCall, send: Any, what: str
) -> Plan | str:
    """A plan for ``door_call``: the call a door builds for this probe, which may
    differ from it where the wire fixes a field (Envoy and MCP always state a kind
    and a destination). Carried only when the engine decides both calls alike;
    otherwise the door is not carrying *this* call, and the probe is skipped."""
    assert probe.call is not None and probe.reference is not None
    if not call_diff(probe.call, door_call):
        return Plan(call=door_call, send=send)
    if same_decision(probe.reference, decide(policy, door_call, probe.now)):
        return Plan(call=door_call, send=send)
    return f"the engine decides differently once {what}"


async def run_probe(door: Door, probe: Probe, policy: CompiledPolicy, tally: Tally) -> None:
    plan = door.plan(probe, policy)
    if isinstance(plan, str):
        tally.add_skip(door.name, plan)
        return
    mark = door.sink.mark()
    reply = await door.send(probe, plan)
    new = door.sink.since(mark)
    problems: list[str] = []
    if plan.error is not None:
        if new:
            problems.append(f"a call the door should refuse ({plan.error}) was decided")
        problems += door.check_refused(reply, plan)
    else:
        assert plan.call is not None and probe.reference is not None
        relevant = [r for r in new if door.relevant(r, plan)]
        rec = door.sink.by_id.get(reply.decision_id) if reply.decision_id else None
        if reply.decision_id is not None and rec is None:
            problems.append(f"decision id {reply.decision_id!r} on the wire is in no evidence")
        if len(relevant) != 1:
            problems.append(f"{len(relevant)} decisions recorded for one request, want 1")
        if rec is not None and rec not in relevant:
            problems.append("the decision id on the wire names a decision made for another call")
        rec = rec or (relevant[0] if relevant else None)
        if rec is not None:
            if rec.door != door.label:
                problems.append(f"decided as door {rec.door!r}, want {door.label!r}")
            if rec.error is not None:
                problems.append(f"the pipeline could not decide: {rec.error}")
            problems += decision_diff(probe.reference, rec.decision)
            problems += call_diff(plan.call, rec.call)
            problems += door.check_decided(reply, rec, plan)
    outcome = None if plan.error is not None or probe.reference is None else probe.reference.outcome
    tally.add_compared(door.name, None if outcome is None else str(outcome))
    tally.problems += [f"{door.name} {probe.source}: {p}" for p in problems]
