"""Summarize a conformance run: results/summary.json and results/summary.md.

    python summarize.py RESULTS_DIR EXPECTED_FAILURES_YAML SUITE_EXIT_STATUS

A scenario passes when none of its checks is FAILURE or WARNING (the suite's
own rule for its baseline). Each scenario is compared with the baseline, so
the summary says which failures were expected and which were not.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def summarize(results: Path, baseline_file: Path, exit_status: int) -> dict[str, Any]:
    baseline = set((yaml.safe_load(baseline_file.read_text()) or {}).get("server") or [])
    scenarios: dict[str, dict[str, Any]] = {}
    for checks_file in sorted((results / "checks").glob("server-*/checks.json")):
        match = _DIR.match(checks_file.parent.name)
        if match is None:
            continue
        checks = json.loads(checks_file.read_text())
        counts: dict[str, int] = {}
        for check in checks:
            counts[check["status"]] = counts.get(check["status"], 0) + 1
        failing = [
            {"id": c["id"], "status": c["status"], "message": c.get("errorMessage")}
            for c in checks
            if c["status"] in ("FAILURE", "WARNING")
        ]
        name = match["scenario"]
        scenarios[name] = {
            "passed": not failing,
            "expected_failure": name in baseline,
            "checks": counts,
            "problems": failing,
        }
    passed = sorted(n for n, s in scenarios.items() if s["passed"])
    failed = sorted(n for n, s in scenarios.items() if not s["passed"])
    return {
        "suite_exit_status": exit_status,
        "scenarios_run": len(scenarios),
        "passed": passed,
        "failed": failed,
        "expected_failures": sorted(n for n in failed if n in baseline),
        "unexpected_failures": sorted(n for n in failed if n not in baseline),
        "stale_baseline_entries": sorted(n for n in passed if n in baseline),
        "checks": {
            status: sum(s["checks"].get(status, 0) for s in scenarios.values())
            for status in ("SUCCESS", "FAILURE", "WARNING", "INFO")
        },
        "scenarios": scenarios,
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# MCP conformance: Aegis MCP proxy",
        "",
        f"Scenarios run: {summary['scenarios_run']}, passed: {len(summary['passed'])}, "
        f"failed: {len(summary['failed'])} (expected: {len(summary['expected_failures'])}, "
        f"unexpected: {len(summary['unexpected_failures'])}).",
        f"Checks: {summary['checks']}.",
        "",
        "| scenario | result | checks |",
        "|---|---|---|",
    ]
    for name, scenario in sorted(summary["scenarios"].items()):
        if scenario["passed"]:
            result = "pass"
        elif scenario["expected_failure"]:
            result = "expected failure"
        else:
            result = "**FAIL**"
        lines.append(f"| {name} | {result} | {scenario['checks']} |")
    for name, scenario in sorted(summary["scenarios"].items()):
        for problem in scenario["problems"]:
            lines.append(
                f"\n- {name} / {problem['id']} ({problem['status']}): {problem['message']}"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    results, baseline, status = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    summary = summarize(results, baseline, status)
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (results / "summary.md").write_text(markdown(summary))
    print(
        f"[conformance] {summary['scenarios_run']} scenarios: {len(summary['passed'])} passed, "
        f"{len(summary['failed'])} failed ({len(summary['expected_failures'])} expected); "
        f"summary in {results / 'summary.md'}"
    )
    return 0 if summary["scenarios_run"] else 1


if __name__ == "__main__":
    sys.exit(main())
