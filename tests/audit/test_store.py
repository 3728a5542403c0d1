"""The shared AuditStore + AuditLog suite, on every backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from test_store_backends import StoreFactory, stores_fixture  # noqa: F401 - the fixture

from aegis.audit.log import AuditLog
from aegis.audit.record import GENESIS_HASH, AuditRecord, RecordKind, check_link


def fixed_clock() -> datetime:
    return datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


async def all_records(store: Any) -> list[AuditRecord]:
    return [r async for r in store.records()]


def chain_ok(records: list[AuditRecord]) -> None:
    prev = GENESIS_HASH
    for i, record in enumerate(records):
        assert check_link(record, prev, i) is None
        prev = record.hash


def test_append_read_head_and_checkpoints(stores: StoreFactory) -> None:
    async def scenario() -> None:
        store = stores.open()
        assert await store.head() == (0, GENESIS_HASH)
        log = await AuditLog(store, log_id="t", clock=fixed_clock).open()
        seqs = [
            await log.append(RecordKind.DECISION, "acme", {"n": i, "agent_id": "a"})
            for i in range(5)
        ]
        assert seqs == [0, 1, 2, 3, 4]
        records = await all_records(store)
        chain_ok(records)
        assert [r.body["n"] for r in records] == list(range(5))
        assert await store.head() == (5, records[-1].hash)
        assert [r.seq async for r in store.records(1, 3)] == [1, 2]
        await store.append_checkpoint({"tree_size": 5, "sig": "x"})
        await store.append_checkpoint({"tree_size": 6, "sig": "y"})
        assert [c["tree_size"] for c in await store.checkpoints()] == [5, 6]
        await log.close()

    asyncio.run(scenario())


def test_reopen_resumes_the_chain(stores: StoreFactory) -> None:
    async def scenario() -> None:
        log = await AuditLog(stores.open(), log_id="t").open()
        for i in range(3):
            await log.append(RecordKind.DECISION, "acme", {"n": i})
        log.append_nowait(RecordKind.DECISION, "acme", {"n": 3})
        await log.close()  # flushes the queued one
        log = await AuditLog(stores.open(), log_id="t").open()
        assert log.head[0] == 4
        await log.append(RecordKind.APPROVAL, None, {"n": 4})
        records = await all_records(log.store)
        chain_ok(records)
        assert [r.body["n"] for r in records] == [0, 1, 2, 3, 4]
        await log.close()

    asyncio.run(scenario())


def test_concurrent_durable_appends_share_commits(stores: StoreFactory) -> None:
    async def scenario() -> None:
        store = stores.open()
        log = await AuditLog(store, log_id="t").open()
        n = 400
        seqs = await asyncio.gather(
            *(log.append(RecordKind.DECISION, "acme", {"n": i}) for i in range(n))
        )
        assert sorted(s for s in seqs if s is not None) == list(range(n))
        assert store.commits < n / 4, f"{store.commits} commits for {n} appends"
        assert log.stats.largest_batch > 1
        chain_ok(await all_records(store))
        await log.close()

    asyncio.run(scenario())


def test_unicode_and_floats_round_trip(stores: StoreFactory) -> None:
    async def scenario() -> None:
        store = stores.open()
        log = await AuditLog(store, log_id="t").open()
        body = {"é": 'ünï\u2028\x01"\\', "f": 1.5, "big": 2**40, "emoji": "😀", "l": [None, True]}
        await log.append(RecordKind.DECISION, "t€nant", body)
        (record,) = await all_records(store)
        assert record.body == body
        chain_ok([record])
        await log.close()

    asyncio.run(scenario())
