"""Hot reload of a 5,000-rule policy under load: failed calls, mixed versions, latency.

A gateway process (``aegis serve``, decision API only, audit off) serves the
generated 5,000-rule / 100-tenant set from a folder, plus a one-rule marker
document whose effect flips between two versions. Two phases of the same
closed-loop load (benchmarks.api.loadgen) are measured side by side:

    steady   no change to the policy
    reload   the marker file is replaced (atomic rename) every --swap-every seconds:
             the gateway rebuilds and recompiles the whole 5,000-rule set in a
             worker thread and swaps it in

During the reload phase a checker asks for the marker decision every 20 ms and
requires each answer to belong wholly to one version (outcome, rule ids and
bundle hash agree). Output: one JSON document on stdout. Bounded in time and
count; 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.api.loadgen import run_load
from benchmarks.engine.generate import generate_calls, generate_policy_set

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]

MARKER = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {{name: marker}}
tools:
  - {{name: bench.marker, kind: read}}
rules:
  - id: marker-{v}
    match: {{tools: [bench.marker]}}
    effect: {effect}
    reason: marker {v}
"""
VERSIONS = {"a": "allow", "b": "deny"}
MARKER_CALL = {"tenant": "t000", "agent_id": "bench", "tool": "bench.marker", "params": {}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _request(port: int, call: dict[str, Any]) -> bytes:
    body = json.dumps(call).encode()
    return (
        b"POST /v1/decide HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (HOST.encode(), port, len(body), body)
    )


def _write_marker(folder: Path, v: str) -> None:
    tmp = folder.parent / "marker.next"
    tmp.write_text(MARKER.format(v=v, effect=VERSIONS[v]))
    tmp.replace(folder / "marker.yaml")  # atomic, as a deploy would publish it


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _checker(port: int, stop: asyncio.Event) -> dict[str, Any]:
    seen: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
    statuses: Counter[int] = Counter()
    errors = 0
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", trust_env=False) as client:
        while not stop.is_set():
            try:
                r = await client.post("/v1/decide", json=MARKER_CALL, timeout=10)
            except httpx.HTTPError:
                errors += 1
                continue
            statuses[r.status_code] += 1
            if r.status_code == 200:
                d = r.json()
                seen.setdefault(d["bundle_hash"], set()).add((d["outcome"], tuple(d["rule_ids"])))
            await asyncio.sleep(0.02)
    mixed = sum(1 for answers in seen.values() if len(answers) != 1)
    answers = {h[7:19]: sorted(a) for h, a in seen.items()}
    return {
        "answers": sum(statuses.values()),
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "versions_seen": len(seen),
        "versions_with_mixed_answers": mixed,
        "answers_by_version": {k: [[o, list(r)] for o, r in v] for k, v in answers.items()},
    }


async def _phase(
    port: int, requests: list[bytes], args: argparse.Namespace, folder: Path | None
) -> dict[str, Any]:
    stop = asyncio.Event()
    swaps = 0

    async def swapper() -> None:
        nonlocal swaps
        assert folder is not None
        current = "a"
        while not stop.is_set():
            await asyncio.sleep(args.swap_every)
            if stop.is_set():
                break
            current = "b" if current == "a" else "a"
            _write_marker(folder, current)
            swaps += 1

    tasks = [asyncio.create_task(_checker(port, stop))]
    if folder is not None:
        tasks.append(asyncio.create_task(swapper()))
    load = await run_load(
        HOST, port, requests, connections=args.connections, duration=args.duration, warmup=1.0
    )
    stop.set()
    done = await asyncio.gather(*tasks)
    out = {"load": load.summary(), "checker": done[0]}
    if folder is not None:
        out["swaps"] = swaps
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reload")
    parser.add_argument("--rules", type=int, default=5000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--swap-every", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="500 rules, 4 s phases")
    args = parser.parse_args(argv)
    if args.quick:
        args.rules, args.tenants, args.duration, args.swap_every = 500, 10, 4.0, 1.0
    args.duration = min(args.duration, 120.0)

    with tempfile.TemporaryDirectory(prefix="aegis-reload-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "policy"
        folder.mkdir()
        pset = generate_policy_set(args.tenants, args.rules)
        for name, text in pset.texts:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        _write_marker(folder, "a")
        port = _free_port()
        config = tmp / "aegis.yaml"
        config.write_text(
            json.dumps(
                {
                    "policy": {"paths": [str(folder)], "poll_seconds": 0.25},
                    "log": {"level": "warning", "decisions": False},
                    "audit": {"enabled": False},
                    "api": {"host": HOST, "port": port},
                    "envoy": {"enabled": False},
                    "proxy": {"enabled": False},
                    "shutdown_grace_seconds": 2,
                }
            )
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "aegis", "serve", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"http://{HOST}:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"gateway did not start: {err[-2000:]}")
                time.sleep(0.2)
            calls = [c for _, c in generate_calls(pset, 2000, seed=7)] + [MARKER_CALL] * 50
            requests = [_request(port, c) for c in calls]
            steady = asyncio.run(_phase(port, requests, args, None))
            reload = asyncio.run(_phase(port, requests, args, folder))
            time.sleep(1.0)  # let the last swap land before reading the counters
            metrics = httpx.get(f"http://{HOST}:{port}/metrics", timeout=5).text
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def failed(phase: dict[str, Any]) -> int:
        load = phase["load"]
        non_200 = sum(v for k, v in load["statuses"].items() if k != "200")
        checker = phase["checker"]
        bad = sum(v for k, v in checker["statuses"].items() if k != "200")
        return int(load["errors"] + non_200 + checker["errors"] + bad)

    p99_steady = steady["load"]["latency_ms"]["p99"]
    p99_reload = reload["load"]["latency_ms"]["p99"]
    result = {
        "benchmark": "hot reload under load",
        "policy": pset.summary() | {"marker_rules": 1},
        "connections": args.connections,
        "phase_seconds": args.duration,
        "swap_every_seconds": args.swap_every,
        "steady": steady,
        "reload": reload,
        "reloads": {
            "activated": _metric(metrics, "aegis_policy_reloads_total", result="activated"),
            "failed": _metric(metrics, "aegis_policy_reloads_total", result="failed"),
        },
        "failed_calls": {"steady": failed(steady), "reload": failed(reload)},
        "mixed_versions": reload["checker"]["versions_with_mixed_answers"],
        "p99_ratio_reload_vs_steady": round(p99_reload / p99_steady, 2) if p99_steady else None,
        "target": "zero failed calls and no decision mixing two versions during swaps",
        "met": failed(reload) == 0 and reload["checker"]["versions_with_mixed_answers"] == 0,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
