"""Smoke test of the hot-reload benchmark: it runs, and reloads fail no call.

No timing is asserted. What is asserted is behaviour: with versions swapped under
load through a real `aegis serve` process, every call was answered 200, no answer
mixed two versions, both versions answered, and the gateway counted its reloads.
"""

from __future__ import annotations

from benchmark_runner import run_benchmark


def test_reload_benchmark_quick() -> None:
    doc = run_benchmark("reload", "--quick")
    assert doc["failed_calls"] == {"steady": 0, "reload": 0}
    assert doc["mixed_versions"] == 0
    assert doc["met"] is True
    assert doc["reload"]["swaps"] >= 2
    assert doc["reload"]["checker"]["versions_seen"] == 2
    assert doc["reloads"]["activated"] >= 2 and doc["reloads"]["failed"] == 0
    for phase in ("steady", "reload"):
        load = doc[phase]["load"]
        assert load["requests"] > 0 and set(load["statuses"]) == {"200"}
        assert {"p50", "p99", "max"} <= set(load["latency_ms"])
