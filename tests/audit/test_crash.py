"""THE crash test (DESIGN.md §6): kill -9 under load loses no allowed write decision.

A real `aegis serve` subprocess, concurrent write calls through POST /v1/decide
for ~3 s, then SIGKILL mid-load. Every call answered 200/allow must have its
record (by decision_id) in the SQLite store, and the chain must verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from aegis.audit.record import GENESIS_HASH, check_link
from aegis.audit.sqlite_store import SqliteAuditStore

POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: crash, tenant: acme, owner: t@acme.example}
tools:
  - {name: db.write, kind: write}
rules:
  - id: allow-writes
    match: {tools: [db.write]}
    effect: allow
    reason: test
"""

LOAD_SECONDS = 3.0
WORKERS = 32


def write_config(tmp: Path) -> Path:
    (tmp / "policy").mkdir()
    (tmp / "policy" / "policy.yaml").write_text(POLICY)
    config = {
        "policy": {"paths": ["policy"]},
        "log": {"level": "info", "decisions": False},
        "api": {"port": 0},
        "envoy": {"enabled": False},
        "proxy": {"enabled": False},
        "audit": {"sqlite_path": "state/audit.db", "signing_key_path": "state/key.pem"},
    }
    path = tmp / "aegis.json"
    path.write_text(json.dumps(config))
    return path


def start(config: Path) -> tuple[subprocess.Popen[str], int, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aegis", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    port: list[int] = []
    ready = threading.Event()

    def drain() -> None:  # keeps the pipe empty so the server never blocks on stderr
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if not port and '"gateway.started"' in line:
                port.append(int(json.loads(line)["ports"]["api"]))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(30) or not port:
        proc.kill()
        raise AssertionError("gateway did not start:\n" + "".join(lines[-30:]))
    return proc, port[0], lines


async def load(port: int, proc: subprocess.Popen[str]) -> tuple[list[str], int]:
    allowed: list[str] = []
    errors = 0
    deadline = time.monotonic() + LOAD_SECONDS
    killed = asyncio.Event()

    async def worker(client: httpx.AsyncClient, w: int) -> None:
        nonlocal errors
        n = 0
        while not killed.is_set() and time.monotonic() < deadline + 2:
            n += 1
            call = {"tenant": "acme", "agent_id": f"a{w}", "tool": "db.write", "params": {"n": n}}
            try:
                resp = await client.post(f"http://127.0.0.1:{port}/v1/decide", json=call)
            except httpx.HTTPError:
                errors += 1
                if killed.is_set():
                    return
                continue
            body = resp.json()
            if resp.status_code == 200 and body.get("outcome") == "allow":
                allowed.append(body["decision_id"])

    async def killer() -> None:
        await asyncio.sleep(LOAD_SECONDS)
        proc.send_signal(signal.SIGKILL)  # mid-load: the workers are still sending
        killed.set()

    limits = httpx.Limits(max_connections=WORKERS)
    async with httpx.AsyncClient(timeout=5, limits=limits) as client:
        await asyncio.gather(killer(), *(worker(client, w) for w in range(WORKERS)))
    return allowed, errors


def test_kill_9_under_load_loses_no_allowed_write(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    proc, port, _lines = start(config)
    try:
        allowed, _errors = asyncio.run(load(port, proc))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(allowed) > 100, f"too little load to mean anything: {len(allowed)}"

    async def read() -> tuple[list[object], list[dict[str, object]]]:
        store = SqliteAuditStore(tmp_path / "state" / "audit.db")
        try:
            return [r async for r in store.records()], await store.checkpoints()
        finally:
            await store.close()

    records, checkpoints = asyncio.run(read())
    recorded = {r.body.get("decision_id") for r in records}  # type: ignore[attr-defined]
    lost = [d for d in allowed if d not in recorded]
    assert not lost, f"{len(lost)} of {len(allowed)} allowed writes have no record"
    prev = GENESIS_HASH
    for i, record in enumerate(records):
        assert check_link(record, prev, i) is None  # type: ignore[arg-type]
        prev = record.hash  # type: ignore[attr-defined]
    try:
        from aegis.audit.checkpoint import SigningKey, VerifyKey, keyring
        from aegis.audit.verify import verify_log
    except ImportError:
        return
    key = SigningKey.from_pem((tmp_path / "state" / "key.pem").read_bytes())
    report = verify_log(records, checkpoints, keyring(VerifyKey.from_pem(key.public_pem())))  # type: ignore[arg-type]
    assert report.ok, report.message
