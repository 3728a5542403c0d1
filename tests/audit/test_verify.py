"""`verify_log` names the first bad record for every kind of tampering."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.audit.checkpoint import Checkpoint, SigningKey, keyring, sign_checkpoint
from aegis.audit.export import read_export, write_jsonl
from aegis.audit.merkle import leaf_hash, root_of
from aegis.audit.record import GENESIS_HASH, AuditRecord, RecordKind, canonical, make_record
from aegis.audit.verify import verify_log, verify_store
from aegis.errors import ErrorCode

N = 200
LOG_ID = "test-log"
KEY = SigningKey.generate()
KEYS = keyring(KEY.public)


def build_log(n: int = N) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    prev = GENESIS_HASH
    for seq in range(n):
        rec = make_record(
            seq=seq,
            kind=RecordKind.DECISION,
            time=f"2025-01-01T00:{seq // 60:02d}:{seq % 60:02d}.000000Z",
            tenant="acme" if seq % 3 else "globex",
            body={
                "agent_id": f"agent-{seq % 4}",
                "tool": "stripe.create_payment",
                "outcome": "allow" if seq % 5 else "deny",
                "params": {"amount": seq * 10, "note": "ü"},
                "trace_id": f"{seq:032x}",
            },
            prev_hash=prev,
        )
        records.append(rec)
        prev = rec.hash
    return records


def checkpoint_at(records: list[AuditRecord], size: int, key: SigningKey = KEY) -> Checkpoint:
    root = root_of([leaf_hash(r.leaf_bytes()) for r in records[:size]])
    return sign_checkpoint(
        key, log_id=LOG_ID, tree_size=size, root_hash=root, time="2025-01-01T01:00:00Z"
    )


LOG = build_log()
CPS = [checkpoint_at(LOG, s) for s in (50, 100, 150, 200)]


def dicts(records: list[AuditRecord]) -> list[dict[str, Any]]:
    return copy.deepcopy([r.to_dict() for r in records])


def rehash(rec: AuditRecord, **changes: Any) -> AuditRecord:
    """A forged record whose own hash is valid."""
    r = dataclasses.replace(rec, **changes)
    return make_record(
        seq=r.seq, kind=r.kind, time=r.time, tenant=r.tenant, body=r.body, prev_hash=r.prev_hash
    )


def test_valid_log() -> None:
    report = verify_log(LOG, CPS, KEYS)
    assert report.ok and report.code is None and report.first_bad_seq is None
    assert report.records_checked == N and report.checkpoints_checked == 4
    assert report.tree_size == N and report.root_hash == CPS[-1].root_hash
    assert verify_log(dicts(LOG), [c.to_dict() for c in CPS], KEYS).ok


def test_valid_without_checkpoints_and_empty() -> None:
    assert verify_log(LOG, [], KEYS).ok
    empty = verify_log([], [], KEYS)
    assert empty.ok and empty.tree_size == 0
    cp0 = sign_checkpoint(KEY, log_id=LOG_ID, tree_size=0, root_hash=root_of([]), time="t")
    assert verify_log([], [cp0], KEYS).ok


def test_modified_body_byte() -> None:
    data = dicts(LOG)
    data[77]["body"]["params"]["amount"] += 1
    report = verify_log(data, CPS, KEYS)
    assert (report.ok, report.code, report.first_bad_seq) == (
        False,
        ErrorCode.AUDIT_CHAIN_BROKEN,
        77,
    )
    assert "77" in report.message and "modified" in report.message


def test_modified_hash() -> None:
    data = dicts(LOG)
    data[120]["hash"] = "f" + data[120]["hash"][1:]
    report = verify_log(data, CPS, KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_CHAIN_BROKEN, 120)


def test_deleted_record() -> None:
    report = verify_log(LOG[:40] + LOG[41:], CPS, KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_CHAIN_BROKEN, 40)


def test_inserted_forged_record() -> None:
    forged = rehash(LOG[60], body={"agent_id": "agent-0", "tool": "evil"})
    assert forged.hash != LOG[60].hash
    report = verify_log([*LOG[:60], forged, *LOG[60:]], CPS, KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_CHAIN_BROKEN, 60)


def test_inserted_and_renumbered() -> None:
    # The forger renumbers (and re-hashes) the record after the forged one.
    forged = rehash(LOG[60], body={"tool": "evil"})
    moved = rehash(LOG[60], seq=61)
    report = verify_log([*LOG[:60], forged, moved, *LOG[61:]], CPS, KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_CHAIN_BROKEN, 60)


def test_replaced_record_rehashed() -> None:
    forged = rehash(LOG[90], tenant="evil")
    report = verify_log([*LOG[:90], forged, *LOG[91:]], CPS, KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_CHAIN_BROKEN, 90)
    assert "replaced" in report.message


def test_swapped_records() -> None:
    swapped = list(LOG)
    swapped[10], swapped[11] = swapped[11], swapped[10]
    report = verify_log(swapped, CPS, KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_CHAIN_BROKEN, 10)


def test_truncated_tail() -> None:
    report = verify_log(LOG[:180], CPS, KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_CHAIN_BROKEN, 180)
    assert "truncated" in report.message and report.records_checked == 180
    # Truncated exactly at a checkpoint that is then dropped too: still caught by the last one.
    assert verify_log(LOG[:150], CPS, KEYS).first_bad_seq == 150


def test_bad_checkpoint_signature() -> None:
    bad = dataclasses.replace(CPS[1], tree_size=101)
    report = verify_log(LOG, [CPS[0], bad, *CPS[2:]], KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_BAD_CHECKPOINT, None)
    other = SigningKey.generate()
    report = verify_log(LOG, [checkpoint_at(LOG, 100, other)], KEYS)
    assert report.code is ErrorCode.AUDIT_BAD_CHECKPOINT and "unknown key" in report.message
    malformed = {**CPS[0].to_dict(), "tree_size": "50"}
    assert verify_log(LOG, [malformed], KEYS).code is ErrorCode.AUDIT_BAD_CHECKPOINT


def test_checkpoint_root_mismatch() -> None:
    # The whole log rewritten from record 120 on, chain and all, with the signing key
    # unavailable: the chain is intact but the checkpoint at 150 does not match.
    rewritten = list(LOG[:120])
    prev = rewritten[-1].hash
    for rec in LOG[120:]:
        body = {**rec.body, "outcome": "allow"} if rec.seq == 125 else rec.body
        new = rehash(rec, body=body, prev_hash=prev)
        rewritten.append(new)
        prev = new.hash
    report = verify_log(rewritten, CPS, KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_BAD_CHECKPOINT, 100)
    assert report.checkpoints_checked == 3  # 50, 100 good; 150 mismatch


def test_checkpoint_with_wrong_root_signed() -> None:
    cp = sign_checkpoint(
        KEY, log_id=LOG_ID, tree_size=30, root_hash=b"\x00" * 32, time="2025-01-01T00:00:00Z"
    )
    report = verify_log(LOG, [cp], KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_BAD_CHECKPOINT, 0)


def test_checkpoints_of_two_logs() -> None:
    other = dataclasses.replace(checkpoint_at(LOG, 20), log_id="x")
    other = sign_checkpoint(
        KEY, log_id="x", tree_size=20, root_hash=other.root_bytes(), time=other.time
    )
    assert verify_log(LOG, [CPS[0], other], KEYS).code is ErrorCode.AUDIT_BAD_CHECKPOINT


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"seq": "5"},
        {"kind": "nope"},
        {"tenant": 3},
        {"body": []},
        {"extra": 1},
        {"hash": None},
    ],
)
def test_invalid_record(change: dict[str, Any]) -> None:
    data = dicts(LOG)
    data[5] = {**data[5], **change}
    report = verify_log(data, CPS, KEYS)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_INVALID_RECORD, 5)
    data[5] = "not an object"  # type: ignore[call-overload]
    assert verify_log(data, CPS, KEYS).code is ErrorCode.AUDIT_INVALID_RECORD


def test_report_to_dict() -> None:
    report = verify_log(LOG[:10] + LOG[11:], [], KEYS)
    data = report.to_dict()
    assert data["code"] == "audit.chain_broken" and data["first_bad_seq"] == 10


# -- any single mutation of any field is detected --------------------------------------

SMALL = build_log(24)
SMALL_CPS = [checkpoint_at(SMALL, 8), checkpoint_at(SMALL, 24)]
FIELDS = ["v", "seq", "kind", "time", "tenant", "body", "prev_hash", "hash"]
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.text(max_size=70),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from([str(k) for k in RecordKind]),
    st.sampled_from([GENESIS_HASH, *(r.hash for r in SMALL)]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(SMALL) - 1), field=st.sampled_from(FIELDS), value=values)
def test_any_single_field_mutation_is_detected(index: int, field: str, value: Any) -> None:
    data = dicts(SMALL)
    if data[index][field] == value and type(data[index][field]) is type(value):
        return  # not a mutation
    data[index][field] = value
    report = verify_log(data, SMALL_CPS, KEYS)
    assert not report.ok
    assert report.first_bad_seq is not None and report.first_bad_seq <= index


@settings(max_examples=150, deadline=None)
@given(
    index=st.integers(0, len(SMALL) - 1),
    path=st.sampled_from(["agent_id", "tool", "outcome", "trace_id", "params"]),
    value=st.one_of(st.integers(), st.text(max_size=8), st.none(), st.floats()),
)
def test_any_body_mutation_is_detected(index: int, path: str, value: Any) -> None:
    data = dicts(SMALL)
    old = data[index]["body"].get(path)
    try:
        if canonical(old) == canonical(value):
            return  # the same JSON value (1 and 1.0): not a mutation
    except ValueError:
        pass
    data[index]["body"][path] = value
    report = verify_log(data, SMALL_CPS, KEYS)
    assert (report.ok, report.first_bad_seq) == (False, index), report.message


# -- filtered exports ---------------------------------------------------------------------


def _export(**filters: Any) -> Any:
    out = io.StringIO()
    write_jsonl(LOG, CPS, out, **filters)
    return out.getvalue()


def test_filtered_export_verifies_with_proofs(tmp_path: Any) -> None:
    path = tmp_path / "acme.jsonl"
    path.write_text(_export(tenant="acme", agent_id="agent-1"))
    contents = read_export(path)
    assert contents.filtered and contents.header and contents.header["tenant"] == "acme"
    assert all(
        r["tenant"] == "acme" and r["body"]["agent_id"] == "agent-1" for r in contents.records
    )
    assert len(contents.proofs) == len(contents.records) > 0
    report = verify_log(
        contents.records, contents.checkpoints, KEYS, complete=False, proofs=contents.proofs
    )
    assert report.ok and report.records_proven == len(contents.records), report.message
    # A record changed and re-hashed: its own hash is fine, its inclusion proof is not.
    seq = contents.records[2]["seq"]
    forged = rehash(LOG[seq], body={**LOG[seq].body, "outcome": "deny"}).to_dict()
    records = [forged if r["seq"] == seq else r for r in contents.records]
    report = verify_log(records, contents.checkpoints, KEYS, complete=False, proofs=contents.proofs)
    assert (report.code, report.first_bad_seq) == (ErrorCode.AUDIT_CHAIN_BROKEN, seq)
    # A record changed without re-hashing.
    records = copy.deepcopy(contents.records)
    records[3]["body"]["tool"] = "x"
    report = verify_log(records, contents.checkpoints, KEYS, complete=False, proofs=contents.proofs)
    assert report.first_bad_seq == contents.records[3]["seq"]
    # Reordered.
    records = [contents.records[1], contents.records[0], *contents.records[2:]]
    report = verify_log(records, contents.checkpoints, KEYS, complete=False, proofs=contents.proofs)
    assert report.code is ErrorCode.AUDIT_CHAIN_BROKEN


def test_time_filter(tmp_path: Any) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(_export(since="2025-01-01T00:01:00Z", until="2025-01-01T00:02:00+00:00"))
    contents = read_export(path)
    assert [r["seq"] for r in contents.records] == list(range(60, 120))


def test_unfiltered_export_round_trip(tmp_path: Any) -> None:
    path = tmp_path / "all.jsonl"
    path.write_text(_export())
    contents = read_export(path)
    assert not contents.filtered and len(contents.records) == N and not contents.proofs
    assert verify_log(contents.records, contents.checkpoints, KEYS).ok


# -- a store ------------------------------------------------------------------------------


class MemoryStore:
    def __init__(self, records: list[AuditRecord], checkpoints: list[Checkpoint]) -> None:
        self._records, self._cps = records, checkpoints

    async def records(self, start: int = 0, end: int | None = None) -> AsyncIterator[AuditRecord]:
        for rec in self._records[start:end]:
            yield rec

    async def checkpoints(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self._cps]


def test_verify_store() -> None:
    assert asyncio.run(verify_store(MemoryStore(LOG, CPS), KEYS)).ok  # type: ignore[arg-type]
    bad = asyncio.run(verify_store(MemoryStore(LOG[:99] + LOG[100:], CPS), KEYS))  # type: ignore[arg-type]
    assert (bad.code, bad.first_bad_seq) == (ErrorCode.AUDIT_CHAIN_BROKEN, 99)
