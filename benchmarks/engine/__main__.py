"""Benchmark ``aegis.policy.engine.decide``; print one JSON document to stdout.

    python -m benchmarks.engine            # 100k decisions per measurement
    python -m benchmarks.engine --quick    # 10k: a smoke run, figures are rough
    python -m benchmarks.engine --calls 500000 --profile

Sections (benchmarks/README.md says how to read them):

* ``examples``: the calls of every ``examples/*/policy.test.yaml`` that parse as
  calls, decided against the whole compiled ``examples/`` directory;
* ``generated``: 5,000 generated rules over 100 tenants and a mixed call stream,
  with compile time, outcome mix and the cold cost of a key's first sighting;
* ``scaling``: one tenant's rules alone (same generator, same tenant ``t000``)
  against the full set, to show other tenants' rules cost nothing;
* ``baseline_direct_call`` and ``timer_overhead``: the floor on this machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from aegis.core.call import McpPhase, parse_call
from aegis.core.decision import Decision
from aegis.errors import CallError, Diagnostic
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.compiler import compile_sources, load_policy
from aegis.policy.engine import decide
from aegis.policy.source import parse_source, read_source
from benchmarks.engine.generate import DEFAULT_SEED, generate_calls, generate_policy_set
from benchmarks.engine.measure import (
    Item,
    cycle_to,
    percentiles,
    throughput,
    time_each,
    time_empty,
    time_once,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
GENERATED_TENANTS = 100
GENERATED_RULES = 5000
SMALL_RULES = 55  # tenant t000's 50 rules + the 5 global rules
TARGET_P99_US = 10
#: Distinct calls generated for a stream (the stream cycles through them).
MAX_DISTINCT_CALLS = 20_000
TEST_SUFFIXES = (".test.yaml", ".test.yml", ".test.json")


def _trivial(policy: object, call: object, now: object) -> None:
    """The floor: a Python call with decide()'s arguments that does nothing."""


def _pin_to_one_cpu() -> dict[str, Any]:
    if not hasattr(os, "sched_setaffinity"):
        return {"pinned": False, "why": "os.sched_setaffinity is not available"}
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1]  # cpu 0 tends to take more interrupts
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        return {"pinned": False, "why": str(exc), "cpus_available": len(allowed)}
    return {"pinned": True, "cpu": cpu, "cpus_available": len(allowed)}


def _machine(affinity: dict[str, Any]) -> dict[str, Any]:
    try:
        aegis_version = metadata.version("aegis-agent-gateway")
    except metadata.PackageNotFoundError:
        aegis_version = None
    clock = time.get_clock_info("perf_counter")
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "affinity": affinity,
        "gc_disabled_during_timed_loops": True,
        "timer": "time.perf_counter_ns",
        "timer_resolution_ns": round(clock.resolution * 1e9, 3),
        "aegis_version": aegis_version,
    }


def _distribution(labels: Sequence[str], n: int) -> dict[str, int]:
    """Counts of ``labels[i % len(labels)]`` for i < n: the mix of an n-call cycling stream."""
    reps, rest = divmod(n, len(labels))
    counts = Counter(labels) if reps else Counter()
    for key in counts:
        counts[key] *= reps
    counts.update(labels[:rest])
    return dict(sorted(counts.items()))


def _count(decisions: Sequence[Decision], n: int, test: Callable[[Decision], bool]) -> int:
    return _distribution(["y" if test(d) else "n" for d in decisions], n).get("y", 0)


def _mix(policy: CompiledPolicy, items: Sequence[Item], n: int) -> dict[str, Any]:
    """Decide each distinct call once (this also fills the memo) and describe the mix."""
    decisions = [decide(policy, call, now) for call, now in items]
    return {
        "outcomes": _distribution([str(d.outcome) for d in decisions], n),
        "codes": _distribution([str(d.code) for d in decisions], n),
        "with_shadow_result": _count(decisions, n, lambda d: d.shadow is not None),
        "with_redactions": _count(decisions, n, lambda d: bool(d.redactions)),
    }


def _latency(policy: CompiledPolicy, items: Sequence[Item], n: int, warmup: int) -> dict[str, Any]:
    stream = cycle_to(items, n)
    time_each(decide, policy, cycle_to(items, warmup))
    samples = time_each(decide, policy, stream)
    return {
        "decisions": n,
        "latency": percentiles(samples),
        "throughput": throughput(decide, policy, stream),
    }


# -- (a) examples ---------------------------------------------------------------------


def _example_calls() -> tuple[list[Item], int, int]:
    """(call, now) for every case of every example suite that parses as a call."""
    items: list[Item] = []
    skipped = suites = 0
    for path in sorted(EXAMPLES.rglob("*")):
        if not path.name.endswith(TEST_SUFFIXES):
            continue
        source = read_source(path)
        if isinstance(source, Diagnostic) or not isinstance(source.data, dict):
            continue
        suites += 1
        suite_now = source.data.get("now")
        for case in source.data.get("tests") or []:
            if not isinstance(case, dict) or "call" not in case:
                skipped += 1
                continue
            try:
                call = parse_call(case["call"])
            except CallError:
                skipped += 1
                continue
            items.append((call, _when(case.get("now") or suite_now)))
    return items, skipped, suites


def _when(text: object) -> datetime:
    if not isinstance(text, str):
        return NOW
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def bench_examples(n: int, warmup: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    policy = load_policy([EXAMPLES])
    compile_s = time.perf_counter() - t0
    items, skipped, suites = _example_calls()
    mix = _mix(policy, items, n)
    return {
        "policy_files": len(policy.sources),
        "rules": len(policy.rules),
        "compile_s": round(compile_s, 3),
        "suites": suites,
        "distinct_calls": len(items),
        "cases_skipped_not_a_valid_call": skipped,
        **_latency(policy, items, n, warmup),
        **mix,
    }


# -- (b) generated --------------------------------------------------------------------


def _compile_generated(
    n_tenants: int, n_rules: int, seed: int
) -> tuple[Any, CompiledPolicy, dict[str, Any]]:
    t0 = time.perf_counter()
    pset = generate_policy_set(n_tenants, n_rules, seed)
    t1 = time.perf_counter()
    parsed = [parse_source(text, name) for name, text in pset.texts]
    t2 = time.perf_counter()
    policy = compile_sources(parsed)  # raises PolicyLoadError on any error
    t3 = time.perf_counter()
    info = {
        **pset.summary(),
        "compile": {
            "ok": True,
            "rules": len(policy.rules),
            "parse_s": round(t2 - t1, 3),
            "compile_s": round(t3 - t2, 3),
            "total_s": round(t3 - t1, 3),
            "generate_s": round(t1 - t0, 3),
            "warnings": dict(Counter(str(w.code) for w in policy.warnings)),
        },
    }
    return pset, policy, info


def _calls(pset: Any, n: int, seed: int) -> tuple[list[Item], list[str]]:
    pairs = generate_calls(pset, n, seed)
    return [(parse_call(raw), NOW) for _, raw in pairs], [category for category, _ in pairs]


def _first_sight(
    policy: CompiledPolicy, items: Sequence[Item], cats: Sequence[str]
) -> dict[str, Any]:
    """Cold cost: the first decision for a few (tenant, tool, phase) keys, then the second."""
    per_category = 3
    taken: Counter[str] = Counter()
    seen: set[tuple[str, str, McpPhase]] = set()
    probes: list[dict[str, Any]] = []
    for (call, now), category in zip(items, cats, strict=True):
        key = (call.tenant, call.tool, call.phase)
        if key in seen or taken[category] >= per_category:
            continue
        seen.add(key)
        taken[category] += 1
        cold = time_once(lambda c=call, t=now: decide(policy, c, t))
        warm = time_once(lambda c=call, t=now: decide(policy, c, t))
        probes.append(
            {
                "category": category,
                "tenant": call.tenant,
                "tool": call.tool,
                "cold_us": cold,
                "warm_us": warm,
            }
        )
    colds = sorted(p["cold_us"] for p in probes)
    warms = sorted(p["warm_us"] for p in probes)
    return {
        "keys": len(probes),
        "cold_median_us": colds[len(colds) // 2],
        "cold_max_us": colds[-1],
        "warm_median_us": warms[len(warms) // 2],
        "probes": probes,
    }


def bench_generated(
    n: int, warmup: int, seed: int
) -> tuple[dict[str, Any], CompiledPolicy, list[Item]]:
    pset, policy, info = _compile_generated(GENERATED_TENANTS, GENERATED_RULES, seed)
    items, cats = _calls(pset, min(n, MAX_DISTINCT_CALLS), seed)
    first = _first_sight(policy, items, cats)  # before anything else touches the memo
    mix = _mix(policy, items, n)
    result = {
        **info,
        "distinct_calls": len(items),
        "call_categories": _distribution(cats, n),
        "first_call_us": first,
        **_latency(policy, items, n, warmup),
        **mix,
        "memo_entries": len(policy._memo),
    }
    return result, policy, items


# -- (c) scaling and floors --------------------------------------------------------------


def bench_scaling(
    n: int, warmup: int, seed: int, big: CompiledPolicy, big_result: dict[str, Any]
) -> dict[str, Any]:
    pset, small, info = _compile_generated(1, SMALL_RULES, seed)
    items, cats = _calls(pset, min(n, MAX_DISTINCT_CALLS), seed)
    _mix(big, items, n)  # warm both memos on these calls
    mix = _mix(small, items, n)
    on_small = _latency(small, items, n, warmup)["latency"]
    on_big = _latency(big, items, n, warmup)["latency"]
    gen = big_result["latency"]

    def ratio(a: float, b: float) -> float:
        return round(a / b, 3) if b else float("nan")

    return {
        "small_set": {
            "tenants": info["tenants"],
            "rules": info["rules"],
            "note": "tenant t000's 50 rules (identical to t000's in the generated set) "
            "plus the same 5 global rules",
            "compile_s": info["compile"]["total_s"],
        },
        "small_stream": {
            "distinct_calls": len(items),
            "call_categories": _distribution(cats, n),
            "outcomes": mix["outcomes"],
        },
        "small_set_p50_us": on_small["p50_us"],
        "small_set_p99_us": on_small["p99_us"],
        "generated_p50_us": gen["p50_us"],
        "generated_p99_us": gen["p99_us"],
        "ratio_p50_generated_over_small": ratio(gen["p50_us"], on_small["p50_us"]),
        "ratio_p99_generated_over_small": ratio(gen["p99_us"], on_small["p99_us"]),
        "same_calls": {
            "what": "the small stream decided against the small set and the 5,000-rule set",
            "small_set": {"p50_us": on_small["p50_us"], "p99_us": on_small["p99_us"]},
            "generated_set": {"p50_us": on_big["p50_us"], "p99_us": on_big["p99_us"]},
            "ratio_p50": ratio(on_big["p50_us"], on_small["p50_us"]),
            "ratio_p99": ratio(on_big["p99_us"], on_small["p99_us"]),
        },
    }


def bench_direct_call(items: Sequence[Item], n: int, warmup: int) -> dict[str, Any]:
    stream = cycle_to(items, n)
    time_each(_trivial, None, cycle_to(items, warmup))
    lat = percentiles(time_each(_trivial, None, stream))
    return {
        "what": "def f(policy, call, now): pass -- timed exactly like decide()",
        "p50_us": lat["p50_us"],
        "p99_us": lat["p99_us"],
        "max_us": lat["max_us"],
        "throughput": throughput(_trivial, None, stream),
    }


def bench_timer(items: Sequence[Item], n: int) -> dict[str, Any]:
    lat = percentiles(time_empty(cycle_to(items, n)))
    return {"what": "two perf_counter_ns() reads around nothing, same loop", **lat}


def profile_generated(policy: CompiledPolicy, items: Sequence[Item], n: int, top: int) -> None:
    stream = cycle_to(items, n)
    profiler = cProfile.Profile()
    profiler.enable()
    for call, now in stream:
        decide(policy, call, now)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


# -- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--calls", type=int, default=None, help="decisions per measurement (100000)"
    )
    parser.add_argument("--quick", action="store_true", help="10,000 decisions: a smoke run")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile the generated stream; stats go to stderr",
    )
    args = parser.parse_args(argv)
    n = args.calls if args.calls is not None else (10_000 if args.quick else 100_000)
    if n <= 0:
        parser.error("--calls must be positive")
    warmup = min(n, 20_000)
    started = time.perf_counter()
    affinity = _pin_to_one_cpu()

    examples = bench_examples(n, warmup)
    generated, big, big_items = bench_generated(n, warmup, args.seed)
    scaling = bench_scaling(n, warmup, args.seed, big, generated)
    direct = bench_direct_call(big_items, n, warmup)
    timer = bench_timer(big_items, n)
    p99 = generated["latency"]["p99_us"]
    doc = {
        "benchmark": "aegis.policy.engine.decide",
        "config": {
            "calls": n,
            "quick": args.quick,
            "warmup_calls": warmup,
            "seed": args.seed,
            "now": NOW.isoformat(),
        },
        "machine": _machine(affinity),
        "timer_overhead": timer,
        "baseline_direct_call": direct,
        "examples": examples,
        "generated": generated,
        "scaling": scaling,
        "targets": {"p99_us_generated": TARGET_P99_US},
        "verdict": {"p99_us_generated": p99, "meets_target": p99 <= TARGET_P99_US},
        "duration_s": round(time.perf_counter() - started, 1),
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    if args.profile:
        profile_generated(big, big_items, n, top=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
