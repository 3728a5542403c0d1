"""The issue's acceptance run: every example call through the gateway, then
`aegis audit verify` on the log it wrote -- clean, and then after each kind of
tampering done to the SQLite file itself, naming the first bad record."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from aegis.cli.main import cli
from aegis.server import build_gateway
from aegis.settings import AegisSettings

ROOT = Path(__file__).resolve().parents[2]


def example_calls() -> list[dict[str, object]]:
    calls = []
    for suite in sorted((ROOT / "examples").glob("*/policy.test.yaml")):
        for case in yaml.safe_load(suite.read_text())["tests"]:
            if "expect" in case:
                calls.append(case["call"])
    return calls


@pytest.fixture(scope="module")
def audited_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    tmp = tmp_path_factory.mktemp("gateway")
    settings = AegisSettings.model_validate(
        {
            "policy": {"paths": [str(ROOT / "examples")]},
            "log": {"decisions": False},
            "api": {"port": 0},
            "envoy": {"enabled": False},
            "proxy": {"enabled": False},
            "audit": {
                "sqlite_path": str(tmp / "audit.db"),
                "signing_key_path": str(tmp / "key.pem"),
                "checkpoint_every_records": 10,
            },
        }
    )
    calls = example_calls()

    async def run() -> None:
        gateway = build_gateway(settings, log_stream=io.StringIO())
        ports = await gateway.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}") as api:
                for call in calls:
                    assert (await api.post("/v1/decide", json=call)).status_code == 200
        finally:
            await gateway.stop()

    asyncio.run(run())
    public = tmp / "key.pub.pem"
    from aegis.audit.checkpoint import SigningKey

    public.write_bytes(SigningKey.from_pem((tmp / "key.pem").read_bytes()).public_pem())
    return tmp / "audit.db", public, len(calls)


def verify(db: Path, public: Path) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(
        cli, ["audit", "verify", "--json", "--sqlite", str(db), "--public-key", str(public)]
    )
    return result.exit_code, json.loads(result.output)


def tampered_copy(db: Path, tmp_path: Path, edits: list[tuple[str, tuple[object, ...]]]) -> Path:
    copy = tmp_path / "tampered.db"
    source = sqlite3.connect(db)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    for sql, params in edits:
        target.execute(sql, params)
    target.commit()
    target.close()
    return copy


def test_the_examples_log_verifies(audited_log: tuple[Path, Path, int]) -> None:
    db, public, calls = audited_log
    code, report = verify(db, public)
    assert code == 0, report
    assert report["ok"] is True
    # One record per decision, plus the policy activation at start.
    assert report["records_checked"] == calls + 1
    assert report["checkpoints_checked"] >= 1


def record(db: Path, seq: int) -> dict[str, object]:
    conn = sqlite3.connect(db)
    (text,) = conn.execute("SELECT record FROM audit_records WHERE seq = ?", (seq,)).fetchone()
    conn.close()
    return json.loads(text)  # type: ignore[no-any-return]


SET = "UPDATE audit_records SET record = ? WHERE seq = ?"


@pytest.mark.parametrize(
    ("name", "edits_for", "first_bad"),
    [
        (
            "modified",
            lambda r7, r8: [
                (SET, (json.dumps({**r7, "body": {**r7["body"], "outcome": "allow"}}), 7))
            ],
            7,
        ),
        ("deleted", lambda r7, r8: [("DELETE FROM audit_records WHERE seq = 7", ())], 7),
        ("reordered", lambda r7, r8: [(SET, (json.dumps(r8), 7)), (SET, (json.dumps(r7), 8))], 7),
        ("truncated", lambda r7, r8: [("DELETE FROM audit_records WHERE seq >= 12", ())], 12),
    ],
)
def test_each_kind_of_tampering_is_caught_and_named(
    audited_log: tuple[Path, Path, int],
    tmp_path: Path,
    name: str,
    edits_for: object,
    first_bad: int,
) -> None:
    db, public, _ = audited_log
    edits = edits_for(record(db, 7), record(db, 8))  # type: ignore[operator]
    code, report = verify(tampered_copy(db, tmp_path, edits), public)
    assert code == 1, (name, report)
    assert report["ok"] is False
    assert report["first_bad_seq"] == first_bad, (name, report)
    assert str(report["code"]).startswith("audit."), report
