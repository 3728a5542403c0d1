"""`aegis.policy.diff`: rule, default and declaration changes between two policies,
and exactly the calls (test cases, recorded or raw) that they decide differently."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aegis.audit.export import write_jsonl
from aegis.audit.record import GENESIS_HASH, RecordKind, make_record
from aegis.bundles import build_bundle, load_bundle
from aegis.policy.compiler import load_policy
from aegis.policy.diff import (
    CallInputs,
    PolicyDiff,
    Side,
    calls_from_jsonl,
    calls_from_suites,
    diff_policies,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SUITE = "policy.test.yaml: "


def _copy(example: str, dest: Path) -> Path:
    shutil.copytree(EXAMPLES / example, dest)
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _diff(a: Path, b: Path, extra: CallInputs | None = None) -> PolicyDiff:
    inputs = CallInputs()
    for side in (a, b):
        inputs.extend(calls_from_suites([side], NOW), dedupe=True)
    if extra is not None:
        inputs.extend(extra)
    return diff_policies(Side(load_policy([a]), str(a)), Side(load_policy([b]), str(b)), inputs)


def _flipped(diff: PolicyDiff) -> set[str]:
    return {c.label for c in diff.call_changes}


def test_identical_policies_have_no_differences(tmp_path: Path) -> None:
    a = _copy("finance-payments", tmp_path / "a")
    b = _copy("finance-payments", tmp_path / "b")
    diff = _diff(a, b)
    assert not diff.differs
    assert (diff.added, diff.removed, diff.changed, diff.call_changes) == ((), (), (), ())
    # Ten cases in the suite beside each side: the nine calls are replayed once
    # each (deduplicated across A and B); the malformed-call case is skipped once.
    assert (diff.evaluated, diff.skipped, diff.unparsed) == (9, 1, ())
    body = diff.to_dict()
    assert body["a"]["bundle_hash"] == body["b"]["bundle_hash"]
    assert body["rules"] == {"added": [], "removed": [], "changed": []}


def test_added_removed_changed_rules_and_the_exact_calls_that_flip(tmp_path: Path) -> None:
    a = _copy("finance-payments", tmp_path / "a")
    b = _copy("finance-payments", tmp_path / "b")
    policy = b / "policy.yaml"
    _edit(policy, "lte: 5000", "lte: 1000")  # payments-small: condition
    _edit(policy, "ttl: 30m", "ttl: 1h")  # payments-large-approval: approval only
    _edit(  # payments-balance-read removed, planner-blocked added in its place
        policy,
        "  - id: payments-balance-read\n    match:\n      agents: [finance-agent]\n"
        "      tools: [stripe.get_balance]\n    effect: allow\n",
        "  - id: planner-blocked\n    match:\n      agents: [planner]\n"
        "      tools: [stripe.create_payment]\n    effect: deny\n",
    )
    diff = _diff(a, b)

    assert diff.differs
    assert [r.id for r in diff.added] == ["planner-blocked"]
    assert diff.added[0].effect == "deny" and diff.added[0].where.endswith("/b/policy.yaml:51")
    assert [r.id for r in diff.removed] == ["payments-balance-read"]
    assert [(c.id, c.fields) for c in diff.changed] == [
        ("payments-small", ("when",)),
        ("payments-large-approval", ("approval",)),
    ]
    # Exactly these cases change; the approval ttl change flips none of them.
    assert _flipped(diff) == {
        SUITE + "exactly 5,000 is still allowed",  # allow -> default deny
        SUITE + "reading the balance is allowed",  # its rule is gone
        SUITE + "another agent cannot pay",  # deny either way, now by a rule
    }
    by_label = {c.label: c for c in diff.call_changes}
    five_k = by_label[SUITE + "exactly 5,000 is still allowed"]
    assert (five_k.a.outcome, five_k.a.rule_ids) == ("allow", ("payments-small",))
    assert (five_k.b.outcome, five_k.b.rule_ids) == ("deny", ())
    planner = by_label[SUITE + "another agent cannot pay"].to_dict()
    assert planner["agent_id"] == "planner" and planner["tool"] == "stripe.create_payment"
    assert planner["a"]["rule_ids"] == [] and planner["b"]["rule_ids"] == ["planner-blocked"]
    assert planner["a"]["outcome"] == planner["b"]["outcome"] == "deny"
    assert diff.evaluated == 9


def test_a_redaction_change_alone_is_a_changed_call(tmp_path: Path) -> None:
    a = _copy("slack-posting", tmp_path / "a")
    b = _copy("slack-posting", tmp_path / "b")
    _edit(b / "policy.yaml", "us_ssn, credit_card, iban", "us_ssn, iban")
    diff = _diff(a, b)
    assert [(c.id, c.fields) for c in diff.changed] == [("slack-redact-pii", ("sanitize",))]
    (change,) = diff.call_changes
    assert change.label == SUITE + "an email address and a card number are redacted"
    assert change.a.outcome == change.b.outcome == "sanitize"
    assert change.a.rule_ids == change.b.rule_ids
    assert change.a.redactions == (("text", "credit_card"), ("text", "email"))
    assert change.b.redactions == (("text", "email"),)


def test_defaults_declarations_and_the_document_tenant(tmp_path: Path) -> None:
    a = _copy("finance-payments", tmp_path / "a")
    b = _copy("finance-payments", tmp_path / "b")
    policy = b / "policy.yaml"
    _edit(policy, "    cost: 0.01\n", "    cost: 0.02\n")
    _edit(
        policy,
        "  - name: stripe.get_balance\n",
        "  - name: stripe.refund\n    kind: write\n  - name: stripe.get_balance\n",
    )
    _edit(policy, "tools:\n", "defaults:\n  fail_mode: {read: open}\n\ntools:\n")
    _edit(policy, "  tenant: acme\n  owner", "  tenant: globex\n  owner")
    diff = _diff(a, b)
    assert dict(diff.defaults) == {"fail_mode.read": ("closed", "open")}
    tools = diff.declarations["tools"]
    assert tools.added == ("stripe.refund",) and tools.removed == ()
    assert [(c.id, c.fields) for c in tools.changed] == [("stripe.create_payment", ("cost",))]
    assert set(diff.declarations) == {"tools"}
    # metadata.tenant is outside the rules' models but scopes every one of them.
    assert {c.id: c.fields for c in diff.changed} == {
        "payments-small": ("tenants",),
        "payments-large-approval": ("tenants",),
        "payments-balance-read": ("tenants",),
    }
    assert diff.to_dict()["defaults"] == {"fail_mode.read": {"a": "closed", "b": "open"}}


def test_jsonl_raw_calls_with_their_own_clock_and_a_malformed_line(tmp_path: Path) -> None:
    a = _copy("finance-payments", tmp_path / "a")
    b = _copy("finance-payments", tmp_path / "b")
    _edit(b / "policy.yaml", "lte: 5000", "lte: 1000")
    pay = {"tenant": "acme", "agent_id": "finance-agent", "tool": "stripe.create_payment"}
    lines = [
        json.dumps({**pay, "params": {"amount": 3000, "currency": "USD"}}),  # flips
        json.dumps({**pay, "params": {"amount": 50, "currency": "USD"}, "now": "2027-01-01T00:00"}),
        "{not json",
        "",  # blank lines are not inputs
        json.dumps([1, 2]),
        json.dumps({"agent_id": "x", "tool": "t"}),  # no tenant
        json.dumps({**pay, "params": {"amount": 2000, "currency": "EUR"}, "now": "soon"}),
    ]
    raw = calls_from_jsonl("\n".join(lines).encode(), "calls.jsonl", NOW)
    assert [c.label for c in raw.calls] == ["calls.jsonl:1", "calls.jsonl:2"]
    assert raw.calls[1].now == datetime(2027, 1, 1, tzinfo=UTC)  # naive means UTC
    assert raw.calls[0].now == NOW
    assert [(u.label, u.code) for u in raw.unparsed] == [
        ("calls.jsonl:3", "call.invalid_json"),
        ("calls.jsonl:5", "call.not_an_object"),
        ("calls.jsonl:6", "call.missing_field"),
        ("calls.jsonl:7", "call.invalid_value"),
    ]
    diff = _diff(a, b, raw)
    assert "calls.jsonl:1" in _flipped(diff) and "calls.jsonl:2" not in _flipped(diff)
    assert diff.evaluated == 11
    assert len(diff.to_dict()["calls"]["unparsed"]) == 4
    assert not any(c.label.startswith("calls.jsonl:3") for c in diff.call_changes)


def test_an_audit_export_is_replayed_at_each_record_time(tmp_path: Path) -> None:
    body = {
        "decision_id": "d-1",
        "outcome": "allow",
        "rule_ids": ["payments-small"],
        "tenant": "acme",
        "agent_id": "finance-agent",
        "parent_chain": [],
        "session_id": None,
        "tool": "stripe.create_payment",
        "kind": "write",
        "params": {"amount": 4000, "currency": "USD"},
        "redactions": [],
        "destination": None,
        "cost_estimate": "0.01",
    }
    first = make_record(
        seq=0,
        kind=RecordKind.DECISION,
        time="2026-11-20T09:00:00.000000Z",
        tenant="acme",
        body=body,
        prev_hash=GENESIS_HASH,
    )
    second = make_record(
        seq=1,
        kind=RecordKind.INCIDENT,
        time="2026-11-20T09:00:01.000000Z",
        tenant="acme",
        body={"what": "not a call"},
        prev_hash=first.hash,
    )
    out = io.StringIO()
    write_jsonl([first, second], [], out)
    found = calls_from_jsonl(out.getvalue().encode(), "audit.jsonl", NOW)
    # Line 1 is the export header, line 3 an incident record: not calls, counted.
    assert [c.label for c in found.calls] == ["audit.jsonl:2"]
    assert (found.skipped, found.unparsed) == (2, [])
    (item,) = found.calls
    assert item.now == datetime(2026, 11, 20, 9, tzinfo=UTC)
    assert item.call.params == {"amount": 4000, "currency": "USD"}
    assert item.call.cost_estimate == 0.01

    a = _copy("finance-payments", tmp_path / "a")
    b = _copy("finance-payments", tmp_path / "b")
    _edit(b / "policy.yaml", "lte: 5000", "lte: 1000")
    diff = _diff(a, b, found)
    assert "audit.jsonl:2" in _flipped(diff)


def test_a_broken_suite_is_reported_not_dropped(tmp_path: Path) -> None:
    a = _copy("finance-payments", tmp_path / "a")
    (a / "broken.test.yaml").write_text("tests: []\n", encoding="utf-8")
    found = calls_from_suites([a], NOW)
    assert [(u.label.split(":")[0], u.code) for u in found.unparsed] == [
        ("broken.test.yaml", "test.invalid_suite")
    ]
    assert len(found.calls) == 9
    # Beside a policy file named directly, the suites of its folder are used.
    assert len(calls_from_suites([a / "policy.yaml"], NOW).calls) == 9


def test_a_bundle_against_the_folder_it_was_built_from(tmp_path: Path) -> None:
    folder = _copy("finance-payments", tmp_path / "src")
    bundle = load_bundle(build_bundle([folder], use_git=False, revision="r1"))
    diff = diff_policies(
        Side(bundle.compiled_policy, "bundle.tar.gz", bundle.manifest.revision),
        Side(load_policy([folder]), str(folder)),
        calls_from_suites([folder], NOW),
    )
    assert not diff.differs
    assert diff.to_dict()["a"]["revision"] == "r1"
    assert diff.a.compiled.bundle_hash == diff.b.compiled.bundle_hash


@pytest.mark.parametrize("example", ["egress", "ehr-export", "soc-firewall", "deploy"])
def test_every_example_diffs_empty_against_itself(example: str) -> None:
    diff = _diff(EXAMPLES / example, EXAMPLES / example)
    assert not diff.differs and diff.evaluated > 0 and not diff.unparsed
