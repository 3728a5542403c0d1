"""Benchmark the audit log; print one JSON document to stdout.

    python -m benchmarks.audit            # full run
    python -m benchmarks.audit --quick    # smoke run, rough figures

Sections:

* ``append``: durable appends from many concurrent tasks on SQLite with group
  commit (``synchronous=FULL``: an fsync per batch), and the same with
  ``synchronous=OFF`` (no fsync) as the baseline -- records/s and batch sizes;
* ``decide``: decisions/s of the in-process pipeline on the example policies,
  many concurrent ``decide()`` calls, with and without the audit sink.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from aegis.audit.log import AuditLog
from aegis.audit.record import RecordKind
from aegis.audit.sink import AuditSink
from aegis.audit.sqlite_store import SqliteAuditStore
from aegis.core.call import ToolCall
from aegis.pipeline import Pipeline, PolicyStore
from aegis.pipeline.stages import RequestContext
from aegis.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
BODY = {
    "decision_id": "019ab2c3-4d5e-7f60-8a1b-2c3d4e5f6071",
    "outcome": "allow",
    "code": "decision.allow",
    "reason": "writes to the staging database are allowed",
    "rule_ids": ["db-staging"],
    "policy_version": "v1",
    "bundle_hash": "ab" * 32,
    "tenant": "acme",
    "agent_id": "agent-7",
    "tool": "db.write",
    "params": {"table": "orders", "n": 3},
    "latency_us": 42,
}


async def _append_run(
    path: Path, sync: Literal["FULL", "OFF"], total: int, tasks: int
) -> dict[str, Any]:
    store = SqliteAuditStore(path, synchronous=sync)
    log = await AuditLog(store, log_id="bench").open()
    per = total // tasks

    async def worker(w: int) -> None:
        for i in range(per):
            await log.append(RecordKind.DECISION, "acme", {**BODY, "n": (w, i)}, durable=True)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    elapsed = time.perf_counter() - t0
    sizes = log.stats.batch_sizes
    await log.close()
    return {
        "synchronous": sync,
        "records": per * tasks,
        "concurrent_tasks": tasks,
        "seconds": round(elapsed, 3),
        "records_per_second": round(per * tasks / elapsed),
        "commits": store.commits,
        "batch_size_mean": round(statistics.fmean(sizes), 1),
        "batch_size_max": max(sizes),
    }


def _calls() -> list[ToolCall]:
    return [
        ToolCall(
            "acme", "status-bot", "slack.post_message", {"channel": "#eng-status", "text": "ok"}
        ),
        ToolCall("acme", "status-bot", "slack.post_message", {"channel": "#random", "text": "hi"}),
        ToolCall(
            "acme", "finance-agent", "stripe.create_payment", {"amount": 90, "currency": "USD"}
        ),
        ToolCall("acme", "reader", "crm.search", {"q": "x"}),
    ]


async def _decide_run(tmp: Path, *, audit: bool, total: int, tasks: int) -> dict[str, Any]:
    policy = PolicyStore(load_policy([ROOT / "examples"]))
    pipeline = Pipeline.with_defaults(policy, timeout=0.25)
    log = None
    if audit:
        log = await AuditLog(SqliteAuditStore(tmp / "decide.db"), log_id="bench").open()
        pipeline.audit = AuditSink(log, policy)
    ctx = RequestContext(door="bench")
    calls = _calls()
    per = total // tasks

    async def worker(w: int) -> None:
        for i in range(per):
            await pipeline.decide(calls[(w + i) % len(calls)], ctx)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {
        "audit": audit,
        "decisions": per * tasks,
        "seconds": round(elapsed, 3),
        "decisions_per_second": round(per * tasks / elapsed),
    }
    if log is not None:
        await log.close()
        out["audit_records"] = log.stats.records
        out["audit_overflow"] = log.stats.overflow
        out["batch_size_mean"] = round(statistics.fmean(log.stats.batch_sizes), 1)
    return out


async def main(quick: bool) -> dict[str, Any]:
    total = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        full = await _append_run(tmp / "full.db", "FULL", total, 512)
        off = await _append_run(tmp / "off.db", "OFF", total, 512)
        without = await _decide_run(tmp, audit=False, total=total, tasks=256)
        with_audit = await _decide_run(tmp, audit=True, total=total, tasks=256)
    loss = 1 - with_audit["decisions_per_second"] / without["decisions_per_second"]
    return {
        "python": sys.version.split()[0],
        "append": {
            "group_commit_fsync": full,
            "baseline_no_fsync": off,
            "target_records_per_second": 20_000,
        },
        "decide": {
            "without_audit": without,
            "with_audit": with_audit,
            "throughput_loss": round(loss, 3),
            "target_loss": 0.2,
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.quick)), indent=2))
