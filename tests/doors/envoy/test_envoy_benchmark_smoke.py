"""Smoke test of ``python -m benchmarks.envoy --quick``: it runs and its JSON is whole.

No timing is asserted (test machines are noisy); the figures are for people.
"""

from __future__ import annotations

from benchmark_runner import run_benchmark


def test_envoy_benchmark_quick_run() -> None:
    report = run_benchmark("envoy", "--quick", "--no-pin")
    for section in ("aegis", "baseline_bare"):
        result = report[section]
        assert result["answered"] == result["requests"] > 0
        assert not result["errors"]
        assert {"p50", "p99", "max"} <= set(result["latency_ms"])
        assert result["latency_ms"]["p50"] > 0
    answers = report["aegis"]["answers"]
    # The mix really exercises the outcomes (bare says 200 to everything).
    assert {"allow:200", "approval_needed:428", "deny:403", "sanitize_refused:403"} <= set(answers)
    assert set(report["baseline_bare"]["answers"]) == {
        key.split(":")[0] + ":200" for key in answers
    }
    assert report["verdict"] == "not_at_target_rate"
