"""The shipped examples compile cleanly and pass their own policy tests."""

from __future__ import annotations

from pathlib import Path

from aegis.policy import load_policy
from aegis.policy.testing import run_suites

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCENARIOS = {
    "finance-payments",
    "deploy",
    "soc-firewall",
    "slack-posting",
    "egress",
    "ehr-export",
    "rogue-spawning",
    "approval-flood",
}


def test_every_seed_scenario_has_a_policy_and_tests() -> None:
    present = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert present >= SCENARIOS
    for name in SCENARIOS:
        assert (EXAMPLES / name / "policy.yaml").is_file()
        assert (EXAMPLES / name / "policy.test.yaml").is_file()


def test_examples_compile_together_without_warnings() -> None:
    policy = load_policy([EXAMPLES])
    assert not policy.warnings, [str(w) for w in policy.warnings]
    assert len(policy.declarations.limits) >= 3
    assert policy.declarations.approval_caps and policy.declarations.budgets


def test_example_suites_pass() -> None:
    run = run_suites([EXAMPLES])
    assert not run.errors, [str(e) for e in run.errors]
    failures = [f"{r.suite}: {r.name}: {r.problems}" for r in run.results if not r.passed]
    assert not failures
    assert run.passed >= 50
