"""decide(): precedence, obligations, shadow mode and the Decision it returns."""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from aegis.core.call import McpPhase, ToolCall, ToolKind, parse_call
from aegis.core.decision import Outcome, new_decision_id
from aegis.policy import compile_text, decide
from aegis.policy import compiled as compiled_mod

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: engine, tenant: acme, version: "7"}
rules:
  - id: allow-post
    match: {tools: [post]}
    effect: allow
  - id: redact-email
    match: {tools: [post]}
    effect: sanitize
    sanitize: {detectors: [email]}
  - id: redact-secret-field
    match: {tools: [post]}
    when: [{param: secret, exists: true}]
    effect: sanitize
    sanitize: {fields: [secret]}
  - id: big-needs-approval
    match: {tools: [post]}
    when: [{param: size, gt: 10}]
    effect: approval_needed
    approval: {group: editors, channel: "slack:#ed", ttl: 10m}
  - id: shadow-deny-size
    mode: shadow
    match: {tools: [post]}
    when: [{param: size, gt: 5}]
    effect: deny
    reason: would block medium posts
"""


def call(**params: Any) -> ToolCall:
    return parse_call({"tenant": "acme", "agent_id": "bot", "tool": "post", "params": params})


def test_sanitize_rules_combine_and_input_is_untouched() -> None:
    policy = compile_text(POLICY)
    c = call(text="mail me at a.b@example.com", secret="hunter2", size=1)
    before = copy.deepcopy(c.params)
    d = decide(policy, c, NOW)
    assert d.outcome is Outcome.SANITIZE
    assert d.rule_ids == ("redact-email", "redact-secret-field")
    assert {(r.path, r.detector) for r in d.redactions} == {("text", "email"), ("secret", "field")}
    assert d.sanitized_params == {
        "text": "mail me at [REDACTED:email]",
        "secret": "[REDACTED]",
        "size": 1,
    }
    assert c.params == before
    body = json.dumps(d.to_dict())
    assert "hunter2" not in body and "a.b@example.com" not in body


def test_approval_carries_redactions_and_requirement() -> None:
    d = decide(compile_text(POLICY), call(text="x@y.example.org", size=11), NOW)
    assert d.outcome is Outcome.APPROVAL_NEEDED
    assert d.rule_ids == ("big-needs-approval", "redact-email")
    assert d.approval is not None
    assert (d.approval.group, d.approval.channel, d.approval.ttl_seconds) == (
        "editors",
        "slack:#ed",
        600,
    )
    assert d.sanitized_params == {"text": "[REDACTED:email]", "size": 11}


def test_shadow_records_would_be_outcome_only_when_it_differs() -> None:
    policy = compile_text(POLICY)
    medium = decide(policy, call(size=6), NOW)
    assert medium.outcome is Outcome.SANITIZE  # live: shadow deny changes nothing
    assert medium.shadow is not None
    assert medium.shadow.outcome is Outcome.DENY
    assert medium.shadow.rule_ids == ("shadow-deny-size",)
    assert medium.shadow.reason == "would block medium posts"
    small = decide(policy, call(size=1), NOW)
    assert small.shadow is None


def test_decision_identity_and_json() -> None:
    policy = compile_text(POLICY)
    d = decide(policy, call(size=1), NOW)
    assert d.policy_version == "7"
    assert d.bundle_hash == policy.bundle_hash
    parsed = uuid.UUID(d.decision_id)
    assert parsed.version == 7
    assert int(parsed.hex[:12], 16) == int(NOW.timestamp() * 1000)
    as_json = json.loads(json.dumps(d.to_dict()))
    assert as_json["outcome"] == "sanitize" and as_json["code"] == "decision.sanitized"
    assert decide(policy, call(size=1), NOW, decision_id="given").decision_id == "given"


def test_decision_ids_are_unique_and_time_ordered() -> None:
    ids = [new_decision_id(NOW) for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    later = new_decision_id(datetime(2026, 11, 23, 10, 0, 1, tzinfo=UTC))
    assert all(i < later for i in ids)
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i)
        for i in ids[:50]
    )


def test_default_deny_for_other_tenants_and_tools() -> None:
    policy = compile_text(POLICY)
    other = parse_call(
        {"tenant": "globex", "agent_id": "bot", "tool": "post", "params": {"size": 1}}
    )
    d = decide(policy, other, NOW)
    assert (d.outcome, d.code, d.rule_ids) == (Outcome.DENY, "decision.default_deny", ())


def test_memo_is_bounded_when_agents_invent_tool_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled_mod, "MEMO_LIMIT", 50)
    policy = compile_text(POLICY)
    for i in range(500):
        policy.candidates("acme", f"tool-{i}", McpPhase.CALL, ToolKind.WRITE)
        assert policy.memo_size <= 50
    assert decide(policy, call(size=1), NOW).outcome is Outcome.SANITIZE


def test_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(compile_text(POLICY), call(size=1), datetime(2026, 11, 23, 10, 0))
