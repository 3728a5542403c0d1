"""Replays every tests/conformance/*.yaml case through the native engine."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from aegis.errors import ErrorCode
from aegis.testing.conformance import ConformanceCase, load_cases, run_conformance_case

HERE = Path(__file__).parent
CASES = load_cases(HERE)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: ConformanceCase) -> None:
    problems = run_conformance_case(case)
    assert not problems, "\n".join(problems)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 150


def test_every_policy_error_code_has_a_case() -> None:
    """Each compile-time code (errors and warnings) is exercised by at least one file."""
    seen: Counter[str] = Counter()
    for case in CASES:
        if case.spec.expect_error:
            seen[case.spec.expect_error.code] += 1
        for code in case.spec.expect_warnings or ():
            seen[code] += 1
    wanted = {
        str(c)
        for c in ErrorCode
        if str(c).startswith("policy.")
        # Filesystem and size conditions are unit-tested (tests/policy): a case file
        # cannot hold a 4 MiB policy or a missing directory.
        and c
        not in (
            ErrorCode.POLICY_IO,
            ErrorCode.POLICY_NO_FILES,
            ErrorCode.POLICY_TOO_MANY_RULES,
            ErrorCode.POLICY_FILE_TOO_LARGE,
        )
    }
    missing = sorted(wanted - set(seen))
    assert not missing, f"no conformance case for: {missing}"


def test_every_call_and_decision_code_has_a_case() -> None:
    seen: set[str] = set()
    for case in CASES:
        for cc in case.spec.cases:
            if cc.expect_error:
                seen.add(cc.expect_error)
            if cc.expect and cc.expect.code:
                seen.add(cc.expect.code)
    # Codes the policy engine itself produces; the pipeline's own (fail modes,
    # refusals by limits, kill switch and chain checks) are tested in tests/pipeline.
    pipeline_codes = {
        ErrorCode.CALL_INVALID_JSON,
        ErrorCode.DECISION_FAIL_CLOSED,
        ErrorCode.DECISION_FAIL_OPEN,
        ErrorCode.DECISION_LIMIT_EXCEEDED,
        ErrorCode.DECISION_REVOKED,
        ErrorCode.DECISION_SUSPENDED,
        ErrorCode.DECISION_CHAIN_MISMATCH,
    }
    wanted = {
        str(c)
        for c in ErrorCode
        if str(c).startswith(("call.", "decision.")) and c not in pipeline_codes
    }
    missing = sorted(wanted - seen)
    assert not missing, f"no conformance case for: {missing}"
