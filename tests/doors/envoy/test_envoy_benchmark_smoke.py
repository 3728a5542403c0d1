"""Smoke test of ``python -m benchmarks.envoy --quick``: it runs and its JSON is whole.

No timing is asserted (test machines are noisy); the figures are for people.
"""

from __future__ import annotations

import json
import subprocess
import sys

from envoy_rig import REPO


def test_envoy_benchmark_quick_run() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.envoy", "--quick", "--no-pin"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
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
