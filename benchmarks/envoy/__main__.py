"""Benchmark the ext_authz gRPC door at a fixed request rate; print one JSON document.

    python -m benchmarks.envoy                      # 2,000 checks/s for 10 s, each server
    python -m benchmarks.envoy --rate 500 --duration 3
    python -m benchmarks.envoy --quick              # 1 s at 200/s: a smoke run

Two servers, one after the other, each in its own process on 127.0.0.1 with
an ephemeral port (benchmarks/envoy/server.py):

* ``aegis``: ``build_authz_grpc_server`` over the example policies
  (finance-payments, slack-posting, egress), with metrics and a JSON log line
  per decision (written to /dev/null) -- what a deployment runs;
* ``baseline_bare``: a grpc.aio Authorization servicer that answers OK without
  looking at the request: the floor of "a Python gRPC ext_authz server" here.

The client plays Envoy: a grpc.aio channel sending ``CheckRequest``s shaped like
Envoy's (header_map, raw_body) **open loop** at the target rate -- requests
go out on schedule whether or not earlier ones have returned, so a slow server
cannot slow the load down and hide its own latency (coordinated omission).
``latency_ms`` is from the moment a request was actually sent to its answer;
``latency_from_schedule_ms`` from the moment it was due, which also counts any
delay in the client sending it. The mix cycles through allow, approval_needed,
deny, a read, an egress deny and a sanitize refused by ext_authz.

Server and client pin themselves to different CPUs when there are two or more,
and both freeze their start-up heap (``gc.freeze()``) so that a full garbage
collection does not walk the compiled policy and the protobuf descriptors.
Target (DESIGN.md §5): p99 <= 5 ms at 2,000 checks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
TARGET_P99_MS = 5.0
TARGET_RATE = 2000
MAX_IN_FLIGHT = 4096  # bounds memory if the server stalls; overflow is counted as dropped
FINANCE = {"x-aegis-tenant": "acme", "x-aegis-agent-id": "finance-agent"}
SLACK = {"x-aegis-tenant": "acme", "x-aegis-agent-id": "status-bot"}


def _check(method: str, path: str, host: str, headers: dict[str, str], body: Any = None) -> Any:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host, http.scheme = method, path, host, "https"
    data = json.dumps(body).encode() if body is not None else b""
    pairs = [(":method", method), (":path", path), (":authority", host), *headers.items()]
    if body is not None:
        pairs += [("content-type", "application/json"), ("content-length", str(len(data)))]
        http.raw_body = data
    for key, value in pairs:
        http.header_map.headers.add(key=key, raw_value=value.encode())
    request.attributes.source.address.socket_address.address = "10.0.0.7"
    return request


MIX = [
    ("allow", _check("POST", "/v1/payments", "api.stripe.com", FINANCE,
                     {"amount": 120, "currency": "USD", "payee": "acct_123"})),
    ("allow", _check("GET", "/v1/balance", "api.stripe.com", FINANCE)),
    ("approval_needed", _check("POST", "/v1/payments", "api.stripe.com", FINANCE,
                               {"amount": 9000, "currency": "EUR"})),
    ("allow", _check("POST", "/v1/payments", "api.stripe.com", FINANCE,
                     {"amount": 4999, "currency": "GBP"})),
    ("deny", _check("POST", "/v1/payments", "api.stripe.com", FINANCE,
                    {"amount": 10, "currency": "BTC"})),
    ("egress_deny", _check("POST", "/upload", "example-exfil.xyz", FINANCE,
                           {"body": "ssn=078-05-1120"})),
    ("sanitize_refused", _check("POST", "/api/chat.postMessage", "slack.com", SLACK,
                                {"channel": "#incidents", "text": "mail jane.doe@example.com"})),
    ("allow", _check("GET", "/repos", "api.github.com", FINANCE)),
]  # fmt: skip


def _pin(cpu: int | None) -> dict[str, Any]:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return {"pinned": False}
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        return {"pinned": False, "why": str(exc)}
    return {"pinned": True, "cpu": cpu}


def _load() -> list[float] | None:
    """1/5/15-minute load averages: on a shared host, read the figures against them."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _percentiles(samples: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles of seconds, in ms."""
    if not samples:
        return {}
    ordered = sorted(samples)
    n = len(ordered)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * n) - 1)] * 1000, 3)

    return {
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "p999": rank(99.9),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(sum(ordered) / n * 1000, 3),
    }


async def _drive(port: int, rate: float, duration: float, warmup: float) -> dict[str, Any]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = external_auth_pb2_grpc.AuthorizationStub(channel)
    await channel.channel_ready()
    for _ in range(200):  # connection, code paths, caches
        await stub.Check(MIX[0][1], timeout=5)
    gc.collect()
    gc.freeze()  # the client's own full collections would show up as server latency

    loop = asyncio.get_running_loop()
    sent: list[float] = []
    scheduled: list[float] = []
    statuses: Counter[str] = Counter()
    by_answer: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    in_flight: set[asyncio.Task[None]] = set()
    dropped = 0
    total = int((warmup + duration) * rate)
    measured_from = int(warmup * rate)

    async def one(i: int, due: float) -> None:
        label, request = MIX[i % len(MIX)]
        t_send = loop.time()
        try:
            response = await stub.Check(request, timeout=5)
        except grpc.aio.AioRpcError as exc:
            if i >= measured_from:
                errors[str(exc.code())] += 1
            return
        t_done = loop.time()
        if i >= measured_from:
            sent.append(t_done - t_send)
            scheduled.append(t_done - due)
            code = response.status.code
            status = 200 if code == 0 else response.denied_response.status.code
            statuses[f"{label}:{status}"] += 1
            by_answer.setdefault(f"{label}:{status}", []).append(t_done - t_send)

    start = loop.time() + 0.05
    i = 0
    while i < total:
        now = loop.time()
        while i < total and start + i / rate <= now:  # everything that is due
            if len(in_flight) >= MAX_IN_FLIGHT:
                dropped += 1
            else:
                task = asyncio.ensure_future(one(i, start + i / rate))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            i += 1
        next_due = start + i / rate
        await asyncio.sleep(max(0.0, next_due - loop.time()))
    finish_sending = loop.time()
    if in_flight:
        await asyncio.wait(in_flight, timeout=10)
    await channel.close()
    measured = total - measured_from
    window = finish_sending - (start + measured_from / rate)
    return {
        "requests": measured,
        "answered": len(sent),
        "errors": dict(errors),
        "dropped_over_in_flight_cap": dropped,
        "target_rate": rate,
        "achieved_rate": round(len(sent) / window, 1) if window > 0 else None,
        "latency_ms": _percentiles(sent),
        "latency_from_schedule_ms": _percentiles(scheduled),
        "answers": dict(sorted(statuses.items())),
        "latency_ms_by_answer": {
            key: {k: v for k, v in _percentiles(samples).items() if k in {"p50", "p99"}}
            for key, samples in sorted(by_answer.items())
        },
    }


def _run_server(mode: str, cpu: int | None) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "benchmarks.envoy.server", "--mode", mode]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"the {mode} server did not start: {line!r}")
    return proc, int(line.split()[1])


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(mode: str, args: argparse.Namespace, cpus: list[int]) -> dict[str, Any]:
    server_cpu = cpus[0] if len(cpus) >= 2 else None
    proc, port = _run_server(mode, server_cpu)
    try:
        cpu_before = _cpu_seconds(proc.pid)
        result = asyncio.run(_drive(port, args.rate, args.duration, args.warmup))
        cpu_after = _cpu_seconds(proc.pid)
        if cpu_before is not None and cpu_after is not None and result["answered"]:
            # Whole run including warm-up: CPU per request the server spent, all in.
            sent = result["requests"] + int(args.warmup * args.rate) + 200
            result["server_cpu_us_per_request"] = round((cpu_after - cpu_before) / sent * 1e6, 1)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the server stops on EOF
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    result["server_cpu"] = server_cpu
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="ext_authz gRPC door at a fixed rate")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="checks per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--quick", action="store_true", help="1 s at 200/s: a smoke run")
    parser.add_argument(
        "--no-pin", action="store_true", help="let the OS place server and client (busy hosts)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rate, args.duration, args.warmup = 200.0, 1.0, 0.2
    if args.rate <= 0 or not 0 < args.duration <= 120 or not 0 <= args.warmup <= 30:
        parser.error("rate must be positive, duration in (0, 120] s, warmup in [0, 30] s")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.no_pin:
        cpus = []
    client_pin = _pin(cpus[1] if len(cpus) >= 2 else None)
    load_at_start = _load()
    started = time.time()
    bare = _measure("bare", args, cpus)
    aegis = _measure("aegis", args, cpus)
    p99 = aegis["latency_ms"].get("p99")
    report = {
        "benchmark": "envoy ext_authz gRPC (Authorization/Check), open loop",
        "config": {
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "mix": [label for label, _ in MIX],
        },
        "machine": {
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
            "cpus": len(cpus) or os.cpu_count(),
            "client_affinity": client_pin,
            "load_average_at_start": load_at_start,
            "load_average_at_end": _load(),
        },
        "aegis": aegis,
        "baseline_bare": bare,
        "overhead_ms": {
            key: round(aegis["latency_ms"][key] - bare["latency_ms"][key], 3)
            for key in ("p50", "p99")
            if key in aegis["latency_ms"] and key in bare["latency_ms"]
        },
        "targets": {"p99_ms": TARGET_P99_MS, "rate": TARGET_RATE},
        "verdict": (
            "pass"
            if p99 is not None
            and p99 <= TARGET_P99_MS
            and args.rate >= TARGET_RATE
            and (aegis["achieved_rate"] or 0) >= 0.98 * args.rate
            and not aegis["errors"]
            else "fail"
            if args.rate >= TARGET_RATE
            else "not_at_target_rate"
        ),
        "duration_s": round(time.time() - started, 1),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
