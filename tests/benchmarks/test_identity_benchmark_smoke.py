"""Smoke test of the identity benchmark: it runs ``--quick`` and its JSON is complete.

No timing threshold is asserted (test machines are noisy); only the structure,
that both gateways answered every request, and that both decided alike.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmark_runner import run_benchmark

MODES = ("unverified", "tokens")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    doc = run_benchmark("identity", "--quick")
    assert isinstance(doc, dict)
    return doc


def test_sections(report: dict[str, Any]) -> None:
    for key in ("config", "machine", "target", "micro", "preflight", "results", "comparison"):
        assert key in report, key
    config = report["config"]
    assert config["quick"] is True
    assert config["duration_s"] == 2.0
    assert config["connections"] == 64
    assert config["distinct_calls"] > 0
    assert config["tokens_with_chain"] > 0
    assert config["max_chain_depth"] >= 2
    assert report["target"] == {"max_throughput_cost": 0.15}


def test_micro(report: dict[str, Any]) -> None:
    micro = report["micro"]
    for key in ("verify_us_cache_miss", "verify_us_cache_hit", "authenticate_us_cache_hit"):
        assert micro[key] > 0, key
    assert micro["signature_checks"] >= micro["iterations"]


def test_both_gateways_decide_alike(report: dict[str, Any]) -> None:
    pre = report["preflight"]
    for mode in MODES:
        assert set(pre[mode]["statuses"]) == {"200"}
        assert not any(code.startswith("identity.") for code in pre[mode]["codes"])
    assert pre["same_outcomes"] is True


def test_results(report: dict[str, Any]) -> None:
    for mode in MODES:
        result = report["results"][mode]
        assert result["decisions_per_s"] > 0
        assert 0 < result["p50_ms"] <= result["p99_ms"]
        assert result["errors"] == 0
        assert set(result["statuses"]) == {"200"}
        cpu = result["server_cpu_us_per_request"]
        assert cpu is None or cpu > 0


def test_comparison(report: dict[str, Any]) -> None:
    comparison = report["comparison"]
    assert comparison["tokens_over_unverified_throughput"] > 0
    assert comparison["throughput_cost"] == pytest.approx(
        1 - comparison["tokens_over_unverified_throughput"], abs=0.002
    )
    assert isinstance(comparison["meets_target"], bool)
