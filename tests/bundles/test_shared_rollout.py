"""Several replicas, one rollout state: PostgreSQL for real (tests/services.py).

Two PolicyManagers stand for two gateway replicas polling the same source. An
operator's change on one reaches the other at its next sync; a replica that never
saw a version gets it from the shared archives and verifies it with its own keys;
a replica started later (no local state) serves what the fleet serves; a change
that loses a race changes nothing and says so.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from aegis.bundles import BundleError, PublicKey, keyring, sign_bundle
from aegis.bundles.manager import ManagerConfig, PolicyManager, RolloutError
from aegis.bundles.shared import PostgresRolloutStore, SharedSlot, SharedStateError
from aegis.bundles.sources import DirectorySource, FileSource
from aegis.bundles.tenancy import SHARED
from aegis.errors import ErrorCode
from aegis.identity.keys import SigningKey
from bundles.test_manager import Harness, decide, policy_text, write_policy
from services import PG_DSN, require_postgres


@pytest.fixture
def prefix() -> Iterator[str]:
    require_postgres()
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}_state, {name}_archives")


def replica(source: Any, prefix: str, harness: Harness, **config: Any) -> PolicyManager:
    return PolicyManager(
        [(SHARED, source)],
        harness.install,
        config=ManagerConfig(**{"staged": True, **config}),
        shared=PostgresRolloutStore(PG_DSN, table_prefix=prefix),
    )


def test_a_rollback_on_one_replica_reaches_the_other(tmp_path: Path, prefix: str) -> None:
    folder = tmp_path / "policy"
    write_policy(folder, policy_text(1))
    ha, hb = Harness(), Harness()
    a = replica(DirectorySource(folder), prefix, ha)
    b = replica(DirectorySource(folder), prefix, hb)

    async def run() -> None:
        await a.start(poll=False)
        await b.start(poll=False)
        write_policy(folder, policy_text(2, lookup="deny"))
        await a.poll(a.slots[SHARED])  # A sees v2 first: a shadow candidate
        assert await b.sync_shared()  # B follows without polling the source
        d = decide(hb.current, "crm.lookup")
        assert (d.policy_version, d.shadow.policy_version) == ("v1", "v2")  # type: ignore[union-attr]
        await a.promote(SHARED, "enforce")
        await b.sync_shared()
        assert decide(hb.current, "crm.lookup").policy_version == "v2"
        await b.rollback(SHARED)  # the operator's rollback lands on B
        assert await a.sync_shared()
        assert decide(ha.current, "crm.lookup").policy_version == "v1"
        assert a.status()[0]["pinned"] and b.status()[0]["pinned"]
        # B meets v2 at its source only now: rolled back from, it stays out
        await b.poll(b.slots[SHARED])
        assert b.status()[0]["candidate"] is None
        assert decide(hb.current, "crm.lookup").policy_version == "v1"
        assert not await a.sync_shared()  # nothing new
        await a.close()
        await b.close()

    asyncio.run(run())


def test_a_new_replica_gets_unseen_versions_from_the_shared_archives(
    tmp_path: Path, prefix: str
) -> None:
    key = SigningKey.generate()
    keys = keyring([PublicKey.of(key)])
    src, path = tmp_path / "src", tmp_path / "bundle.tar.gz"

    def publish(n: int) -> None:
        write_policy(src, policy_text(n))
        from aegis.bundles import build_bundle

        path.write_bytes(sign_bundle(build_bundle([src], use_git=False), key))

    publish(1)
    ha = Harness()
    a = replica(FileSource(path), prefix, ha, keys=keys, require_signature=True, staged=False)

    async def run() -> None:
        await a.start(poll=False)
        publish(2)
        await a.poll(a.slots[SHARED])
        await a.rollback(SHARED)  # the fleet serves v1, pinned, v2 kept
        # C starts later, and its source is down: it serves what the fleet serves
        path.unlink()
        hc = Harness()
        c = replica(FileSource(path), prefix, hc, keys=keys, require_signature=True, staged=False)
        await c.start(poll=False)
        assert decide(hc.current, "crm.lookup").policy_version == "v1"
        assert c.status()[0]["pinned"]
        # A promotes v2 again: C has never seen v2 and loads it from the shared store
        await a.promote(SHARED, "enforce", version="v2")
        assert await c.sync_shared()
        assert decide(hc.current, "crm.lookup").policy_version == "v2"
        await a.close()
        await c.close()

    asyncio.run(run())


def test_a_replica_without_the_signing_key_refuses_shared_versions(
    tmp_path: Path, prefix: str
) -> None:
    """The shared store is not a way around signatures: archives from it are
    verified like any bundle."""
    key = SigningKey.generate()
    folder = tmp_path / "policy"
    write_policy(folder, policy_text(1))
    ha, hb = Harness(), Harness()
    a = replica(DirectorySource(folder), prefix, ha)
    path = tmp_path / "signed.tar.gz"
    from aegis.bundles import build_bundle

    path.write_bytes(sign_bundle(build_bundle([folder], use_git=False), key))
    b = replica(FileSource(path), prefix, hb, keys=keyring([PublicKey.of(SigningKey.generate())]))

    async def run() -> None:
        await a.start(poll=False)
        write_policy(folder, policy_text(2))
        await a.poll(a.slots[SHARED])
        await a.promote(SHARED, "enforce")
        with pytest.raises(BundleError):  # B trusts no version it was offered
            await b.start(poll=False)
        assert b.slots[SHARED].last_error is not None
        assert b.slots[SHARED].last_error["code"].startswith("bundle.")
        await a.close()
        await b.close()

    asyncio.run(run())


def test_a_change_that_loses_a_race_changes_nothing(tmp_path: Path, prefix: str) -> None:
    folder = tmp_path / "policy"
    write_policy(folder, policy_text(1))
    ha = Harness()
    a = replica(DirectorySource(folder), prefix, ha)
    store = PostgresRolloutStore(PG_DSN, table_prefix=prefix)

    async def run() -> None:
        await a.start(poll=False)
        write_policy(folder, policy_text(2))
        await a.poll(a.slots[SHARED])
        before = a.status()[0]
        # another replica writes between A's read and A's write
        revision, _ = await store.read()
        original_read = a.shared.read  # type: ignore[union-attr]

        async def read_then_lose() -> tuple[int, dict[str, SharedSlot]]:
            result = await original_read()
            await store.write(revision, {"other": SharedSlot(active=None)}, {})
            return result

        a.shared.read = read_then_lose  # type: ignore[union-attr, method-assign]
        with pytest.raises(RolloutError) as info:
            await a.promote(SHARED, "enforce")
        assert info.value.code is ErrorCode.ROLLOUT_INVALID
        assert "another gateway" in info.value.message
        after = a.status()[0]
        assert (after["active"], after["candidate"]) == (before["active"], before["candidate"])
        a.shared.read = original_read  # type: ignore[union-attr, method-assign]
        await a.promote(SHARED, "enforce")  # the retry goes through
        assert decide(ha.current, "crm.lookup").policy_version == "v2"
        await a.close()
        await store.close()

    asyncio.run(run())


def test_an_unreachable_shared_store_keeps_the_replica_serving(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    write_policy(folder, policy_text(1))
    harness = Harness()
    dead = "host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=1"
    m = PolicyManager(
        [(SHARED, DirectorySource(folder))],
        harness.install,
        config=ManagerConfig(staged=True),
        shared=PostgresRolloutStore(dead),
    )

    async def run() -> None:
        await m.start(poll=False)  # serves its own state
        assert decide(harness.current, "crm.lookup").policy_version == "v1"
        assert m.status()[0]["shared"]["error"]
        write_policy(folder, policy_text(2))
        await m.poll(m.slots[SHARED])
        with pytest.raises(RolloutError) as info:  # an operator is told, not ignored
            await m.promote(SHARED, "enforce")
        assert "cannot be written" in info.value.message
        assert decide(harness.current, "crm.lookup").policy_version == "v1"
        with pytest.raises(SharedStateError):
            await PostgresRolloutStore(dead).read()

    asyncio.run(run())
