"""Smoke test of ``python -m benchmarks.api``: it runs, bounded, and its JSON says what
it should. No timing is asserted (benchmarks/api/README.md: figures are for people)."""

from __future__ import annotations

from benchmark_runner import run_benchmark


def test_benchmark_runs_and_reports() -> None:
    report = run_benchmark(
        "api",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--connections",
        "1, 2",
        "--no-wrk",
        timeout=180,
    )
    assert report["config"]["connections"] == [1, 2]
    assert report["config"]["keep_alive"] is True and report["config"]["pipelining"] is False
    assert report["machine"]["cpu_count"] >= 1 and "note" in report["machine"]
    assert set(report["preflight"]["decide"]["outcomes"]) == {
        "allow",
        "deny",
        "sanitize",
        "approval_needed",
    }
    assert report["preflight"]["decide"]["statuses"] == {"200": report["config"]["distinct_calls"]}
    for side in ("decision_api", "bare_baseline"):
        for key in ("c1", "c2"):
            run = report[side][key]
            assert run["requests"] > 0 and run["errors"] == 0
            assert set(run["statuses"]) == {"200"}
            lat = run["latency_ms"]
            assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert set(report["ratios"]) == {"c1", "c2"}
    assert report["wrk"] is None
    assert report["verdict"]["meets_p99_target_at_1"] in {True, False}
