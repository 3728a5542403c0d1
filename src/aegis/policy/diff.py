"""What changes between two compiled policies: rules, defaults, declarations, and
the calls that would be decided differently (``aegis policy diff A B``).

The comparison itself is pure: it takes two CompiledPolicy objects and the calls
to replay (:func:`diff_policies`). Where those calls come from is separate:
:func:`calls_from_jsonl` reads call lines already in memory (raw calls as the
decision API takes them, or ``aegis audit export`` records), and
:func:`calls_from_suites` -- the only function here that touches the file
system -- reads the ``*.test.yaml`` suites beside a policy. Loading the policies
(folders or bundles) is the caller's job, so this module never imports bundles.

A rule is "changed" when its validated model differs (fields compared after
``model_dump``), so reformatting, comments or moving a rule to another file do
not count; the tenant a rule is scoped to by its document's ``metadata.tenant``
is compared too, as the pseudo-field ``tenants``, since it is not in the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from aegis.core.call import ToolCall, parse_call
from aegis.core.decision import Decision
from aegis.errors import CallError, Diagnostic, ErrorCode
from aegis.policy.compiled import CompiledPolicy, CompiledRule
from aegis.policy.engine import decide
from aegis.policy.testing import read_suite, suite_files

# -- inputs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelledCall:
    """A call to replay against both policies, and where it came from."""

    label: str  # "suite.test.yaml: case name" or "calls.jsonl:12"
    call: ToolCall
    now: datetime


@dataclass(frozen=True, slots=True)
class Unparsed:
    """An input that should have been a call but is not one: reported, never dropped."""

    label: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"label": self.label, "code": self.code, "message": self.message}


@dataclass(slots=True)
class CallInputs:
    """Calls gathered from suites and JSONL files.

    ``skipped`` counts inputs that are not calls by design: the header, proof and
    checkpoint lines of an audit export, its non-decision records, and test cases
    whose call is refused as malformed (``expect_error``) -- a refused call gets
    the same answer from any policy.
    """

    calls: list[LabelledCall] = field(default_factory=list)
    unparsed: list[Unparsed] = field(default_factory=list)
    skipped_keys: list[str] = field(default_factory=list)  # what identifies each skip
    _seen: set[str] = field(default_factory=set, repr=False)

    @property
    def skipped(self) -> int:
        return len(self.skipped_keys)

    def _first_sight(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def add(self, item: LabelledCall, *, dedupe: bool = False) -> None:
        # The same case in A's and B's suites (or twice in one) is replayed once.
        key = json.dumps(item.call.to_dict(), sort_keys=True) + "@" + item.now.isoformat()
        if not dedupe or self._first_sight("call:" + key):
            self.calls.append(item)

    def extend(self, other: CallInputs, *, dedupe: bool = False) -> None:
        for item in other.calls:
            self.add(item, dedupe=dedupe)
        for u in other.unparsed:  # a broken suite beside both sides is reported once
            if not dedupe or self._first_sight(f"unparsed:{u.label}:{u.code}:{u.message}"):
                self.unparsed.append(u)
        for key in other.skipped_keys:
            if not dedupe or self._first_sight("skipped:" + key):
                self.skipped_keys.append(key)


# -- results ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleRef:
    id: str
    effect: str
    mode: str
    where: str  # file:line

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "effect": self.effect, "mode": self.mode, "where": self.where}


@dataclass(frozen=True, slots=True)
class ItemChange:
    """A rule or declaration present on both sides whose definition differs."""

    id: str
    fields: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fields": list(self.fields)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The parts of a decision a diff compares."""

    outcome: str
    rule_ids: tuple[str, ...]
    redactions: tuple[tuple[str, str], ...]  # (path, detector), sorted

    @classmethod
    def of(cls, decision: Decision) -> Verdict:
        return cls(
            str(decision.outcome),
            decision.rule_ids,
            tuple(sorted((r.path, r.detector) for r in decision.redactions)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "rule_ids": list(self.rule_ids),
            "redactions": [{"path": p, "detector": d} for p, d in self.redactions],
        }


@dataclass(frozen=True, slots=True)
class CallChange:
    label: str
    call: ToolCall
    now: datetime
    a: Verdict
    b: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "tenant": self.call.tenant,
            "agent_id": self.call.agent_id,
            "tool": self.call.tool,
            "now": self.now.isoformat(),
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Side:
    """One policy of the pair, with what names it."""

    compiled: CompiledPolicy
    source: str  # the path given
    revision: str | None = None  # a bundle's manifest revision

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "version": self.compiled.version,
            "bundle_hash": self.compiled.bundle_hash,
            "revision": self.revision,
            "rules": len(self.compiled.rules),
        }


@dataclass(frozen=True, slots=True)
class DeclarationDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[ItemChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [c.to_dict() for c in self.changed],
        }


@dataclass(frozen=True, slots=True)
class PolicyDiff:
    a: Side
    b: Side
    added: tuple[RuleRef, ...]
    removed: tuple[RuleRef, ...]
    changed: tuple[ItemChange, ...]
    defaults: Mapping[str, tuple[Any, Any]]  # field -> (A's value, B's value), changed only
    declarations: Mapping[str, DeclarationDiff]  # kind -> its diff, changed kinds only
    evaluated: int
    call_changes: tuple[CallChange, ...]
    unparsed: tuple[Unparsed, ...]
    skipped: int

    @property
    def differs(self) -> bool:
        """Whether the two policies mean something different (for ``--exit-code``).

        The version and bundle hash are not compared: an edit to a comment changes
        the hash but not a single decision; unparsed inputs are not a difference.
        """
        return bool(
            self.added
            or self.removed
            or self.changed
            or self.defaults
            or self.declarations
            or self.call_changes
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "differs": self.differs,
            "rules": {
                "added": [r.to_dict() for r in self.added],
                "removed": [r.to_dict() for r in self.removed],
                "changed": [c.to_dict() for c in self.changed],
            },
            "defaults": {k: {"a": a, "b": b} for k, (a, b) in self.defaults.items()},
            "declarations": {k: d.to_dict() for k, d in self.declarations.items()},
            "calls": {
                "evaluated": self.evaluated,
                "changed": [c.to_dict() for c in self.call_changes],
                "unparsed": [u.to_dict() for u in self.unparsed],
                "skipped": self.skipped,
            },
        }


# -- comparing ----------------------------------------------------------------------


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


def _changed_fields(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))


def _rule_view(rule: CompiledRule) -> dict[str, Any]:
    view = _dump(rule.model)
    # metadata.tenant scopes every rule of its document but lives outside the rule.
    view["tenants"] = sorted(rule.tenants) if rule.tenants is not None else None
    return view


def _ref(rule: CompiledRule) -> RuleRef:
    return RuleRef(
        rule.id, str(rule.effect), str(rule.mode), f"{rule.source.file}:{rule.source.line}"
    )


def diff_rules(
    a: CompiledPolicy, b: CompiledPolicy
) -> tuple[tuple[RuleRef, ...], tuple[RuleRef, ...], tuple[ItemChange, ...]]:
    """(added, removed, changed) by rule id; added in B's order, the others in A's."""
    by_id_a = {r.id: r for r in a.rules}
    by_id_b = {r.id: r for r in b.rules}
    added = tuple(_ref(r) for r in b.rules if r.id not in by_id_a)
    removed = tuple(_ref(r) for r in a.rules if r.id not in by_id_b)
    changed = []
    for rule in a.rules:
        other = by_id_b.get(rule.id)
        if other is not None:
            fields = _changed_fields(_rule_view(rule), _rule_view(other))
            if fields:
                changed.append(ItemChange(rule.id, fields))
    return added, removed, tuple(changed)


def _defaults_view(policy: CompiledPolicy) -> dict[str, Any]:
    d = policy.defaults
    return {
        "outcome": str(d.outcome),
        "reason": d.reason,
        "approval": d.approval.to_dict() if d.approval else None,
        "fail_mode.read": str(d.fail_read),
        "fail_mode.write": str(d.fail_write),
    }


def diff_defaults(a: CompiledPolicy, b: CompiledPolicy) -> dict[str, tuple[Any, Any]]:
    va, vb = _defaults_view(a), _defaults_view(b)
    return {k: (va[k], vb[k]) for k in va if va[k] != vb[k]}


#: Declaration kinds, and the field that names an item of each.
_DECLARATION_KEYS: dict[str, str] = {
    "tools": "name",
    "agents": "id",
    "limits": "id",
    "budgets": "id",
    "approval_caps": "id",
}


def _keyed(items: Iterable[BaseModel], key: str) -> dict[str, dict[str, Any]]:
    return {str(getattr(item, key)): _dump(item) for item in items}


def diff_declarations(a: CompiledPolicy, b: CompiledPolicy) -> dict[str, DeclarationDiff]:
    """Per kind (tools, agents, limits, budgets, approval_caps), only the kinds that differ."""
    out: dict[str, DeclarationDiff] = {}
    for kind, key in _DECLARATION_KEYS.items():
        da = _keyed(getattr(a.declarations, kind), key)
        db = _keyed(getattr(b.declarations, kind), key)
        diff = DeclarationDiff(
            added=tuple(k for k in db if k not in da),
            removed=tuple(k for k in da if k not in db),
            changed=tuple(
                ItemChange(k, _changed_fields(da[k], db[k]))
                for k in da
                if k in db and da[k] != db[k]
            ),
        )
        if diff:
            out[kind] = diff
    return out


def diff_calls(
    a: CompiledPolicy, b: CompiledPolicy, calls: Iterable[LabelledCall]
) -> tuple[int, tuple[CallChange, ...]]:
    """(calls evaluated, those whose outcome, deciding rules or redactions differ)."""
    evaluated = 0
    changes = []
    for item in calls:
        evaluated += 1
        va = Verdict.of(decide(a, item.call, item.now))
        vb = Verdict.of(decide(b, item.call, item.now))
        if va != vb:
            changes.append(CallChange(item.label, item.call, item.now, va, vb))
    return evaluated, tuple(changes)


def diff_policies(a: Side, b: Side, inputs: CallInputs | None = None) -> PolicyDiff:
    inputs = inputs or CallInputs()
    added, removed, changed = diff_rules(a.compiled, b.compiled)
    evaluated, call_changes = diff_calls(a.compiled, b.compiled, inputs.calls)
    return PolicyDiff(
        a=a,
        b=b,
        added=added,
        removed=removed,
        changed=changed,
        defaults=diff_defaults(a.compiled, b.compiled),
        declarations=diff_declarations(a.compiled, b.compiled),
        evaluated=evaluated,
        call_changes=call_changes,
        unparsed=tuple(inputs.unparsed),
        skipped=inputs.skipped,
    )


# -- calls from JSON Lines (raw calls or audit export records) ------------------------

#: Lines of an audit export that are not records (aegis.audit.export).
_EXPORT_FRAMING = frozenset({"export", "proof", "checkpoint"})
#: Decision-record body fields that are ToolCall fields (aegis.audit.sink). The
#: agent's labels and the MCP phase are not recorded, so a replay has none / "call".
_RECORD_CALL_FIELDS = (
    "tenant",
    "agent_id",
    "tool",
    "params",
    "kind",
    "parent_chain",
    "session_id",
    "destination",
)


class _NotACallError(Exception):
    """A line that is, by design, not a call (export framing, non-decision record)."""


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise CallError(ErrorCode.CALL_INVALID_VALUE, "now must be an ISO 8601 string", "now")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CallError(
            ErrorCode.CALL_INVALID_VALUE, f"{value!r} is not an ISO 8601 time", "now"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _call_from_record(record: Mapping[str, Any]) -> tuple[dict[str, Any], datetime]:
    """The call a decision record holds (its params as recorded: already sanitized)."""
    if record.get("kind") != "decision":
        raise _NotACallError
    body = record.get("body")
    if not isinstance(body, Mapping):
        raise CallError(ErrorCode.CALL_NOT_AN_OBJECT, "record body is not an object", "body")
    data = {k: body[k] for k in _RECORD_CALL_FIELDS if body.get(k) is not None}
    cost = body.get("cost_estimate")
    if isinstance(cost, str):  # recorded as a decimal string (RFC 8785 and floats)
        try:
            data["cost_estimate"] = float(cost)
        except ValueError:
            raise CallError(
                ErrorCode.CALL_INVALID_NUMBER, f"cost_estimate {cost!r}", "cost_estimate"
            ) from None
    return data, _time(record.get("time"))


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_line(raw: bytes, default_now: datetime) -> tuple[ToolCall, datetime]:
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        raise CallError(ErrorCode.CALL_INVALID_JSON, f"not UTF-8 at byte {exc.start}") from None
    except (ValueError, RecursionError) as exc:
        raise CallError(ErrorCode.CALL_INVALID_JSON, f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CallError(ErrorCode.CALL_NOT_AN_OBJECT, "a call must be a JSON object")
    if len(obj) == 1 and next(iter(obj)) in _EXPORT_FRAMING:
        raise _NotACallError
    if len(obj) == 1 and isinstance(obj.get("record"), dict):
        data, now = _call_from_record(obj["record"])
    elif "body" in obj and "seq" in obj:  # a bare record, as a store row reads
        data, now = _call_from_record(obj)
    else:
        data = dict(obj)
        now = _time(data.pop("now")) if "now" in data else default_now
    return parse_call(data), now


def calls_from_jsonl(data: bytes, source: str, default_now: datetime) -> CallInputs:
    """Calls from JSON Lines: one raw call per line (with an optional ``now``), or
    the lines of ``aegis audit export`` (decision records, replayed at their time)."""
    found = CallInputs()
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        label = f"{source}:{number}"
        try:
            call, now = _parse_line(raw, default_now)
        except _NotACallError:
            found.skipped_keys.append(label)
        except CallError as exc:
            found.unparsed.append(Unparsed(label, str(exc.code), exc.message))
        else:
            found.add(LabelledCall(label, call, now))
    return found


# -- calls from test suites (reads files) ---------------------------------------------


def _suite_name(file: Path, root: Path) -> str:
    try:
        return file.relative_to(root).as_posix()
    except ValueError:
        return file.name


def calls_from_suites(paths: Sequence[Path], default_now: datetime) -> CallInputs:
    """The calls of every test case in the ``*.test.yaml`` suites beside ``paths``:
    under a folder (recursively), or in the folder of a policy file given directly.

    Labels name the suite relative to the path given, so the same suite beside A
    and beside B gives the same labels (and its cases dedupe).
    """
    found = CallInputs()
    for path in paths:
        root = path if path.is_dir() else path.parent
        files = suite_files([path]) if path.is_dir() else _suites_in(path.parent)
        for file in files:
            found.extend(_suite_calls(file, _suite_name(file, root), default_now), dedupe=True)
    return found


def _suites_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith((".test.yaml", ".test.yml", ".test.json"))
    )


def _suite_calls(file: Path, name: str, default_now: datetime) -> CallInputs:
    found = CallInputs()
    suite = read_suite(file)
    if isinstance(suite, list):
        for problem in suite:
            found.unparsed.append(
                Unparsed(_where(name, problem), str(problem.code), problem.message)
            )
        return found
    for case in suite.tests:
        now = case.now or suite.now or default_now
        try:
            call = parse_call(case.call)
        except CallError:
            # An expect_error case: refused alike by any policy.
            found.skipped_keys.append(json.dumps(case.call, sort_keys=True, default=str))
            continue
        found.add(LabelledCall(f"{name}: {case.name}", call, _aware(now)))
    return found


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _where(name: str, d: Diagnostic) -> str:
    return f"{name}:{d.line}" if d.line else name
