"""AuditLog: fast canonical form, store failures, overflow, corrupt files, checkpoints."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.audit.log import AuditLog, canonical_bytes
from aegis.audit.record import AuditRecord, RecordKind, canonical
from aegis.audit.sqlite_store import SqliteAuditStore
from aegis.audit.store import AuditStoreError
from aegis.pipeline.stages import AuditUnavailableError
from aegis.telemetry.metrics import GatewayMetrics

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fast_canonical_equals_rfc8785(value: Any) -> None:
    try:
        expected = canonical(value)
    except Exception:  # rfc8785 refuses it (lone surrogates): the fast path must too
        with pytest.raises(Exception):  # noqa: B017, PT011
            canonical_bytes(value)
        return
    assert canonical_bytes(value) == expected


class FlakyStore:
    """A store double over SQLite whose appends fail while ``broken`` is set."""

    def __init__(self, inner: SqliteAuditStore) -> None:
        self.inner = inner
        self.broken = False
        self.commits = 0

    async def append(self, records: Sequence[AuditRecord]) -> None:
        if self.broken:
            raise AuditStoreError("disk full (simulated)")
        await self.inner.append(records)

    async def append_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        await self.inner.append_checkpoint(checkpoint)

    async def head(self) -> tuple[int, str]:
        return await self.inner.head()

    def records(self, start: int = 0, end: int | None = None) -> AsyncIterator[AuditRecord]:
        return self.inner.records(start, end)

    async def checkpoints(self) -> list[dict[str, Any]]:
        return await self.inner.checkpoints()

    async def close(self) -> None:
        await self.inner.close()


def failures(metrics: GatewayMetrics) -> float:
    return metrics.registry.get_sample_value("aegis_audit_failures_total") or 0.0


def test_a_failing_store_fails_durable_appends_and_keeps_earlier_records(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = FlakyStore(SqliteAuditStore(tmp_path / "a.db"))
        metrics = GatewayMetrics()
        log = await AuditLog(store, log_id="t", metrics=metrics, retry_max_seconds=0.02).open()
        for i in range(3):
            await log.append(RecordKind.DECISION, "acme", {"n": i})
        before = [r async for r in store.records()]
        store.broken = True
        with pytest.raises(AuditUnavailableError):
            await log.append(RecordKind.DECISION, "acme", {"n": 99})
        assert failures(metrics) >= 1
        log.append_nowait(RecordKind.DECISION, "acme", {"n": "queued"})  # kept for retry
        await asyncio.sleep(0.05)
        assert [r async for r in store.records()] == before  # nothing rewritten
        store.broken = False
        assert await log.append(RecordKind.DECISION, "acme", {"n": 3}) is not None
        after = [r async for r in store.records()]
        assert after[:3] == before
        assert [r.body["n"] for r in after[3:]] == ["queued", 3]
        await log.close()

    asyncio.run(scenario())


def test_overflow_drops_counts_and_never_blocks(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = GatewayMetrics()
        log = await AuditLog(
            SqliteAuditStore(tmp_path / "a.db"), log_id="t", max_queue=5, metrics=metrics
        ).open()
        accepted = [log.append_nowait(RecordKind.DECISION, "acme", {"n": i}) for i in range(8)]
        assert accepted == [True] * 5 + [False] * 3
        assert metrics.registry.get_sample_value("aegis_audit_overflow_total") == 3
        await log.close()
        assert log.stats.records == 5

    asyncio.run(scenario())


def test_a_corrupt_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    path.write_bytes(b"this is not a database" * 100)
    original = path.read_bytes()
    with pytest.raises(AuditStoreError, match="refusing"):
        SqliteAuditStore(path)
    assert path.read_bytes() == original


def test_a_damaged_sqlite_database_is_refused(tmp_path: Path) -> None:
    async def fill() -> None:
        log = await AuditLog(SqliteAuditStore(tmp_path / "audit.db"), log_id="t").open()
        await asyncio.gather(*(log.append(RecordKind.DECISION, "a", {"n": i}) for i in range(500)))
        await log.close()

    asyncio.run(fill())
    path = tmp_path / "audit.db"
    data = bytearray(path.read_bytes())
    data[4096 + 100 : 4096 + 400] = b"\xff" * 300  # scribble over a b-tree page
    path.write_bytes(bytes(data))
    original = path.read_bytes()
    with pytest.raises(AuditStoreError):
        SqliteAuditStore(path)
    assert path.read_bytes() == original


@pytest.mark.skipif(
    importlib.util.find_spec("aegis.audit.checkpoint") is None,
    reason="aegis.audit.checkpoint (the verifying half) has not landed yet",
)
def test_checkpoints_are_signed_and_stored(tmp_path: Path) -> None:
    from aegis.audit.checkpoint import SigningKey

    async def scenario() -> None:
        store = SqliteAuditStore(tmp_path / "a.db")
        log = await AuditLog(
            store, log_id="t", signing_key=SigningKey.generate(), checkpoint_every_records=10
        ).open()
        await asyncio.gather(*(log.append(RecordKind.DECISION, "a", {"n": i}) for i in range(25)))
        await log.close()
        cps = await SqliteAuditStore(tmp_path / "a.db").checkpoints()
        assert cps and cps[-1]["tree_size"] == 25

    asyncio.run(scenario())


@settings(max_examples=300)
@given(
    body=st.dictionaries(
        st.text(max_size=6),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**60), 2**60)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=4), inner, max_size=3)
            ),
            max_leaves=12,
        ),
        max_size=5,
    ),
    tenant=st.none() | st.text(max_size=6),
)
def test_sealed_bytes_are_the_canonical_form_of_the_record(body: dict, tenant: str | None) -> None:  # type: ignore[type-arg]
    from aegis.audit.record import RecordKind, make_record, record_hash

    try:
        record = make_record(
            seq=7,
            kind=RecordKind.DECISION,
            time="2026-11-21T10:00:00.000000Z",
            tenant=tenant,
            body=body,
            prev_hash="ab" * 32,
        )
    except (UnicodeEncodeError, ValueError, TypeError):
        return  # lone surrogates: refused, never written wrongly
    assert record.raw == rfc8785.dumps(record.to_dict())
    assert record.hash == record_hash(record.unsigned())


@settings(max_examples=1000)
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**60), 2**60)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=16,
    )
)
def test_canonical_fast_path_equals_the_reference(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017, PT011
            canonical(value)
        return
    assert canonical(value) == expected


@settings(max_examples=300)
@given(
    params=st.dictionaries(
        st.text(max_size=6),
        st.none()
        | st.booleans()
        | st.integers(-(2**60), 2**60)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=10),
        max_size=5,
    ),
    reason=st.text(max_size=30),
    destination=st.none() | st.text(max_size=20),
    cost=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_decision_bodies_carry_their_exact_canonical_bytes(
    params: dict[str, Any], reason: str, destination: str | None, cost: float | None
) -> None:
    from aegis.audit.record import CanonicalBody
    from aegis.audit.sink import _encode_decision_body

    rest = {
        "decision_id": "d",
        "outcome": "allow",
        "code": "decision.allowed",
        "reason": reason,
        "rule_ids": ["r1"],
        "policy_version": "v",
        "bundle_hash": "sha256:x",
        "approval_id": None,
        "tenant": "t",
        "agent_id": "a",
        "parent_chain": ["p"],
        "session_id": None,
        "tool": "x",
        "kind": "write",
        "door": "api",
        "redactions": [{"path": "a", "detector": "email"}],
        "destination": destination,
        "cost_estimate": None if cost is None else repr(cost),
        "error": None,
        "error_detail": None,
        "trace_id": None,
        "span_id": None,
        "latency_us": 12,
    }
    try:
        expected = rfc8785.dumps({**rest, "params": params})
    except Exception:
        return
    body = _encode_decision_body(rest, params)
    assert canonical(body) == expected
    assert dict(body) == {**rest, "params": params}
    if type(body) is CanonicalBody:
        assert body.encoded == expected
