"""Timing primitives: per-call latency samples, untimed throughput, percentiles.

Per-call latency brackets one call with two ``time.perf_counter_ns()`` reads.
Nothing is subtracted from the samples; the cost of the bracket itself is
measured separately by :func:`time_empty` (the same loop with nothing inside)
and reported beside them, so a reader can see how much of a sample is timer.
Throughput is measured in a separate loop with no timer inside it at all.

The garbage collector is paused during every timed loop: a collection in the
middle of a loop is the collector's cost, not the engine's, and decisions
create no reference cycles, so nothing piles up while it is off.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
Item = tuple[Any, Any]  # (call, now)
Fn = Callable[[Any, Any, Any], object]  # fn(policy, call, now)


@contextmanager
def gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def cycle_to(items: Sequence[T], n: int) -> list[T]:
    """``n`` items cycling through ``items`` (built ahead, so the loop only iterates)."""
    k = len(items)
    return [items[i % k] for i in range(n)]


def time_each(fn: Fn, policy: Any, stream: Sequence[Item]) -> list[int]:
    """One latency sample (ns) per call of ``fn(policy, call, now)``."""
    pc = time.perf_counter_ns
    samples = [0] * len(stream)
    i = 0
    with gc_paused():
        for call, now in stream:
            t0 = pc()
            fn(policy, call, now)
            samples[i] = pc() - t0
            i += 1
    return samples


def time_empty(stream: Sequence[Item]) -> list[int]:
    """The same loop as :func:`time_each` with nothing between the two timer reads."""
    pc = time.perf_counter_ns
    samples = [0] * len(stream)
    i = 0
    with gc_paused():
        for _call, _now in stream:
            t0 = pc()
            samples[i] = pc() - t0
            i += 1
    return samples


def throughput(fn: Fn, policy: Any, stream: Sequence[Item]) -> dict[str, float]:
    """Calls per second over the whole stream, with no timer inside the loop."""
    pc = time.perf_counter_ns
    with gc_paused():
        t0 = pc()
        for call, now in stream:
            fn(policy, call, now)
        elapsed = pc() - t0
    return {
        "per_s": round(len(stream) / (elapsed / 1e9)),
        "mean_us": round(elapsed / len(stream) / 1000, 3),
    }


def percentiles(samples_ns: Sequence[int]) -> dict[str, float]:
    """Nearest-rank percentiles of samples in ns, reported in µs."""
    ordered = sorted(samples_ns)
    n = len(ordered)

    def rank(p: float) -> int:
        return ordered[max(0, math.ceil(p / 100 * n) - 1)]

    def us(ns: float) -> float:
        return round(ns / 1000, 3)

    return {
        "samples": n,
        "min_us": us(ordered[0]),
        "p50_us": us(rank(50)),
        "p90_us": us(rank(90)),
        "p99_us": us(rank(99)),
        "p999_us": us(rank(99.9)),
        "max_us": us(ordered[-1]),
        "mean_us": us(sum(ordered) / n),
    }


def time_once(fn: Callable[[], object]) -> float:
    """One call's duration in µs (for cold, first-sight costs; pause gc around a batch)."""
    pc = time.perf_counter_ns
    t0 = pc()
    fn()
    elapsed = pc() - t0
    return round(elapsed / 1000, 3)
