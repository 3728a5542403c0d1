"""`aegis audit ...` as a person and a cron job use it: output, JSON and exit codes."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aegis.audit.checkpoint import SigningKey, VerifyKey, sign_checkpoint
from aegis.audit.export import write_jsonl
from aegis.audit.merkle import leaf_hash, root_of
from aegis.audit.record import GENESIS_HASH, AuditRecord, RecordKind, make_record
from aegis.cli.main import cli


def _log(n: int = 60) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    prev = GENESIS_HASH
    for seq in range(n):
        rec = make_record(
            seq=seq,
            kind=RecordKind.DECISION,
            time=f"2025-01-01T00:00:{seq:02d}.000000Z",
            tenant="acme" if seq % 2 else "globex",
            body={"agent_id": f"a{seq % 3}", "tool": "t", "trace_id": f"{seq:032x}"},
            prev_hash=prev,
        )
        out.append(rec)
        prev = rec.hash
    return out


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def keys(tmp_path: Path, runner: CliRunner) -> tuple[SigningKey, Path]:
    result = runner.invoke(cli, ["audit", "keygen", "--out", str(tmp_path / "key.pem")])
    assert result.exit_code == 0, result.output
    return SigningKey.from_pem((tmp_path / "key.pem").read_bytes()), tmp_path / "key.pub.pem"


def _checkpoints(key: SigningKey, records: list[AuditRecord], sizes: tuple[int, ...]) -> list[Any]:
    leaves = [leaf_hash(r.leaf_bytes()) for r in records]
    return [
        sign_checkpoint(key, log_id="l", tree_size=s, root_hash=root_of(leaves[:s]), time="t")
        for s in sizes
    ]


def _write(path: Path, records: list[AuditRecord], cps: list[Any], **filters: Any) -> Path:
    buf = io.StringIO()
    write_jsonl(records, cps, buf, **filters)
    path.write_text(buf.getvalue())
    return path


def test_keygen(tmp_path: Path, runner: CliRunner, keys: tuple[SigningKey, Path]) -> None:
    key, pub = keys
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600
    assert VerifyKey.from_pem(pub.read_bytes()).kid == key.kid
    again = runner.invoke(cli, ["audit", "keygen", "--out", str(tmp_path / "key.pem")])
    assert again.exit_code == 3  # never overwrites a key without --force
    result = runner.invoke(cli, ["audit", "keygen", "--json", "--out", str(tmp_path / "k2.pem")])
    assert json.loads(result.output)["kid"]


def test_verify_export_ok_and_tampered(
    tmp_path: Path, runner: CliRunner, keys: tuple[SigningKey, Path]
) -> None:
    key, pub = keys
    log = _log()
    cps = _checkpoints(key, log, (20, 60))
    good = _write(tmp_path / "good.jsonl", log, cps)
    result = runner.invoke(cli, ["audit", "verify", "--input", str(good), "--public-key", str(pub)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "60 records" in result.output

    bad = _write(tmp_path / "bad.jsonl", log[:33] + log[34:], cps)
    args = ["audit", "verify", "--input", str(bad), "--public-key", str(pub)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and "first bad record: 33" in result.output
    body = json.loads(runner.invoke(cli, [*args, "--json"]).output)
    assert (
        body["ok"] is False and body["code"] == "audit.chain_broken" and body["first_bad_seq"] == 33
    )

    truncated = _write(tmp_path / "trunc.jsonl", log[:50], cps)
    result = runner.invoke(
        cli, ["audit", "verify", "--json", "--input", str(truncated), "--public-key", str(pub)]
    )
    assert result.exit_code == 1 and json.loads(result.output)["first_bad_seq"] == 50

    forged = dataclasses.replace(cps[0], tree_size=21)
    sig = _write(tmp_path / "sig.jsonl", log, [forged, cps[1]])
    result = runner.invoke(
        cli, ["audit", "verify", "--json", "--input", str(sig), "--public-key", str(pub)]
    )
    assert result.exit_code == 1 and json.loads(result.output)["code"] == "audit.bad_checkpoint"


def test_verify_wrong_public_key(
    tmp_path: Path, runner: CliRunner, keys: tuple[SigningKey, Path]
) -> None:
    key, _ = keys
    other = tmp_path / "other.pub.pem"
    other.write_bytes(SigningKey.generate().public_pem())
    log = _log(10)
    path = _write(tmp_path / "e.jsonl", log, _checkpoints(key, log, (10,)))
    result = runner.invoke(
        cli, ["audit", "verify", "--input", str(path), "--public-key", str(other)]
    )
    assert result.exit_code == 1 and "unknown key" in result.output


def test_verify_filtered_export(
    tmp_path: Path, runner: CliRunner, keys: tuple[SigningKey, Path]
) -> None:
    key, pub = keys
    log = _log()
    path = _write(tmp_path / "f.jsonl", log, _checkpoints(key, log, (40,)), tenant="acme")
    result = runner.invoke(
        cli, ["audit", "verify", "--json", "--input", str(path), "--public-key", str(pub)]
    )
    body = json.loads(result.output)
    assert result.exit_code == 0 and body["records_checked"] == 30 and body["records_proven"] == 20


@pytest.mark.parametrize("content", ["not json\n", '{"what": {}}\n', '{"record": 5}\n'])
def test_verify_unusable_input(
    tmp_path: Path, runner: CliRunner, keys: tuple[SigningKey, Path], content: str
) -> None:
    _, pub = keys
    path = tmp_path / "x.jsonl"
    path.write_text(content)
    result = runner.invoke(cli, ["audit", "verify", "--input", str(path), "--public-key", str(pub)])
    assert result.exit_code == 3, result.output


def test_verify_bad_key_and_usage(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("")
    (tmp_path / "bad.pem").write_text("nope")
    result = runner.invoke(
        cli,
        [
            "audit",
            "verify",
            "--json",
            "--input",
            str(path),
            "--public-key",
            str(tmp_path / "bad.pem"),
        ],
    )
    assert result.exit_code == 3 and json.loads(result.output)["code"] == "audit.key_unavailable"
    result = runner.invoke(cli, ["audit", "verify", "--public-key", str(tmp_path / "bad.pem")])
    assert result.exit_code == 2


def test_proof_from_export(
    tmp_path: Path, runner: CliRunner, keys: tuple[SigningKey, Path]
) -> None:
    key, pub = keys
    log = _log()
    path = _write(tmp_path / "a.jsonl", log, _checkpoints(key, log, (40,)))
    result = runner.invoke(
        cli,
        ["audit", "proof", "--json", "--input", str(path), "--seq", "7", "--public-key", str(pub)],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["tree_size"] == 40 and body["signature_checked"] and len(body["proof"]) == 6
    assert body["leaf_hash"] == leaf_hash(log[7].leaf_bytes()).hex()
    result = runner.invoke(
        cli, ["audit", "proof", "--input", str(path), "--seq", "7", "--tree-size", "13"]
    )
    assert result.exit_code == 0 and "verified" in result.output and "proof[0]" in result.output
    result = runner.invoke(cli, ["audit", "proof", "--input", str(path), "--seq", "70"])
    assert result.exit_code == 3


# -- store-backed (the SQLite store is written by another module) ----------------------

needs_sqlite = pytest.mark.skipif(
    importlib.util.find_spec("aegis.audit.sqlite_store") is None,
    reason="aegis.audit.sqlite_store not written yet",
)


def _sqlite(path: Path, records: list[AuditRecord], cps: list[Any]) -> Path:
    from aegis.audit.sqlite_store import SqliteAuditStore

    async def fill() -> None:
        store = SqliteAuditStore(path)
        await store.append(records)
        for cp in cps:
            await store.append_checkpoint(cp.to_dict())
        await store.close()

    asyncio.run(fill())
    return path


@needs_sqlite
def test_store_verify_export_proof(
    tmp_path: Path, runner: CliRunner, keys: tuple[SigningKey, Path]
) -> None:
    key, pub = keys
    log = _log()
    db = _sqlite(tmp_path / "audit.db", log, _checkpoints(key, log, (30, 60)))
    result = runner.invoke(cli, ["audit", "verify", "--sqlite", str(db), "--public-key", str(pub)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "acme.jsonl"
    result = runner.invoke(
        cli, ["audit", "export", "--sqlite", str(db), "--tenant", "acme", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli, ["audit", "verify", "--json", "--input", str(out), "--public-key", str(pub)]
    )
    assert json.loads(result.output)["records_proven"] == 30
    full = tmp_path / "all.jsonl"
    assert (
        runner.invoke(cli, ["audit", "export", "--sqlite", str(db), "-o", str(full)]).exit_code == 0
    )
    result = runner.invoke(cli, ["audit", "verify", "--input", str(full), "--public-key", str(pub)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli, ["audit", "proof", "--sqlite", str(db), "--seq", "59", "--public-key", str(pub)]
    )
    assert result.exit_code == 0, result.output


@needs_sqlite
def test_store_tampered(tmp_path: Path, runner: CliRunner, keys: tuple[SigningKey, Path]) -> None:
    key, pub = keys
    log = _log()
    db = _sqlite(tmp_path / "audit.db", log[:12] + log[13:], _checkpoints(key, log, (60,)))
    result = runner.invoke(
        cli, ["audit", "verify", "--json", "--sqlite", str(db), "--public-key", str(pub)]
    )
    assert result.exit_code in (1, 3), result.output  # the store may refuse the gap itself
    if result.exit_code == 1:
        assert json.loads(result.output)["first_bad_seq"] == 12


def test_missing_sqlite_file(
    tmp_path: Path, runner: CliRunner, keys: tuple[SigningKey, Path]
) -> None:
    _, pub = keys
    result = runner.invoke(
        cli, ["audit", "verify", "--sqlite", str(tmp_path / "none.db"), "--public-key", str(pub)]
    )
    assert result.exit_code == 3
