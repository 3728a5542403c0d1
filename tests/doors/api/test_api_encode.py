"""The fast decision encoder writes exactly what ``json.dumps(decision.to_dict())`` would."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aegis.core.call import parse_call
from aegis.core.decision import (
    ApprovalRequirement,
    Decision,
    Outcome,
    Redaction,
    ShadowResult,
)
from aegis.doors.api.encode import FAST_PATH_KEYS, encode_decision, encode_json
from aegis.errors import CallError, ErrorCode
from aegis.policy import CompiledPolicy, decide
from aegis.policy import testing as policy_tests
from aegis.policy.source import read_source

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

BASE = Decision(
    outcome=Outcome.ALLOW,
    reason="allowed",
    code=ErrorCode.DECISION_ALLOWED,
    rule_ids=("r1",),
    policy_version="v1",
    bundle_hash="sha256:00",
    decision_id="019ab2c3-4d5e-7f60-8a1b-2c3d4e5f6071",
)

SYNTHETIC = {
    "plain": BASE,
    "no-rules": BASE._replace(rule_ids=()),
    "many-rules": BASE._replace(rule_ids=("a", "b", "c")),
    "approval-id-only": BASE._replace(approval_id="apr_1"),
    "escapes": BASE._replace(reason='quote " backslash \\ newline \n tab \t nul \x00'),
    "non-ascii": BASE._replace(reason="zahlung über 5.000 € — 払い", rule_ids=("régle",)),
    "surrogate-free-emoji": BASE._replace(reason="🔒 denied"),
    "retry-after": BASE._replace(outcome=Outcome.DENY, retry_after=1.5),
    "retry-after-int": BASE._replace(outcome=Outcome.DENY, retry_after=30.0),
    "redactions": BASE._replace(
        outcome=Outcome.SANITIZE,
        redactions=(Redaction("params.body", "email"),),
        sanitized_params={"body": "[REDACTED:email]", "n": [1, 2.5, None, True]},
    ),
    "approval": BASE._replace(
        outcome=Outcome.APPROVAL_NEEDED,
        approval=ApprovalRequirement("desk", None, 1800, "r1"),
        approval_id="apr_x",
    ),
    "shadow": BASE._replace(shadow=ShadowResult(Outcome.DENY, ("s1",), "would deny")),
}


def reference(decision: Decision) -> bytes:
    return encode_json(decision.to_dict()).encode()


def test_fast_path_keys_are_the_decision_fields_in_order() -> None:
    assert tuple(BASE.to_dict()) == FAST_PATH_KEYS


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_decisions(name: str) -> None:
    decision = SYNTHETIC[name]
    assert encode_decision(decision) == reference(decision)
    assert json.loads(encode_decision(decision)) == json.loads(json.dumps(decision.to_dict()))
    assert encode_decision(decision).isascii()


def test_every_example_decision(examples_policy: CompiledPolicy) -> None:
    checked = 0
    for file in policy_tests.suite_files([EXAMPLES]):
        suite = policy_tests.TestSuite.model_validate(read_source(file).data)
        for case in suite.tests:
            try:
                call = parse_call(case.call)
            except CallError:
                continue
            now = case.now or suite.now or datetime.now(UTC)
            decision = decide(examples_policy, call, now)
            for variant in (decision, decision._replace(approval_id="apr_" + decision.decision_id)):
                assert encode_decision(variant) == reference(variant), case.name
                checked += 1
    assert checked >= 80


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_decision(BASE._replace(retry_after=float("inf")))
