"""Smoke test of the bundle benchmark: it runs, and its JSON says what it should.

No timing threshold is asserted (test machines are noisy; the figures are for
humans, see benchmarks/README.md). What is asserted: every section is there,
the 5,000-rule bundle was built and loaded (also with a verified signature),
and regorus, evaluating the bundle's own ``policy.rego``, agreed with the
native engine on every call it was compared on.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmark_runner import run_benchmark

pytest.importorskip("regorus")

SPREAD_KEYS = {"runs", "median_s", "min_s", "max_s"}
LATENCY_KEYS = {"samples", "p50_us", "p99_us", "mean_us", "max_us"}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    doc = run_benchmark("bundles", "--quick")
    assert isinstance(doc, dict)
    return doc


def _check_spread(spread: dict[str, Any], runs: int) -> None:
    assert spread.keys() >= SPREAD_KEYS
    assert spread["runs"] == runs
    assert 0 < spread["min_s"] <= spread["median_s"] <= spread["max_s"]


def _check_latency(lat: dict[str, Any]) -> None:
    assert lat.keys() >= LATENCY_KEYS
    assert lat["samples"] > 0
    assert 0 < lat["p50_us"] <= lat["p99_us"] <= lat["max_us"]
    assert lat["mean_us"] > 0


def test_top_level_sections(report: dict[str, Any]) -> None:
    for key in ("config", "machine", "targets", "verdict", "compile_load", "native_vs_regorus"):
        assert key in report, key
    assert report["config"]["quick"] is True
    assert report["targets"] == {"load_median_s": 1.0, "regorus_over_native_mean": 20.0}
    machine = report["machine"]
    assert machine["cpu_count"] >= 1
    assert "pinned" in machine["affinity"]
    assert machine["load_average_at_start"] is None or len(machine["load_average_at_start"]) == 3
    assert machine["regorus_version"]
    assert isinstance(report["verdict"]["load_met"], bool)
    assert isinstance(report["verdict"]["ratio_met"], bool)


def test_compile_load(report: dict[str, Any]) -> None:
    cl = report["compile_load"]
    runs = report["config"]["load_runs"]
    assert cl["tenants"] == 100
    assert cl["rules"] == 5000
    build = cl["build"]
    assert build["build_s"] > 0
    assert build["archive_bytes"] > 0
    assert build["policy_files"] == 101
    assert build["policy_rego_bytes"] > 0
    _check_spread(cl["load"], runs)
    assert set(cl["load_parts_median_s"]) == {"read_archive", "manifest", "parse", "compile"}
    signed = cl["signed"]
    assert signed["alg"] == "EdDSA"
    assert signed["archive_bytes"] > build["archive_bytes"]
    _check_spread(signed["load_verified"], runs)
    assert signed["verify_files_median_s"] > 0
    assert cl["target_seconds"] == 1.0
    assert isinstance(cl["met"], bool)


@pytest.mark.parametrize("variant", ["generated", "small"])
def test_native_vs_regorus(report: dict[str, Any], variant: str) -> None:
    section = report["native_vs_regorus"][variant]
    assert section["rules"] == (5000 if variant == "generated" else 55)
    rego = section["rego"]
    assert rego["source"].endswith("True)")  # the bundle's entry is the exporter's text
    assert rego["modules"] >= 1
    calls = section["calls"]
    assert calls["compared"] > 0
    assert calls["disagreements"] == 0, calls["disagreement_examples"]
    assert calls["examined"] == (
        calls["compared"]
        + calls["skipped_unsupported_rule_matches"]
        + calls["not_reached_time_budget"]
    )
    assert sum(calls["outcomes"].values()) == calls["compared"]
    _check_latency(section["native"])
    _check_latency(section["regorus"])
    assert section["regorus"]["samples"] == calls["compared"]
    for part in ("input_encoding", "eval"):
        assert section["regorus_parts"][part]["mean_us"] > 0
    assert section["ratio"] > 0
    assert section["ratio_p50"] > 0
    assert section["target_ratio"] == 20.0
    assert isinstance(section["met"], bool)


def test_large_module_is_split_for_regorus(report: dict[str, Any]) -> None:
    # The 5,000-rule module passes regorus's per-file limits, so it goes in as several.
    generated = report["native_vs_regorus"]["generated"]["rego"]
    assert generated["bytes"] > 1 << 20
    assert generated["modules"] > 1
    assert report["native_vs_regorus"]["small"]["rego"]["modules"] == 1
