"""Smoke test of the proxy benchmark: it runs, and its JSON says what it should.

No timing is asserted (benchmarks/README.md: figures are for humans to read on a
noisy machine); what is asserted is that every section is there, each figure is
positive and ordered, and the run was as large as asked.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmark_runner import run_benchmark

SECTIONS = ("http_keepalive", "connect_roundtrip", "connect_setup")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    doc = run_benchmark("proxy", "--requests", "300")
    assert isinstance(doc, dict)
    return doc


def test_sections_and_config(report: dict[str, Any]) -> None:
    assert report["config"] == {"requests": 300, "quick": False, "connections": 1}
    assert report["targets"] == {"added_p99_ms": 1.0}
    assert report["machine"]["cpu_count"] >= 1
    for section in SECTIONS:
        assert section in report, section


@pytest.mark.parametrize("section", SECTIONS)
def test_figures(report: dict[str, Any], section: str) -> None:
    data = report[section]
    expected = 300 if section != "connect_setup" else 100
    for side in ("direct", "proxy"):
        lat = data[side]
        assert lat["samples"] == expected
        assert 0 < lat["p50_us"] <= lat["p90_us"] <= lat["p99_us"] <= lat["max_us"]
    assert set(data["added"]) == {"p50_us", "p90_us", "p99_us", "mean_us"}
    assert isinstance(data["meets_target_added_p99"], bool)
