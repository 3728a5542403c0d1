"""The decision JSON read back into Decision values, and decisions turned into exceptions."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime

import pytest
from sdk_standin import EXAMPLES

from aegis.core.decision import (
    ApprovalRequirement,
    Decision,
    Outcome,
    Redaction,
    ShadowResult,
)
from aegis.errors import AegisError, CallError, ErrorCode
from aegis.policy.testing import run_suites
from aegis.sdk import (
    AegisRequestError,
    AegisSDKError,
    AegisTimeout,
    AegisUnavailable,
    ApprovalRequired,
    InvalidCall,
    PolicyViolation,
    ProtocolError,
    RateLimited,
    decision_from_dict,
    raise_for_decision,
    violation_for,
)

BASE = Decision(
    outcome=Outcome.DENY,
    reason="no",
    code=ErrorCode.DECISION_DENIED_BY_RULE,
    rule_ids=("r1", "r2"),
    policy_version="v1",
    bundle_hash="sha256:abc",
    decision_id="0190-1",
)

RICH = [
    BASE,
    BASE._replace(
        outcome=Outcome.SANITIZE,
        code=ErrorCode.DECISION_SANITIZED,
        redactions=(Redaction("a.b[0]", "email"), Redaction("c", "field")),
        sanitized_params={"a": {"b": ["[REDACTED:email]"]}, "c": "[REDACTED]", "n": 1.5},
    ),
    BASE._replace(
        outcome=Outcome.APPROVAL_NEEDED,
        code=ErrorCode.DECISION_APPROVAL_REQUIRED,
        approval=ApprovalRequirement("desk", None, 60, "r1"),
        approval_id="apr_1",
    ),
    BASE._replace(retry_after=2.5, code=ErrorCode.DECISION_LIMIT_EXCEEDED, rule_ids=()),
    BASE._replace(
        outcome=Outcome.ALLOW,
        code=ErrorCode.DECISION_ALLOWED,
        shadow=ShadowResult(Outcome.DENY, ("shadow-r",), "would deny"),
    ),
]


def _round_trip(decision: Decision) -> Decision:
    return decision_from_dict(json.loads(json.dumps(decision.to_dict())))


@pytest.mark.parametrize("decision", RICH, ids=lambda d: str(d.outcome))
def test_round_trip_keeps_every_field(decision: Decision) -> None:
    back = _round_trip(decision)
    assert back == decision
    assert isinstance(back.code, ErrorCode) and isinstance(back.outcome, Outcome)
    assert all(isinstance(r, Redaction) for r in back.redactions)


def test_round_trip_of_every_example_decision() -> None:
    run = run_suites([EXAMPLES], default_now=datetime(2026, 11, 23, 10, tzinfo=UTC))
    decisions = [r.decision for r in run.results if r.decision is not None]
    assert len(decisions) >= 40
    for decision in decisions:
        assert _round_trip(decision) == decision


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"outcome": 1}, "outcome must be a string"),
        ({"rule_ids": "r1"}, "rule_ids"),
        ({"redactions": [{"path": "a"}]}, "detector"),
        ({"approval": {"group": "g", "ttl_seconds": "60"}}, "ttl_seconds"),
        ({"retry_after": float("inf")}, "retry_after"),
        ({"retry_after": True}, "retry_after"),
        ({"sanitized_params": [1]}, "sanitized_params"),
        ({"shadow": {"outcome": "perhaps"}}, "shadow.outcome"),
        ({"approval_id": 7}, "approval_id"),
    ],
)
def test_malformed_fields_are_protocol_errors(change: dict[str, object], message: str) -> None:
    data = BASE.to_dict() | change
    with pytest.raises(ProtocolError, match=message):
        decision_from_dict(data)


def test_optional_fields_may_be_absent() -> None:
    decision = decision_from_dict({"outcome": "allow", "decision_id": "d"})
    assert decision.code is ErrorCode.DECISION_ALLOWED
    assert decision.rule_ids == () and decision.approval is None


# -- exceptions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        (BASE._replace(outcome=Outcome.ALLOW), None),
        (BASE._replace(outcome=Outcome.SANITIZE, sanitized_params={}), None),
        (BASE, PolicyViolation),
        (BASE._replace(outcome=Outcome.APPROVAL_NEEDED, approval_id="apr_1"), ApprovalRequired),
        (BASE._replace(retry_after=1.0), RateLimited),
        (BASE._replace(code=ErrorCode.DECISION_LIMIT_EXCEEDED), RateLimited),
        (BASE._replace(code=ErrorCode.DECISION_FAIL_CLOSED), PolicyViolation),
    ],
)
def test_violation_for(decision: Decision, expected: type[PolicyViolation] | None) -> None:
    violation = violation_for(decision)
    if expected is None:
        assert violation is None
        assert raise_for_decision(decision) is decision
    else:
        assert type(violation) is expected
        with pytest.raises(expected):
            raise_for_decision(decision)


def test_policy_violation_exposes_the_decision() -> None:
    decision = BASE._replace(
        outcome=Outcome.APPROVAL_NEEDED,
        code=ErrorCode.DECISION_APPROVAL_REQUIRED,
        approval=ApprovalRequirement("desk", "slack:#x", 60, "r1"),
        approval_id="apr_9",
        retry_after=None,
    )
    exc = violation_for(decision)
    assert isinstance(exc, ApprovalRequired)
    assert exc.decision is decision
    assert (exc.code, exc.outcome, exc.reason) == (decision.code, decision.outcome, "no")
    assert (exc.rule_ids, exc.policy_version, exc.bundle_hash) == (("r1", "r2"), "v1", "sha256:abc")
    assert (exc.decision_id, exc.approval_id, exc.retry_after) == ("0190-1", "apr_9", None)
    assert exc.approval == decision.approval
    assert exc.to_dict() == decision.error_body()
    assert str(exc) == "decision.approval_required: no [rules: r1, r2] (decision 0190-1)"


def test_exceptions_pickle() -> None:
    # Exceptions cross process boundaries (multiprocessing, task queues).
    exc = violation_for(BASE._replace(retry_after=3.0))
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is RateLimited and back.decision == exc.decision  # type: ignore[union-attr]
    for other in (
        AegisUnavailable(ErrorCode.REQUEST_UPSTREAM_FAILED, "down"),
        AegisTimeout(ErrorCode.PIPELINE_TIMEOUT, "slow"),
        ProtocolError("garbled"),
        AegisRequestError(ErrorCode.IDENTITY_INVALID, "bad token", status=401),
    ):
        copy = pickle.loads(pickle.dumps(other))
        assert (type(copy), copy.code, copy.message) == (type(other), other.code, other.message)
        assert copy.__dict__ == other.__dict__
    invalid = InvalidCall(ErrorCode.CALL_TOO_DEEP, "deep", "params.a", status=400)
    back_invalid = pickle.loads(pickle.dumps(invalid))
    assert (back_invalid.code, back_invalid.path, back_invalid.status) == (
        ErrorCode.CALL_TOO_DEEP,
        "params.a",
        400,
    )


def test_hierarchy_is_the_documented_tree() -> None:
    assert issubclass(AegisSDKError, AegisError)
    for cls in (PolicyViolation, AegisUnavailable, AegisRequestError):
        assert cls.__bases__ == (AegisSDKError,)
    assert ApprovalRequired.__bases__ == (PolicyViolation,)
    assert RateLimited.__bases__ == (PolicyViolation,)
    assert AegisTimeout.__bases__ == (AegisUnavailable,)
    assert ProtocolError.__bases__ == (AegisUnavailable,)
    assert InvalidCall.__bases__ == (AegisRequestError, CallError)
    from aegis.sdk import errors

    for name in ("PolicyViolation", "ApprovalRequired", "RateLimited", "AegisUnavailable"):
        assert name in (errors.__doc__ or "")
