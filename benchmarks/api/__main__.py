"""Decision API throughput and latency, with a bare-server baseline in the same run.

    python -m benchmarks.api                   # 10 s per measurement, 1 and 64 connections
    python -m benchmarks.api --duration 3      # shorter
    python -m benchmarks.api --no-wrk          # only the built-in load generator

Prints one JSON document on stdout (progress goes to stderr). README.md beside
this file says what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from aegis.core.call import parse_call
from aegis.errors import CallError, Diagnostic
from aegis.policy import testing as policy_tests
from aegis.policy.source import read_source
from benchmarks.api.loadgen import run_load

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
TARGETS = {"decisions_per_s_at_64": 20_000, "p99_ms_at_64": 5.0, "p99_ms_at_1": 1.0}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def example_calls() -> list[dict[str, Any]]:
    """Every valid call of examples/*/policy.test.yaml: a mix of all four outcomes."""
    calls = []
    for file in policy_tests.suite_files([ROOT / "examples"]):
        source = read_source(file)
        if isinstance(source, Diagnostic):
            raise SystemExit(str(source))
        suite = policy_tests.TestSuite.model_validate(source.data)
        for case in suite.tests:
            try:
                parse_call(case.call)
            except CallError:
                continue
            calls.append(case.call)
    return calls


def http_request(port: int, body: bytes) -> bytes:
    return (
        b"POST /v1/decide HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (HOST.encode(), port, len(body), body)
    )


class Server:
    """One ``benchmarks.api.serve`` process."""

    def __init__(self, mode: str, cpu: int | None, evidence: str) -> None:
        argv = [sys.executable, "-m", "benchmarks.api.serve", "--mode", mode]
        argv += ["--evidence", evidence]
        if cpu is not None:
            argv += ["--cpu", str(cpu)]
        self.mode = mode
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{mode} server did not start (exit {self.proc.wait(5)})")
        info = json.loads(line)
        self.port = int(info["port"])
        self.pid = int(info["pid"])

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process (Linux /proc), else None."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def preflight(server: Server, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Each call once through httpx: all answered 200, and the outcome mix."""
    outcomes: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=f"http://{HOST}:{server.port}", trust_env=False) as client:
        for call in calls:
            resp = client.post("/v1/decide", json=call)
            statuses[resp.status_code] += 1
            if server.mode == "decide" and resp.status_code == 200:
                outcomes[resp.json()["outcome"]] += 1
    return {"statuses": dict(statuses), "outcomes": dict(sorted(outcomes.items()))}


def measure(
    server: Server, requests: list[bytes], connections: int, duration: float, warmup: float
) -> dict[str, Any]:
    before = server.cpu_seconds()
    started = time.perf_counter()
    result = asyncio.run(
        run_load(
            HOST, server.port, requests, connections=connections, duration=duration, warmup=warmup
        )
    )
    wall = time.perf_counter() - started
    summary = result.summary()
    after = server.cpu_seconds()
    if before is not None and after is not None and result.completed:
        # Over warm-up and measurement alike; requests counted only in the latter,
        # so this is scaled by the measured share of the wall time.
        busy = (after - before) * (result.duration_s / wall)
        summary["server_cpu_utilisation"] = round(busy / result.duration_s, 3)
        summary["server_cpu_us_per_request"] = round(busy / result.completed * 1e6, 2)
    return summary


_WRK_LATENCY = re.compile(r"^\s*(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(
    wrk: str, port: int, body: bytes, *, connections: int, duration: float, cpu: int | None
) -> dict[str, Any]:
    script = (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        script_path = handle.name
    argv = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    argv += ["-s", script_path, f"http://{HOST}:{port}/v1/decide"]

    def pin() -> None:
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {cpu})

    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + 30, preexec_fn=pin, check=False
        )
    finally:
        os.unlink(script_path)
    out = proc.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:(.*)", out)
    latency = {f"p{p}": round(float(v) * _WRK_UNITS[u], 3) for p, v, u in _WRK_LATENCY.findall(out)}
    return {
        "connections": connections,
        "threads": 1,
        "requests_per_s": round(float(rps.group(1))) if rps else None,
        "latency_ms": latency,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else None,
        "exit_code": proc.returncode,
    }


def machine(server_cpu: int | None, client_cpu: int | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "server_cpu": server_cpu,
        "load_generator_cpu": client_cpu,
        "note": (
            "The load generator runs on the same machine as the server and takes "
            "CPU from it (each pinned to its own CPU where possible); figures are "
            "lower bounds of what the server does with a machine to itself."
        ),
    }
    with contextlib.suppress(OSError):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each")
    parser.add_argument("--connections", default="1,64", help="comma-separated counts")
    parser.add_argument(
        "--evidence",
        choices=["none", "metrics", "metrics+log"],
        default="metrics",
        help="evidence sink of the decision server (default: Prometheus metrics)",
    )
    parser.add_argument("--no-wrk", action="store_true", help="skip wrk even if installed")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    counts = [int(c) for c in args.connections.split(",") if c.strip()]
    if not counts or any(not 1 <= c <= 1024 for c in counts):
        parser.error("--connections: counts between 1 and 1024")

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpu = cpus[0] if len(cpus) >= 2 else None
    client_cpu = cpus[1] if len(cpus) >= 2 else None
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    wrk = None if args.no_wrk else shutil.which("wrk")

    calls = example_calls()
    bodies = [json.dumps(call, separators=(",", ":")).encode() for call in calls]
    report: dict[str, Any] = {
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": counts,
            "keep_alive": True,
            "pipelining": False,
            "distinct_calls": len(calls),
            "evidence": args.evidence,
            "gc_frozen_after_startup": True,
            "load_generator": "benchmarks.api.loadgen (asyncio Protocol, closed loop)",
        },
        "machine": machine(server_cpu, client_cpu),
        "targets": TARGETS,
    }
    started = time.perf_counter()
    decide = Server("decide", server_cpu, args.evidence)
    bare = Server("bare", server_cpu, args.evidence)
    try:
        report["preflight"] = {"decide": preflight(decide, calls), "bare": preflight(bare, calls)}
        results: dict[str, dict[str, Any]] = {"decision_api": {}, "bare_baseline": {}}
        # Interleaved, so that a neighbour's load hits both sides alike.
        for connections in counts:
            for name, server in (("decision_api", decide), ("bare_baseline", bare)):
                log(f"{name}: {connections} connection(s), {args.duration} s ...")
                requests = [http_request(server.port, body) for body in bodies]
                results[name][f"c{connections}"] = measure(
                    server, requests, connections, args.duration, args.warmup
                )
        report.update(results)
        report["ratios"] = {
            f"c{c}": {
                "decisions_per_s_over_bare_requests_per_s": round(
                    results["decision_api"][f"c{c}"]["requests_per_s"]
                    / max(1, results["bare_baseline"][f"c{c}"]["requests_per_s"]),
                    3,
                ),
                "added_p50_ms": round(
                    results["decision_api"][f"c{c}"]["latency_ms"]["p50"]
                    - results["bare_baseline"][f"c{c}"]["latency_ms"]["p50"],
                    3,
                ),
            }
            for c in counts
        }
        if wrk is not None:
            wrk_results: dict[str, Any] = {"decision_api": {}, "bare_baseline": {}}
            for connections in counts:
                for name, server in (("decision_api", decide), ("bare_baseline", bare)):
                    log(f"wrk {name}: {connections} connection(s) ...")
                    wrk_results[name][f"c{connections}"] = run_wrk(
                        wrk,
                        server.port,
                        bodies[0],
                        connections=connections,
                        duration=args.duration,
                        cpu=client_cpu,
                    )
            wrk_results["note"] = "one call body repeated (wrk sends a fixed request)"
            report["wrk"] = wrk_results
        else:
            report["wrk"] = None if args.no_wrk else "not installed (apt-get install wrk)"
    finally:
        decide.stop()
        bare.stop()

    verdict: dict[str, Any] = {}
    api = report["decision_api"]
    if "c64" in api:
        verdict["decisions_per_s_at_64"] = api["c64"]["requests_per_s"]
        verdict["meets_throughput_target"] = (
            api["c64"]["requests_per_s"] >= TARGETS["decisions_per_s_at_64"]
        )
        verdict["meets_p99_target_at_64"] = (
            api["c64"]["latency_ms"]["p99"] <= TARGETS["p99_ms_at_64"]
        )
    if "c1" in api:
        verdict["meets_p99_target_at_1"] = api["c1"]["latency_ms"]["p99"] <= TARGETS["p99_ms_at_1"]
    report["verdict"] = verdict
    with contextlib.suppress(OSError):
        report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["duration_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
