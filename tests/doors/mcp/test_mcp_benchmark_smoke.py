"""Smoke test of the MCP proxy benchmark: it runs and its JSON has every figure.
No timing is asserted (benchmarks/mcp/README.md says how to read them)."""

from __future__ import annotations

from benchmark_runner import run_benchmark


def test_benchmark_quick_inproc_run() -> None:
    report = run_benchmark(
        "mcp", "--calls", "50", "--warmup", "10", "--modes", "inproc", timeout=120
    )
    assert report["target_added_p99_ms"] == 1.0
    mode = report["modes"]["inproc"]
    for side in ("direct", "proxy"):
        assert mode[side]["n"] == 50
        assert 0 < mode[side]["p50"] <= mode[side]["p99"] <= mode[side]["max"]
    assert set(mode["added_ms"]) == {"mean", "p50", "p90", "p99"}
    assert isinstance(mode["meets_target"], bool)
    assert report["pipeline_decide_ms"]["n"] == 50
