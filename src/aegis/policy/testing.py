"""Policy test suites: YAML files of calls and the decisions they must get.

In the spirit of ``opa test`` and Cerbos test suites, and meant for a CI job::

    # payments.test.yaml, beside the policy it tests
    policies: [payments.yaml]          # relative paths; default: the policies in this folder
    now: "2026-11-23T10:00:00Z"        # default clock for the cases (ISO 8601, with zone)
    tests:
      - name: small payment is allowed
        call: {tenant: acme, agent_id: finance-agent, tool: stripe.create_payment,
               params: {amount: 120, currency: USD}}
        expect: {outcome: allow, rule_ids: [payments-small]}
      - name: a call without a tenant is refused
        call: {agent_id: finance-agent, tool: stripe.create_payment}
        expect_error: call.missing_field

The same expectation vocabulary checks conformance cases (tests/conformance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aegis.core.call import parse_call
from aegis.core.decision import Decision
from aegis.errors import CallError, Diagnostic, ErrorCode, PolicyLoadError
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.compiler import load_policy, policy_files
from aegis.policy.engine import decide
from aegis.policy.source import read_source


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectedApproval(_Model):
    group: str | None = None
    channel: str | None = None
    ttl_seconds: int | None = None


class ExpectedShadow(_Model):
    outcome: Literal["allow", "deny", "sanitize", "approval_needed"]
    rule_ids: list[str] | None = None


class ExpectedRedaction(_Model):
    path: str
    detector: str


class Expectation(_Model):
    """What a decision must look like. Only the keys written are checked."""

    outcome: Literal["allow", "deny", "sanitize", "approval_needed"]
    rule_ids: list[str] | None = None
    code: str | None = None
    reason_contains: str | None = None
    redactions: list[ExpectedRedaction] | None = None
    sanitized_params: dict[str, Any] | None = None
    approval: ExpectedApproval | None = None
    shadow: ExpectedShadow | None = None
    no_shadow: bool = False


class TestCase(_Model):
    name: str
    call: Any  # validated by parse_call, which names what is wrong
    now: datetime | None = None
    expect: Expectation | None = None
    expect_error: str | None = Field(default=None, description="A call.* error code.")


class TestSuite(_Model):
    policies: list[str] | None = None
    now: datetime | None = None
    tests: list[TestCase] = Field(min_length=1)


def check_decision(decision: Decision, expect: Expectation) -> list[str]:
    """Differences between a decision and an expectation, as readable lines."""
    problems: list[str] = []
    if str(decision.outcome) != expect.outcome:
        problems.append(f"outcome: got {decision.outcome}, want {expect.outcome}")
    if expect.rule_ids is not None and list(decision.rule_ids) != expect.rule_ids:
        problems.append(f"rule_ids: got {list(decision.rule_ids)}, want {expect.rule_ids}")
    if expect.code is not None and str(decision.code) != expect.code:
        problems.append(f"code: got {decision.code}, want {expect.code}")
    if expect.reason_contains is not None and expect.reason_contains not in decision.reason:
        problems.append(f"reason {decision.reason!r} lacks {expect.reason_contains!r}")
    if expect.redactions is not None:
        got = sorted((r.path, r.detector) for r in decision.redactions)
        want = sorted((r.path, r.detector) for r in expect.redactions)
        if got != want:
            problems.append(f"redactions: got {got}, want {want}")
    if expect.sanitized_params is not None and decision.sanitized_params != expect.sanitized_params:
        problems.append(
            f"sanitized_params: got {decision.sanitized_params}, want {expect.sanitized_params}"
        )
    if expect.approval is not None:
        a = decision.approval
        if a is None:
            problems.append("approval: got none")
        else:
            for key in ("group", "channel", "ttl_seconds"):
                want_v = getattr(expect.approval, key)
                if want_v is not None and getattr(a, key) != want_v:
                    problems.append(f"approval.{key}: got {getattr(a, key)!r}, want {want_v!r}")
    if expect.shadow is not None:
        s = decision.shadow
        if s is None:
            problems.append(f"shadow: got none, want {expect.shadow.outcome}")
        else:
            if str(s.outcome) != expect.shadow.outcome:
                problems.append(f"shadow.outcome: got {s.outcome}, want {expect.shadow.outcome}")
            if expect.shadow.rule_ids is not None and list(s.rule_ids) != expect.shadow.rule_ids:
                problems.append(
                    f"shadow.rule_ids: got {list(s.rule_ids)}, want {expect.shadow.rule_ids}"
                )
    if expect.no_shadow and decision.shadow is not None:
        problems.append(f"shadow: got {decision.shadow.outcome}, want none")
    return problems


@dataclass(frozen=True, slots=True)
class CaseResult:
    suite: str
    name: str
    passed: bool
    problems: tuple[str, ...] = ()
    decision: Decision | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "name": self.name,
            "passed": self.passed,
            "problems": list(self.problems),
            "decision": self.decision.to_dict() if self.decision else None,
        }


@dataclass(slots=True)
class SuiteRun:
    """Results of every suite run; ``errors`` are suites or policies that did not load."""

    results: list[CaseResult] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.passed)


def run_case(policy: CompiledPolicy, case: TestCase, default_now: datetime) -> CaseResult:
    now = case.now or default_now
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        call = parse_call(case.call)
    except CallError as exc:
        if case.expect_error == str(exc.code):
            return CaseResult("", case.name, True)
        want = case.expect_error or (case.expect.outcome if case.expect else "?")
        return CaseResult("", case.name, False, (f"call refused with {exc}; want {want}",))
    decision = decide(policy, call, now)
    if case.expect_error is not None:
        return CaseResult(
            "",
            case.name,
            False,
            (f"want error {case.expect_error}, got decision {decision.outcome}",),
            decision,
        )
    if case.expect is None:
        return CaseResult("", case.name, False, ("case has neither expect nor expect_error",))
    problems = check_decision(decision, case.expect)
    return CaseResult("", case.name, not problems, tuple(problems), decision)


def suite_files(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.name.endswith((".test.yaml", ".test.yml", ".test.json"))
                )
            )
        else:
            found.append(path)
    return found


def read_suite(file: Path) -> TestSuite | list[Diagnostic]:
    """One suite file, read safely and validated; else its problems, each with file,
    line and column (``test.invalid_suite`` for a suite that does not validate)."""
    parsed = read_source(file)
    if isinstance(parsed, Diagnostic):
        return [parsed]
    try:
        return TestSuite.model_validate(parsed.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            line, col = parsed.locate(tuple(err["loc"]))
            where = ".".join(str(p) for p in err["loc"])
            problems.append(
                Diagnostic(
                    ErrorCode.TEST_INVALID_SUITE,
                    f"{where}: {err['msg']}",
                    file=str(file),
                    line=line,
                    column=col,
                )
            )
        return problems


def run_suites(paths: Sequence[Path], *, default_now: datetime | None = None) -> SuiteRun:
    """Run every ``*.test.yaml`` under ``paths``; policies compile once per distinct set."""
    run = SuiteRun()
    files = suite_files(paths)
    if not files:
        where = ", ".join(str(p) for p in paths)
        run.errors.append(Diagnostic(ErrorCode.TEST_NO_SUITES, f"no *.test.yaml files in {where}"))
        return run
    compiled: dict[tuple[Path, ...], CompiledPolicy | PolicyLoadError] = {}
    for file in files:
        suite = read_suite(file)
        if isinstance(suite, list):
            run.errors.extend(suite)
            continue
        if suite.policies is None:
            targets = tuple(p.resolve() for p in policy_files([file.parent]))
        else:
            targets = tuple((file.parent / p).resolve() for p in suite.policies)
        if targets not in compiled:
            try:
                compiled[targets] = load_policy(list(targets))
            except PolicyLoadError as exc:
                compiled[targets] = exc
                run.errors.extend(exc.diagnostics)
        policy = compiled[targets]
        if isinstance(policy, PolicyLoadError):
            continue
        now = suite.now or default_now or datetime.now(UTC)
        for case in suite.tests:
            result = run_case(policy, case, now)
            run.results.append(
                CaseResult(str(file), result.name, result.passed, result.problems, result.decision)
            )
    return run
