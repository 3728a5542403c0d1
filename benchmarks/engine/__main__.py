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
import dataclasses
import json
import os
import platform
import pstats
import sys
import time
from collections import Counter, defaultdict
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
from benchmarks.engine.generate import DEFAULT_SEED, PolicySet, generate_calls, generate_policy_set
from benchmarks.engine.measure import (
    Item,
    cycle_to,
    gc_paused,
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
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "affinity": affinity,
        "gc_disabled_during_timed_loops": True,
        "timer": "time.perf_counter_ns",
        "timer_resolution_ns": round(clock.resolution * 1e9, 3),
        "aegis_version": aegis_version,
    }


# -- shared measurement ---------------------------------------------------------------


def _distribution(labels: Sequence[str], n: int) -> dict[str, int]:
    """Counts of ``labels[i % len(labels)]`` for i < n: the mix of an n-call cycling stream."""
    reps, rest = divmod(n, len(labels))
    counts: Counter[str] = Counter()
    for label, count in Counter(labels).items():
        counts[label] = count * reps
    counts.update(labels[:rest])
    return dict(sorted((k, v) for k, v in counts.items() if v))


def _decide_each(policy: CompiledPolicy, items: Sequence[Item]) -> list[Decision]:
    """Decide each distinct call once (which also fills the engine's memo)."""
    return [decide(policy, call, now) for call, now in items]


def _mix(decisions: Sequence[Decision], n: int) -> dict[str, Any]:
    def count(test: Callable[[Decision], bool]) -> int:
        return _distribution(["y" if test(d) else "n" for d in decisions], n).get("y", 0)

    return {
        "outcomes": _distribution([str(d.outcome) for d in decisions], n),
        "codes": _distribution([str(d.code) for d in decisions], n),
        "with_shadow_result": count(lambda d: d.shadow is not None),
        "with_redactions": count(lambda d: bool(d.redactions)),
    }


def _measure(
    policy: CompiledPolicy, items: Sequence[Item], n: int, warmup: int
) -> tuple[dict[str, Any], list[int]]:
    """Warm, then time n decisions one by one, then n more in an untimed loop."""
    stream = cycle_to(items, n)
    time_each(decide, policy, cycle_to(items, warmup))
    samples = time_each(decide, policy, stream)
    speed = throughput(decide, policy, stream)
    return {
        "decisions": n,
        "latency": percentiles(samples),
        "decisions_per_s": speed["per_s"],
        "untimed_mean_us": speed["mean_us"],
    }, samples


def _breakdown(samples: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """p50/p99 of the samples grouped by the label of the call each one timed."""
    groups: dict[str, list[int]] = defaultdict(list)
    k = len(labels)
    for i, ns in enumerate(samples):
        groups[labels[i % k]].append(ns)
    out = {}
    for label, group in sorted(groups.items()):
        p = percentiles(group)
        out[label] = {"n": p["samples"], "p50_us": p["p50_us"], "p99_us": p["p99_us"]}
    return out


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
    if not items:
        raise SystemExit(f"no valid calls in {EXAMPLES}/*/policy.test.yaml")
    decisions = _decide_each(policy, items)
    figures, samples = _measure(policy, items, n, warmup)
    return {
        "policy_files": len(policy.sources),
        "rules": len(policy.rules),
        "compile_s": round(compile_s, 3),
        "suites": suites,
        "distinct_calls": len(items),
        "cases_skipped_not_a_valid_call": skipped,
        **figures,
        "latency_by_outcome": _breakdown(samples, [str(d.outcome) for d in decisions]),
        **_mix(decisions, n),
    }


# -- (b) generated --------------------------------------------------------------------


def _compile_generated(
    n_tenants: int, n_rules: int, seed: int
) -> tuple[PolicySet, CompiledPolicy, dict[str, Any]]:
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
            "what": "parse = YAML text to data (parse_source); compile = compile_sources "
            "(validate, resolve, check, index); generating the YAML is not counted",
            "warnings": dict(Counter(str(w.code) for w in policy.warnings)),
        },
    }
    return pset, policy, info


def _calls(pset: PolicySet, n: int, seed: int) -> tuple[list[Item], list[str]]:
    pairs = generate_calls(pset, n, seed)
    return [(parse_call(raw), NOW) for _, raw in pairs], [category for category, _ in pairs]


def _first_sight(
    policy: CompiledPolicy, items: Sequence[Item], categories: Sequence[str]
) -> dict[str, Any]:
    """Cold cost: the first decision for a few (tenant, tool, phase) keys, then the second."""
    per_category = 3
    taken: Counter[str] = Counter()
    seen: set[tuple[str, str, McpPhase]] = set()
    probes: list[dict[str, Any]] = []
    with gc_paused():
        for (call, now), category in zip(items, categories, strict=True):
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
                    "second_us": warm,
                }
            )
    colds = sorted(p["cold_us"] for p in probes)
    warms = sorted(p["second_us"] for p in probes)
    return {
        "what": "first decision ever made for a (tenant, tool, phase) key -- builds its "
        "memo entry -- then the same call again",
        "keys": len(probes),
        "cold_median_us": colds[len(colds) // 2],
        "cold_max_us": colds[-1],
        "second_median_us": warms[len(warms) // 2],
        "probes": probes,
    }


def _fresh_destinations(items: Sequence[Item], m: int) -> list[Item]:
    """Calls of the stream that carry a URL destination, each made unique (once each).

    The main stream cycles through a fixed set of calls, so any per-value cache
    (a parsed-destination LRU, say) is warm there; these calls show the cost
    when every destination is new, as with per-request URLs.
    """
    with_url = [(c, t) for c, t in items if c.destination and "://" in c.destination]
    out: list[Item] = []
    for i in range(m if with_url else 0):
        call, now = with_url[i % len(with_url)]
        dest = call.destination or ""
        fresh = f"{dest}{'&' if '?' in dest else '?'}req={i}"
        out.append((dataclasses.replace(call, destination=fresh), now))
    return out


def bench_generated(
    n: int, warmup: int, seed: int
) -> tuple[dict[str, Any], CompiledPolicy, list[Item]]:
    pset, policy, info = _compile_generated(GENERATED_TENANTS, GENERATED_RULES, seed)
    items, categories = _calls(pset, min(n, MAX_DISTINCT_CALLS), seed)
    first = _first_sight(policy, items, categories)  # before anything else fills the memo
    decisions = _decide_each(policy, items)
    figures, samples = _measure(policy, items, n, warmup)
    destination = ["with_destination" if c.destination else "without" for c, _ in items]
    fresh = _fresh_destinations(items, min(n, 10_000))
    fresh_latency = percentiles(time_each(decide, policy, fresh)) if fresh else None
    result = {
        **info,
        "distinct_calls": len(items),
        "call_categories": _distribution(categories, n),
        **figures,
        "latency_by_category": _breakdown(samples, categories),
        "latency_by_outcome": _breakdown(samples, [str(d.outcome) for d in decisions]),
        "latency_by_destination": _breakdown(samples, destination),
        "fresh_destinations": {
            "what": "stream calls with a URL destination, each given a never-seen URL "
            "(unique query string) and decided once: no per-value cache can help",
            "calls": len(fresh),
            **(
                {k: fresh_latency[k] for k in ("p50_us", "p99_us", "max_us")}
                if fresh_latency
                else {}
            ),
        },
        **_mix(decisions, n),
        "first_call_us": first,
        "memo_entries": len(policy._memo),
    }
    return result, policy, items


# -- (c) scaling and floors --------------------------------------------------------------


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def bench_scaling(
    n: int, warmup: int, seed: int, big: CompiledPolicy, generated: dict[str, Any]
) -> dict[str, Any]:
    pset, small, info = _compile_generated(1, SMALL_RULES, seed)
    items, categories = _calls(pset, min(n, MAX_DISTINCT_CALLS), seed)
    _decide_each(big, items)
    decisions = _decide_each(small, items)
    on_small = _measure(small, items, n, warmup)[0]["latency"]
    on_big = _measure(big, items, n, warmup)[0]["latency"]
    gen = generated["latency"]
    return {
        "small_set": {
            "tenants": info["tenants"],
            "rules": info["rules"],
            "what": "tenant t000's 50 rules (the same as t000's in the generated set) "
            "plus the same 5 global rules, from the same generator",
            "compile_s": info["compile"]["total_s"],
            "distinct_calls": len(items),
            "call_categories": _distribution(categories, n),
            "outcomes": _mix(decisions, n)["outcomes"],
        },
        "small_p50_us": on_small["p50_us"],
        "small_p99_us": on_small["p99_us"],
        "generated_p50_us": gen["p50_us"],
        "generated_p99_us": gen["p99_us"],
        "ratio_p50_generated_over_small": _ratio(gen["p50_us"], on_small["p50_us"]),
        "ratio_p99_generated_over_small": _ratio(gen["p99_us"], on_small["p99_us"]),
        "same_calls": {
            "what": "the small set's call stream decided against the small set and against "
            "the 5,000-rule set: identical calls, only other tenants' rules differ",
            "small_set": {"p50_us": on_small["p50_us"], "p99_us": on_small["p99_us"]},
            "generated_set": {"p50_us": on_big["p50_us"], "p99_us": on_big["p99_us"]},
            "ratio_p50": _ratio(on_big["p50_us"], on_small["p50_us"]),
            "ratio_p99": _ratio(on_big["p99_us"], on_small["p99_us"]),
        },
    }


def bench_direct_call(items: Sequence[Item], n: int, warmup: int) -> dict[str, Any]:
    stream = cycle_to(items, n)
    time_each(_trivial, None, cycle_to(items, warmup))
    lat = percentiles(time_each(_trivial, None, stream))
    speed = throughput(_trivial, None, stream)
    return {
        "what": "def f(policy, call, now): pass -- timed exactly like decide()",
        "p50_us": lat["p50_us"],
        "p99_us": lat["p99_us"],
        "max_us": lat["max_us"],
        "calls_per_s": speed["per_s"],
    }


def bench_timer(items: Sequence[Item], n: int) -> dict[str, Any]:
    lat = percentiles(time_empty(cycle_to(items, n)))
    return {"what": "two perf_counter_ns() reads around nothing, in the same loop", **lat}


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
    parser.add_argument("--calls", type=int, help="decisions per measurement (default 100000)")
    parser.add_argument("--quick", action="store_true", help="10,000 decisions: a smoke run")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    parser.add_argument(
        "--profile", action="store_true", help="then cProfile the generated stream (to stderr)"
    )
    args = parser.parse_args(argv)
    n = args.calls if args.calls is not None else (10_000 if args.quick else 100_000)
    if n <= 0:
        parser.error("--calls must be positive")
    warmup = min(n, 20_000)
    started = time.perf_counter()
    affinity = _pin_to_one_cpu()
    machine = _machine(affinity)
    sections: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = fn()
        sections[name] = round(time.perf_counter() - t0, 1)
        return result

    examples = timed("examples", lambda: bench_examples(n, warmup))
    generated, big, big_items = timed("generated", lambda: bench_generated(n, warmup, args.seed))
    scaling = timed("scaling", lambda: bench_scaling(n, warmup, args.seed, big, generated))
    direct = timed("baseline_direct_call", lambda: bench_direct_call(big_items, n, warmup))
    timer = timed("timer_overhead", lambda: bench_timer(big_items, n))
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
        "machine": machine,
        "targets": {"p99_us_generated": TARGET_P99_US},
        "verdict": {"p99_us_generated": p99, "meets_target": p99 <= TARGET_P99_US},
        "timer_overhead": timer,
        "baseline_direct_call": direct,
        "examples": examples,
        "generated": generated,
        "scaling": scaling,
        "section_s": sections,
        "duration_s": round(time.perf_counter() - started, 1),
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()
    if args.profile:
        profile_generated(big, big_items, n, top=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
