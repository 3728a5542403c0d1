"""Smoke test of the engine benchmark: it runs, and its JSON says what it should.

No timing threshold is asserted: test machines are noisy and the figures are
for humans to read (benchmarks/README.md). What is asserted is that every
section is there, the figures are positive, the 5,000-rule set compiled and
the generated call mix really produces every outcome.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmark_runner import run_benchmark

OUTCOMES = {"allow", "deny", "sanitize", "approval_needed"}
LATENCY_KEYS = {"p50_us", "p90_us", "p99_us", "max_us"}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    doc = run_benchmark("engine", "--quick", timeout=600)
    assert isinstance(doc, dict)
    return doc


def _check_latency(lat: dict[str, Any]) -> None:
    assert lat.keys() >= LATENCY_KEYS
    assert 0 < lat["p50_us"] <= lat["p90_us"] <= lat["p99_us"] <= lat["max_us"]


def test_top_level_sections(report: dict[str, Any]) -> None:
    for key in (
        "config",
        "machine",
        "targets",
        "timer_overhead",
        "baseline_direct_call",
        "examples",
        "generated",
        "scaling",
    ):
        assert key in report, key
    assert report["config"]["quick"] is True
    assert report["config"]["calls"] == 10_000
    assert report["targets"] == {"p99_us_generated": 10}
    machine = report["machine"]
    assert machine["python"] and machine["platform"]
    assert machine["cpu_count"] >= 1
    assert machine["gc_disabled_during_timed_loops"] is True
    assert "pinned" in machine["affinity"]


def test_floors(report: dict[str, Any]) -> None:
    timer = report["timer_overhead"]
    assert timer["samples"] == 10_000
    assert timer["p50_us"] >= 0
    direct = report["baseline_direct_call"]
    assert direct["p99_us"] > 0
    assert direct["calls_per_s"] > 0


def test_examples(report: dict[str, Any]) -> None:
    ex = report["examples"]
    assert ex["rules"] > 0
    assert ex["distinct_calls"] > 0
    assert ex["decisions"] == 10_000
    _check_latency(ex["latency"])
    assert ex["decisions_per_s"] > 0
    assert sum(ex["outcomes"].values()) == ex["decisions"]


def test_generated_set_compiled(report: dict[str, Any]) -> None:
    gen = report["generated"]
    assert gen["tenants"] == 100
    assert gen["rules"] == 5000
    assert gen["global_rules"] > 0
    assert gen["shadow_rules"] > 0
    assert gen["rules_with_tool_globs"] > 0
    assert set(gen["effects"]) == OUTCOMES
    compiled = gen["compile"]
    assert compiled["ok"] is True
    assert compiled["rules"] == 5000
    assert compiled["total_s"] > 0


def test_generated_figures(report: dict[str, Any]) -> None:
    gen = report["generated"]
    assert gen["decisions"] == 10_000
    _check_latency(gen["latency"])
    assert gen["decisions_per_s"] > 0
    assert gen["first_call_us"]["keys"] > 0
    assert gen["first_call_us"]["cold_median_us"] > 0
    assert gen["fresh_destinations"]["calls"] > 0


def test_generated_mix_is_real(report: dict[str, Any]) -> None:
    gen = report["generated"]
    outcomes = gen["outcomes"]
    assert set(outcomes) == OUTCOMES
    assert all(count > 0 for count in outcomes.values())
    assert sum(outcomes.values()) == gen["decisions"]
    # Both the default and rules decide; shadow rules and redactions show up.
    assert gen["codes"].get("decision.default_deny", 0) > 0
    assert gen["codes"].get("decision.denied_by_rule", 0) > 0
    assert gen["with_shadow_result"] > 0
    assert gen["with_redactions"] > 0
    categories = gen["call_categories"]
    for category in ("rule_hit", "rule_miss", "unknown_tool", "other_tenant", "global_rule"):
        assert categories.get(category, 0) > 0, category


def test_scaling(report: dict[str, Any]) -> None:
    scaling = report["scaling"]
    assert scaling["small_set"]["tenants"] == 1
    assert 0 < scaling["small_set"]["rules"] < report["generated"]["rules"]
    assert scaling["small_p50_us"] > 0
    assert scaling["small_p99_us"] > 0
    assert scaling["ratio_p50_generated_over_small"] > 0
    assert scaling["ratio_p99_generated_over_small"] > 0
    same = scaling["same_calls"]
    assert same["ratio_p50"] > 0
    assert same["ratio_p99"] > 0
