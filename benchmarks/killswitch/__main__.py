"""Time to revoke across two gateway processes; print one JSON document to stdout.

    python -m benchmarks.killswitch            # 200 revocations
    python -m benchmarks.killswitch --quick    # 20: a smoke run, rough figures
    python -m benchmarks.killswitch --n 1000 --redis redis://127.0.0.1:6379/0

This process plays the replica that takes the commands; it starts a second
Python process (``--child``), another "gateway" with its own KillSwitch on the
same Redis, which checks a call of agent ``a<i>`` in a loop until it is refused
and reports the wall-clock time (``time.time_ns``, one machine: one clock) of
that first refused call. For each of N agents in turn:

* ``time_to_revoke``: from just before ``revoke()`` is called here to the first
  refused call in the other process -- the KPI, target p99 <= 100 ms;
* ``revoke_call``: how long ``revoke()`` takes to return here (the Redis write);
* ``baseline_pubsub``: the same two processes, the same clocks, a bare
  ``PUBLISH`` here to its receipt by a bare subscriber there (no kill switch):
  the floor that Redis pub/sub and the event loop set.

The other process also exports the ``aegis_time_to_revoke_seconds`` histogram
(``source=remote``); its count and mean are in ``child_metric``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from aegis.core.call import ToolCall
from aegis.identity.killswitch import KillSwitch
from aegis.identity.killswitch_metrics import KillSwitchMetrics
from aegis.identity.killswitch_redis import RedisRevocationStore

TARGET_P99_MS = 100.0
PER_ITEM_TIMEOUT = 5.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values_ms: list[float]) -> dict[str, Any]:
    if not values_ms:
        return {"n": 0}
    return {
        "n": len(values_ms),
        "p50_ms": round(_pct(values_ms, 0.50), 3),
        "p90_ms": round(_pct(values_ms, 0.90), 3),
        "p99_ms": round(_pct(values_ms, 0.99), 3),
        "max_ms": round(max(values_ms), 3),
        "mean_ms": round(statistics.fmean(values_ms), 3),
    }


# -- the other process --------------------------------------------------------------


async def child_killswitch(url: str, prefix: str, n: int) -> None:
    registry = CollectorRegistry()
    metrics = KillSwitchMetrics(registry)
    ks = await KillSwitch(RedisRevocationStore(url, prefix=prefix), observe=metrics.observe).start()
    print("ready", flush=True)
    for i in range(n):
        call = ToolCall(tenant="bench", agent_id=f"a{i}", tool="crm.read")
        deadline = time.monotonic() + PER_ITEM_TIMEOUT
        while await ks.check(call) is None and time.monotonic() < deadline:
            await asyncio.sleep(0)  # let the subscriber run; no sleep granularity added
        refused = await ks.check(call) is not None
        print(f"{i} {time.time_ns() if refused else -1}", flush=True)
    count = registry.get_sample_value("aegis_time_to_revoke_seconds_count", {"source": "remote"})
    total = registry.get_sample_value("aegis_time_to_revoke_seconds_sum", {"source": "remote"})
    print("metric " + json.dumps({"count": count, "sum_s": total}), flush=True)
    await ks.close()


async def child_raw(url: str, channel: str, n: int) -> None:
    client = Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    while await pubsub.get_message(timeout=1.0) is None:
        pass  # the subscribe confirmation
    print("ready", flush=True)
    got = 0
    deadline = time.monotonic() + PER_ITEM_TIMEOUT * max(n, 1)
    while got < n and time.monotonic() < deadline:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=PER_ITEM_TIMEOUT)
        if msg is not None:
            print(f"{msg['data'].decode()} {time.time_ns()}", flush=True)
            got += 1
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await client.aclose()


# -- this process -------------------------------------------------------------------


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.killswitch", "--child", *args,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 15)
    if line.strip() != b"ready":
        raise RuntimeError(f"child did not start: {line!r}")
    return proc


async def _read(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), PER_ITEM_TIMEOUT + 5)).decode().strip()


async def measure_revoke(url: str, n: int) -> dict[str, Any]:
    prefix = f"aegis:bench:ks:{uuid.uuid4().hex[:12]}"
    store = RedisRevocationStore(url, prefix=prefix)
    ks = await KillSwitch(store).start()
    proc = await _spawn("ks", url, prefix, str(n))
    ttr: list[float] = []
    calls: list[float] = []
    missed = 0
    try:
        for i in range(n):
            await asyncio.sleep(0.002)  # the child is polling a0..; keep runs independent
            t0 = time.time_ns()
            await ks.revoke("agent", tenant="bench", target=f"a{i}", actor="bench", reason="bench")
            calls.append((time.time_ns() - t0) / 1e6)
            idx, at = (await _read(proc)).split()
            assert int(idx) == i
            if int(at) < 0:
                missed += 1
            else:
                ttr.append((int(at) - t0) / 1e6)
        metric_line = await _read(proc)
        child_metric = json.loads(metric_line.removeprefix("metric "))
    finally:
        await proc.wait()
        await store.delete_all()
        await ks.close()
    return {"ttr": ttr, "calls": calls, "missed": missed, "child_metric": child_metric}


async def measure_baseline(url: str, n: int) -> list[float]:
    channel = f"aegis:bench:raw:{uuid.uuid4().hex[:12]}"
    proc = await _spawn("raw", url, channel, str(n))
    client = Redis.from_url(url)
    out: list[float] = []
    try:
        for i in range(n):
            await asyncio.sleep(0.002)
            t0 = time.time_ns()
            await client.publish(channel, str(i))
            idx, at = (await _read(proc)).split()
            assert int(idx) == i
            out.append((int(at) - t0) / 1e6)
    finally:
        await proc.wait()
        await client.aclose()
    return out


async def main_async(url: str, n: int) -> dict[str, Any]:
    baseline = await measure_baseline(url, n)
    revoke = await measure_revoke(url, n)
    ttr = _summary(revoke["ttr"])
    base = _summary(baseline)
    metric = revoke["child_metric"]
    return {
        "benchmark": "killswitch.time_to_revoke",
        "n": n,
        "cpus": os.cpu_count(),
        "redis": url,
        "time_to_revoke": ttr,
        "revoke_call": _summary(revoke["calls"]),
        "baseline_pubsub": base,
        "missed": revoke["missed"],
        "ratio_p50_vs_baseline": round(ttr["p50_ms"] / base["p50_ms"], 2) if n else None,
        "child_metric": {
            "count": metric["count"],
            "mean_ms": round(1000 * metric["sum_s"] / metric["count"], 3)
            if metric["count"]
            else None,
        },
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": bool(n) and revoke["missed"] == 0 and ttr["p99_ms"] <= TARGET_P99_MS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.killswitch")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="20 revocations")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "URL", "NAME", "N"))
    args = parser.parse_args(argv)
    if args.child:
        mode, url, name, count = args.child
        runner = child_killswitch if mode == "ks" else child_raw
        asyncio.run(runner(url, name, int(count)))
        return 0
    n = 20 if args.quick else args.n
    print(json.dumps(asyncio.run(main_async(args.redis, n)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
