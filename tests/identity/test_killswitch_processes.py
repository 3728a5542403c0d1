"""Kill switch across processes and connections, on Redis for real.

* two processes: a second Python process subscribes and records when it first
  refuses a call after a revoke taken in this one; it must refuse within a bound;
* a replica whose subscription is cut reconnects, reloads the full set, and
  refuses what was revoked while it was away;
* the benchmark's smoke run prints the documented JSON.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from test_killswitch_backends import SwitchFactory

from aegis.core.call import ToolCall
from services import REDIS_URL, require_redis

ROOT = Path(__file__).resolve().parents[2]
BOUND_S = 1.0  # generous on a loaded CI machine; the benchmark reports the real figures

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from aegis.core.call import ToolCall
    from aegis.identity.killswitch import KillSwitch
    from aegis.identity.killswitch_redis import RedisRevocationStore

    async def main(url, prefix, n):
        ks = await KillSwitch(RedisRevocationStore(url, prefix=prefix)).start()
        print("ready", flush=True)
        for i in range(n):
            call = ToolCall(tenant="acme", agent_id=f"agent{i}", tool="crm.read")
            other = ToolCall(tenant="other", agent_id=f"agent{i}", tool="crm.read")
            deadline = time.monotonic() + 10
            while await ks.check(call) is None and time.monotonic() < deadline:
                await asyncio.sleep(0)
            refusal = await ks.check(call)
            at = time.time_ns() if refusal is not None else -1
            leak = await ks.check(other) is not None
            print(i, at, refusal.code if refusal else "-", leak, flush=True)
        await ks.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def test_a_second_process_refuses_within_a_bound(tmp_path: Path) -> None:
    require_redis()
    switches = SwitchFactory("redis")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    n = 5

    async def scenario() -> list[float]:
        ks = await switches.open()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), REDIS_URL, switches.prefix, str(n),
            stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert proc.stdout is not None
        delays = []
        try:
            assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"ready"
            for i in range(n):
                t0 = time.time_ns()
                await ks.revoke("agent", tenant="acme", target=f"agent{i}", actor="t", reason="r")
                line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode().split()
                assert line[0] == str(i) and line[2] == "decision.revoked", line
                assert line[3] == "False", "a revocation in tenant acme refused tenant other"
                delays.append((int(line[1]) - t0) / 1e9)
        finally:
            await asyncio.wait_for(proc.wait(), 20)
            await switches.close_all()
        return delays

    try:
        delays = asyncio.run(scenario())
    finally:
        switches.cleanup()
    assert len(delays) == n
    assert max(delays) < BOUND_S, delays


def test_a_cut_subscription_reconnects_and_reloads() -> None:
    require_redis()
    import redis

    switches = SwitchFactory("redis")
    admin = redis.Redis.from_url(REDIS_URL)

    async def scenario() -> None:
        one = await switches.open()
        two = await switches.open()  # its connections are named aegis-test-<run>-1
        store = switches.stores[1]  # two's own store: its reconnect counter
        name = f"aegis-test-{switches.run_id}-1"
        killed = 0
        for client in admin.client_list():
            if client["name"] == name:
                killed += admin.client_kill_filter(_id=client["id"])
        assert killed >= 1
        # Revoked while two is (probably) reconnecting: pub/sub would lose it; the reload must not.
        rev = await one.revoke("session", tenant="acme", target="s1", actor="t", reason="r")
        call = ToolCall(tenant="acme", agent_id="bot", tool="x", session_id="s1")
        took = await switches.settle(lambda: two.match(call) is not None, timeout=5)
        assert took < 5
        await switches.settle(lambda: store.out_of_sync_since is None and store.reconnects >= 1)
        assert [r.id for r in two.active()] == [rev.id]

    try:
        asyncio.run(_closing(switches, scenario()))
    finally:
        admin.close()
        switches.cleanup()


async def _closing(switches: SwitchFactory, scenario: object) -> None:
    try:
        await scenario  # type: ignore[misc]
    finally:
        await switches.close_all()


def test_killswitch_benchmark_smoke() -> None:
    require_redis()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.killswitch", "--n", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["n"] == 10 and report["missed"] == 0
    for section in ("time_to_revoke", "revoke_call", "baseline_pubsub"):
        assert {"p50_ms", "p99_ms", "max_ms"} <= report[section].keys()
    assert report["child_metric"]["count"] == 10
    assert isinstance(report["meets_target"], bool)
