"""Smoke test of the hot-reload benchmark: it runs, and reloads fail no call.

No timing is asserted. What is asserted is behaviour: with versions swapped under
load through a real `aegis serve` process, every call was answered 200, no answer
mixed two versions, both versions answered, and the gateway counted its reloads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_reload_benchmark_quick() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.reload", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
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
