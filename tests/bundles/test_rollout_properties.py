"""Rollout as a state machine, walked at random by hypothesis, on real PostgreSQL.

Two replicas poll one source and share their rollout state. Publishing, polling,
promoting, rolling back, syncing and restarting happen in any order; after every
step the invariants a SOC relies on must hold:

- what a replica *decides with* is what its state *says* it serves (the installed
  snapshot's active and candidate are the recorded ones, compiled);
- every version served was published (nothing else can appear);
- a promote or rollback that was answered took effect on the replica that answered
  it, and the rolled-back version is not served there until promoted again;
- once both replicas have synced, they serve the same thing.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aegis.bundles.manager import ManagerConfig, PolicyManager, RolloutError
from aegis.bundles.shared import PostgresRolloutStore
from aegis.bundles.sources import DirectorySource
from aegis.bundles.tenancy import SHARED
from bundles.test_manager import Harness, decide, policy_text, write_policy
from services import PG_DSN, require_postgres


class RolloutMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        require_postgres()
        self.loop = asyncio.new_event_loop()
        self.prefix = f"p_{uuid.uuid4().hex[:12]}"
        self.root = Path(tempfile.mkdtemp(prefix="aegis-rollout-"))
        self.folder = self.root / "policy"
        self.published = 1
        write_policy(self.folder, policy_text(1))
        self.known_versions = {"v1"}
        self.replicas: list[PolicyManager] = []
        self.harnesses: list[Harness] = []
        for _ in range(2):
            self._add_replica()

    def _add_replica(self, index: int | None = None) -> None:
        harness = Harness()
        manager = PolicyManager(
            [(SHARED, DirectorySource(self.folder))],
            harness.install,
            config=ManagerConfig(staged=True, keep_versions=4),
            shared=PostgresRolloutStore(PG_DSN, table_prefix=self.prefix),
        )
        self.run(manager.start(poll=False))
        if index is None:
            self.replicas.append(manager)
            self.harnesses.append(harness)
        else:
            self.replicas[index], self.harnesses[index] = manager, harness

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        for m in self.replicas:
            self.run(m.close())
        self.loop.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self.prefix}_state, {self.prefix}_archives")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- steps -----------------------------------------------------------------------------
    @precondition(lambda self: self.published < 6)
    @rule()
    def publish(self) -> None:
        self.published += 1
        write_policy(self.folder, policy_text(self.published, lookup="deny"))
        self.known_versions.add(f"v{self.published}")

    @rule(r=st.integers(0, 1))
    def poll(self, r: int) -> None:
        self.run(self.replicas[r].poll(self.replicas[r].slots[SHARED]))

    @rule(r=st.integers(0, 1))
    def sync(self, r: int) -> None:
        self.run(self.replicas[r].sync_shared())

    @rule(r=st.integers(0, 1), stage=st.sampled_from(["shadow", "canary", "enforce"]))
    def promote(self, r: int, stage: str) -> None:
        m = self.replicas[r]
        try:
            status = self.run(m.promote(SHARED, stage, percent=50 if stage == "canary" else None))
        except RolloutError:
            return  # nothing to promote, or the active one: refused, nothing changed
        if stage == "enforce":
            assert status["candidate"] is None and not status["pinned"]
        else:
            assert status["candidate"]["stage"] == stage

    @rule(r=st.integers(0, 1))
    def rollback(self, r: int) -> None:
        m = self.replicas[r]
        self.run(m.sync_shared())  # what the fleet serves is what is rolled back from
        before = m.status()[0]["active"]["id"]
        try:
            status = self.run(m.rollback(SHARED))
        except RolloutError:
            return
        assert status["pinned"] and status["candidate"] is None
        assert status["active"]["id"] != before
        # the version rolled back from does not return on this replica's next poll
        self.run(m.poll(m.slots[SHARED]))
        assert m.status()[0]["active"]["id"] != before

    @rule(r=st.integers(0, 1))
    def restart(self, r: int) -> None:
        self.run(self.replicas[r].close())
        self._add_replica(r)

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def decides_with_what_it_says(self) -> None:
        for m, h in zip(self.replicas, self.harnesses, strict=True):
            slot = m.slots[SHARED]
            tenant_policy = h.current.shared
            assert slot.active is not None
            assert tenant_policy.active is slot.active.policy
            candidate = slot.candidate
            if candidate is None or slot.record.stage is None:
                assert tenant_policy.candidate is None
            else:
                assert tenant_policy.candidate is not None
                assert tenant_policy.candidate.policy is candidate.policy
            version = decide(h.current, "crm.lookup").policy_version
            assert version in self.known_versions
            assert version == slot.active.policy_version or slot.record.stage == "canary"

    @rule()
    def both_sync_then_agree(self) -> None:
        for m in self.replicas:
            self.run(m.sync_shared())
        views = [m._shared_view(m.slots[SHARED]) for m in self.replicas]
        assert views[0] == views[1]


TestRollout = RolloutMachine.TestCase
TestRollout.settings = settings(
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
