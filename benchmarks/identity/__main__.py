"""Decision API throughput with and without agent-token identity, in one run.

    python -m benchmarks.identity                # 8 s per gateway, 64 connections
    python -m benchmarks.identity --duration 3   # shorter
    python -m benchmarks.identity --quick        # 2 s per gateway (the smoke test)

Two gateways (``python -m aegis serve``) run as subprocesses with the same
policies, audit off and ``log.decisions: false``; one takes identities as stated
(``identity.mode: unverified``), the other verifies a token on every call
(``identity.mode: tokens``: signature or cache, claims, chain match, kill switch).
Both receive the very same requests, ``Authorization`` header included, so only
the identity stage differs. Prints one JSON document on stdout (progress on
stderr); README.md beside this file says what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from aegis.core.call import parse_call
from aegis.identity.keys import SigningKeys
from aegis.identity.killswitch import KillSwitch, MemoryRevocationStore
from aegis.identity.stage import TokenIdentity
from aegis.identity.tokens import TokenMinter
from aegis.identity.verifier import TokenVerifier
from aegis.pipeline.stages import Refusal, RequestContext
from benchmarks.api.__main__ import example_calls, measure

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
ISS, AUD = "https://aegis.example/identity", "aegis-gateway"
#: Issue 5 item 9: the identity stages cost at most 15 % of throughput.
TARGET_MAX_COST = 0.15
#: Delegators put in front of every third call that states none (depth 2).
CHAIN = ["bench-root", "bench-orchestrator"]
MODES = ("unverified", "tokens")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def config(port: int, identity: dict[str, Any]) -> dict[str, Any]:
    return {
        "policy": {"paths": [str(ROOT / "examples")]},
        "log": {"level": "warning", "decisions": False},
        "audit": {"enabled": False},
        "api": {"host": HOST, "port": port},
        "envoy": {"enabled": False},
        "proxy": {"enabled": False},
        "mcp": {"enabled": False},
        "shutdown_grace_seconds": 1,
        "identity": identity,
    }


class Gateway:
    """One ``python -m aegis serve`` process on a port chosen beforehand."""

    def __init__(self, mode: str, config_path: Path, port: int, cpu: int | None) -> None:
        self.mode = mode
        self.port = port

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aegis", "serve", "--config", str(config_path)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.pid = self.proc.pid
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.pid, {cpu})
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"{mode} gateway exited {self.proc.returncode}: {err[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{mode} gateway did not listen on {port} within 30 s")
            time.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the gateway process (Linux /proc), else None."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def workload(minter: TokenMinter) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """The example calls (every third given a depth-2 chain) and a token for each."""
    calls: list[dict[str, Any]] = []
    tokens: list[str] = []
    minted: dict[tuple[str, str, tuple[str, ...], str], str] = {}
    for index, raw in enumerate(example_calls()):
        call = dict(raw)
        if index % 3 == 0 and not call.get("parent_chain"):
            call["parent_chain"] = list(CHAIN)
        parsed = parse_call(call)
        key = (parsed.tenant, parsed.agent_id, parsed.parent_chain, parsed.session_id)
        if key not in minted:
            minted[key], _ = minter.mint(
                parsed.agent_id,
                parsed.tenant,
                [],
                session_id=parsed.session_id or None,
                parent_chain=parsed.parent_chain,
            )
        calls.append(call)
        tokens.append(minted[key])
    info = {
        "distinct_calls": len(calls),
        "distinct_tokens": len(minted),
        "agents": len({(k[0], k[1]) for k in minted}),
        "tokens_with_chain": sum(1 for k in minted if k[2]),
        "max_chain_depth": max((len(k[2]) for k in minted), default=0),
    }
    return calls, tokens, info


def http_request(port: int, body: bytes, token: str) -> bytes:
    return (
        b"POST /v1/decide HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
        % (HOST.encode(), port, token.encode(), len(body), body)
    )


def preflight(gateway: Gateway, calls: list[dict[str, Any]], tokens: list[str]) -> dict[str, Any]:
    """Each call once through httpx: statuses, outcomes and codes."""
    statuses: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    with httpx.Client(base_url=f"http://{HOST}:{gateway.port}", trust_env=False) as client:
        for call, token in zip(calls, tokens, strict=True):
            resp = client.post(
                "/v1/decide", json=call, headers={"authorization": f"Bearer {token}"}
            )
            statuses[resp.status_code] += 1
            if resp.status_code == 200:
                doc = resp.json()
                outcomes[str(doc.get("outcome"))] += 1
                codes[str(doc.get("code"))] += 1
    return {
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "outcomes": dict(sorted(outcomes.items())),
        "codes": dict(sorted(codes.items())),
    }


def _time_us(fn: Any, items: list[Any]) -> float:
    started = time.perf_counter_ns()
    for item in items:
        fn(item)
    return round((time.perf_counter_ns() - started) / len(items) / 1e3, 2)


def micro(keys: SigningKeys, minter: TokenMinter, n: int) -> dict[str, Any]:
    """In-process: TokenVerifier.verify (cache miss, cache hit), TokenIdentity.authenticate."""
    verifier = TokenVerifier(keys.verification_keys(), issuer=ISS, audience=AUD)
    fresh = [minter.mint(f"agent-{i}", "acme", ["read"], parent_chain=CHAIN)[0] for i in range(n)]
    miss_us = _time_us(verifier.verify, fresh)
    hit_us = _time_us(verifier.verify, fresh)

    async def authenticate() -> dict[str, Any]:
        kill_switch = await KillSwitch(MemoryRevocationStore()).start()
        for i in range(100):  # revocations of other tokens: the check has something to scan
            await kill_switch.revoke(
                "jti", tenant="acme", target=f"other-{i}", actor="bench", reason="bench"
            )
        stage = TokenIdentity(verifier, kill_switch=kill_switch)
        token, _ = minter.mint("agent-0", "acme", ["read"], parent_chain=CHAIN)
        call = parse_call(
            {"tenant": "acme", "agent_id": "agent-0", "tool": "crm.read", "params": {}}
        )
        ctx = RequestContext(door="api", credentials=token)
        first = await stage.authenticate(call, ctx)
        assert not isinstance(first, Refusal), first
        started = time.perf_counter_ns()
        for _ in range(n):
            await stage.authenticate(call, ctx)
        elapsed = time.perf_counter_ns() - started
        return {
            "authenticate_us_cache_hit": round(elapsed / n / 1e3, 2),
            "kill_switch_revocations": 100,
        }

    return {
        "iterations": n,
        "verify_us_cache_miss": miss_us,
        "verify_us_cache_hit": hit_us,
        **asyncio.run(authenticate()),
        "signature_checks": verifier.stats.signature_checks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.identity")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per gateway")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="2 s per gateway, 0.5 s warm-up")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2.0, 0.5
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    if not 1 <= args.connections <= 1024:
        parser.error("--connections must be between 1 and 1024")

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpu = cpus[0] if len(cpus) >= 2 else None
    client_cpu = cpus[1] if len(cpus) >= 2 else None

    started = time.perf_counter()
    keys = SigningKeys.generate()
    minter = TokenMinter(keys, issuer=ISS, audience=AUD, lifetime=timedelta(hours=1))
    calls, tokens, work = workload(minter)
    log("micro: TokenVerifier / TokenIdentity ...")
    micro_figures = micro(keys, minter, 500 if args.quick else 5000)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})

    report: dict[str, Any] = {
        "config": {
            "quick": args.quick,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "keep_alive": True,
            "pipelining": False,
            "load_generator": "benchmarks.api.loadgen (asyncio, closed loop)",
            "same_requests_both_modes": True,
            "audit": False,
            "log_decisions": False,
            **work,
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "server_cpu": server_cpu,
            "load_generator_cpu": client_cpu,
            "note": "load generator and gateway share the machine (2 cores here)",
        },
        "target": {"max_throughput_cost": TARGET_MAX_COST},
        "micro": micro_figures,
    }
    bodies = [json.dumps(c, separators=(",", ":")).encode() for c in calls]
    with tempfile.TemporaryDirectory(prefix="aegis-bench-identity-") as tmp_name:
        tmp = Path(tmp_name)
        pem = tmp / "issuer.pub.pem"
        pem.write_bytes(keys.active.key.as_pem(private=False))
        identities: dict[str, dict[str, Any]] = {
            "unverified": {"mode": "unverified"},
            "tokens": {
                "mode": "tokens",
                "issuer": ISS,
                "audience": AUD,
                "public_key_paths": [str(pem)],
            },
        }
        results: dict[str, Any] = {}
        preflights: dict[str, Any] = {}
        for mode in MODES:
            port = free_port()
            path = tmp / f"aegis-{mode}.json"
            path.write_text(json.dumps(config(port, identities[mode])))
            log(f"{mode}: starting gateway on {HOST}:{port} ...")
            gateway = Gateway(mode, path, port, server_cpu)
            try:
                preflights[mode] = preflight(gateway, calls, tokens)
                requests = [
                    http_request(port, body, token)
                    for body, token in zip(bodies, tokens, strict=True)
                ]
                log(f"{mode}: {args.connections} connections, {args.duration} s ...")
                summary = measure(
                    gateway,  # type: ignore[arg-type]  # duck-typed: port, cpu_seconds()
                    requests,
                    args.connections,
                    args.duration,
                    args.warmup,
                )
            finally:
                gateway.stop()
            results[mode] = {
                "decisions_per_s": summary["requests_per_s"],
                "p50_ms": summary["latency_ms"]["p50"],
                "p99_ms": summary["latency_ms"]["p99"],
                "server_cpu_us_per_request": summary.get("server_cpu_us_per_request"),
                "server_cpu_utilisation": summary.get("server_cpu_utilisation"),
                "requests": summary["requests"],
                "errors": summary["errors"],
                "statuses": summary["statuses"],
            }
    report["preflight"] = preflights
    report["preflight"]["same_outcomes"] = (
        preflights["unverified"]["codes"] == preflights["tokens"]["codes"]
    )
    report["results"] = results
    plain = results["unverified"]["decisions_per_s"] or 1
    ratio = results["tokens"]["decisions_per_s"] / plain
    cpu_plain = results["unverified"]["server_cpu_us_per_request"]
    cpu_tokens = results["tokens"]["server_cpu_us_per_request"]
    report["comparison"] = {
        "tokens_over_unverified_throughput": round(ratio, 3),
        "throughput_cost": round(1 - ratio, 3),
        "added_p50_ms": round(results["tokens"]["p50_ms"] - results["unverified"]["p50_ms"], 3),
        "added_server_cpu_us_per_request": (
            round(cpu_tokens - cpu_plain, 2)
            if cpu_plain is not None and cpu_tokens is not None
            else None
        ),
        "meets_target": (1 - ratio) <= TARGET_MAX_COST,
    }
    report["duration_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
