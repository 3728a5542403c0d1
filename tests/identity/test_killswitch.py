"""The kill switch suite, on every store (memory, Redis): targets, cascade, suspend and
resume, tenant isolation, the mass-revocation guard, the trail, replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from test_killswitch_backends import SwitchFactory, switches_fixture  # noqa: F401 - the fixture
from test_registry_backends import Clock

from aegis.core.call import ToolCall
from aegis.errors import ErrorCode
from aegis.identity.killswitch import (
    ActionKind,
    ConfirmationRequiredError,
    KillSwitch,
    KillSwitchAction,
    KillSwitchError,
    KillSwitchStoreError,
    MemoryRevocationStore,
    Mode,
    RevocationFinalError,
    RevocationKind,
    UnknownRevocationError,
)
from aegis.identity.killswitch_metrics import KillSwitchMetrics
from aegis.identity.registry import AgentRecord, AgentStatus
from aegis.identity.registry_sqlite import SqliteAgentRegistry
from aegis.pipeline.stages import KillSwitchStage, StoreUnavailableError

WHO = {"actor": "soc:alice", "reason": "INC-42 exfiltration"}


def run(switches: SwitchFactory, scenario: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await scenario()
        finally:
            await switches.close_all()

    asyncio.run(main())


def call(agent: str = "bot", tenant: str = "acme", **kw: Any) -> ToolCall:
    return ToolCall(tenant=tenant, agent_id=agent, tool=kw.pop("tool", "crm.read"), **kw)


async def refused(ks: KillSwitch, c: ToolCall, jti: str | None = None) -> bool:
    refusal = await ks.check(c, jti=jti)
    assert refusal is None or refusal.code in (
        ErrorCode.DECISION_REVOKED,
        ErrorCode.DECISION_SUSPENDED,
    )
    return refusal is not None


def test_is_the_pipelines_kill_switch_stage(switches: SwitchFactory) -> None:
    async def scenario() -> None:
        stage: KillSwitchStage = await switches.open()
        assert await stage.check(call()) is None

    run(switches, scenario)


def test_each_target_kind(switches: SwitchFactory) -> None:
    async def scenario() -> None:
        ks = await switches.open()
        assert not await refused(ks, call(), jti="t1")

        await ks.revoke("jti", tenant="acme", target="t1", **WHO)
        assert await refused(ks, call(), jti="t1")
        assert not await refused(ks, call(), jti="t2")
        assert not await refused(ks, call())

        await ks.revoke("session", tenant="acme", target="s1", **WHO)
        assert await refused(ks, call(session_id="s1"))
        assert not await refused(ks, call(session_id="s2"))

        await ks.revoke(RevocationKind.AGENT, tenant="acme", target="evil", **WHO)
        assert await refused(ks, call("evil"))
        assert not await refused(ks, call("good"))

        await ks.revoke("tool_scope", tenant="acme", target="payments.*", **WHO)
        await ks.revoke("tool_scope", tenant="acme", target="db.drop", **WHO)
        assert await refused(ks, call(tool="payments.refund"))
        assert await refused(ks, call(tool="db.drop"))
        assert not await refused(ks, call(tool="db.read"))

        await ks.revoke("tenant", tenant="acme", confirm=True, **WHO)
        assert await refused(ks, call(tool="db.read"))
        assert not await refused(ks, call(tenant="other"))

        await ks.revoke("global", tenant="", confirm=True, **WHO)
        assert await refused(ks, call(tenant="other"))
        refusal = await ks.check(call(tenant="other"))
        assert refusal is not None and "INC-42" in refusal.reason and "soc:alice" in refusal.reason

    run(switches, scenario)


def _planner_finance_payments(tmp_path: Path) -> SqliteAgentRegistry:
    return SqliteAgentRegistry(tmp_path / "reg.db")


async def _graph(reg: SqliteAgentRegistry) -> None:
    await reg.register(AgentRecord("acme", "planner", "ops", may_spawn=frozenset({"finance"})))
    await reg.register(AgentRecord("acme", "finance", "ops", may_spawn=frozenset({"payments"})))
    await reg.register(AgentRecord("acme", "payments", "ops"))


def test_cascade_planner_finance_payments(switches: SwitchFactory, tmp_path: Path) -> None:
    async def scenario() -> None:
        reg = _planner_finance_payments(tmp_path)
        await _graph(reg)
        ks = await switches.open(registry=reg)
        other = await switches.open()  # a replica without a registry: learns the cascade
        rev = await ks.revoke("agent", tenant="acme", target="finance", **WHO)
        assert rev.cascaded == ("payments",)
        await switches.settle(lambda: rev.id in {r.id for r in other.active()})
        for k in (ks, other):
            assert not await refused(k, call("planner"))
            assert await refused(k, call("finance", parent_chain=("planner",)))
            # Payments through its chain, and also without one (cascaded at revoke time).
            assert await refused(k, call("payments", parent_chain=("planner", "finance")))
            assert await refused(k, call("payments"))
            # An agent the registry does not know, delegated by finance: the chain catches it.
            assert await refused(k, call("ghost", parent_chain=("planner", "finance")))
            assert not await refused(k, call("ghost", parent_chain=("planner",)))
            refusal = await k.check(call("payments"))
            assert refusal is not None and "finance" in refusal.reason
        statuses = {r.agent_id: r.status for r in await reg.list("acme")}
        assert statuses == {
            "planner": AgentStatus.ACTIVE,
            "finance": AgentStatus.REVOKED,
            "payments": AgentStatus.REVOKED,
        }
        await reg.close()

    run(switches, scenario)


def test_without_cascade_only_the_agent(switches: SwitchFactory, tmp_path: Path) -> None:
    async def scenario() -> None:
        reg = _planner_finance_payments(tmp_path)
        await _graph(reg)
        ks = await switches.open(registry=reg)
        await ks.suspend("agent", tenant="acme", target="finance", cascade=False, **WHO)
        assert await refused(ks, call("finance"))
        assert not await refused(ks, call("payments", parent_chain=("planner", "finance")))
        assert (await reg.get("acme", "payments")).status is AgentStatus.ACTIVE
        assert (await reg.get("acme", "finance")).status is AgentStatus.SUSPENDED
        await reg.close()

    run(switches, scenario)


def test_suspend_resume_and_revocation_is_final(switches: SwitchFactory, tmp_path: Path) -> None:
    async def scenario() -> None:
        reg = _planner_finance_payments(tmp_path)
        await _graph(reg)
        ks = await switches.open(registry=reg)
        other = await switches.open()
        susp = await ks.suspend("agent", tenant="acme", target="finance", **WHO)
        assert susp.mode is Mode.SUSPENDED
        await switches.settle(lambda: bool(other.active()))
        assert await refused(other, call("payments"))
        action = await ks.resume(susp.id, actor="soc:bob", reason="false positive")
        assert action.action is ActionKind.RESUME and action.revocation == susp
        assert not await refused(ks, call("payments"))
        await switches.settle(lambda: not other.active())
        assert not await refused(other, call("finance"))
        assert (await reg.get("acme", "finance")).status is AgentStatus.ACTIVE
        assert (await reg.get("acme", "payments")).status is AgentStatus.ACTIVE

        rev = await ks.revoke("session", tenant="acme", target="s9", **WHO)
        with pytest.raises(RevocationFinalError):
            await ks.resume(rev.id, **WHO)
        assert await refused(ks, call(session_id="s9"))
        with pytest.raises(UnknownRevocationError):
            await ks.resume("no-such-id", **WHO)
        await reg.close()

    run(switches, scenario)


def test_suspension_until_lifts_itself(switches: SwitchFactory) -> None:
    async def scenario() -> None:
        clock = Clock()
        ks = await switches.open(clock=clock)
        await ks.suspend("agent", tenant="acme", target="bot", until=clock.now + 60, **WHO)
        assert await refused(ks, call())
        clock.now += 61
        assert not await refused(ks, call())
        with pytest.raises(KillSwitchError, match="future"):
            await ks.suspend("agent", tenant="acme", target="bot", until=clock.now - 1, **WHO)

    run(switches, scenario)


def test_tenant_isolation(switches: SwitchFactory) -> None:
    async def scenario() -> None:
        ks = await switches.open()
        await ks.revoke("agent", tenant="a", target="bot", **WHO)
        await ks.revoke("session", tenant="a", target="s1", **WHO)
        await ks.revoke("jti", tenant="a", target="j1", **WHO)
        await ks.revoke("tool_scope", tenant="a", target="pay.*", **WHO)
        await ks.revoke("tenant", tenant="a", confirm=True, **WHO)
        b = call("bot", tenant="b", session_id="s1", tool="pay.x", parent_chain=("bot",))
        assert not await refused(ks, b, jti="j1")
        assert await refused(ks, call("anyone", tenant="a"))
        assert await ks.actions("b") == []
        assert len(await ks.actions("a")) == 5
        assert ks.active("b") == ()

    run(switches, scenario)


def test_mass_revocation_needs_confirmation_and_reason(switches: SwitchFactory) -> None:
    async def scenario() -> None:
        ks = await switches.open()
        with pytest.raises(ConfirmationRequiredError, match="confirm=True"):
            await ks.revoke("tenant", tenant="acme", **WHO)
        with pytest.raises(ConfirmationRequiredError):
            await ks.suspend("global", tenant="", **WHO)
        with pytest.raises(ConfirmationRequiredError):
            await ks.revoke("tool_scope", tenant="acme", target="*", **WHO)
        with pytest.raises(KillSwitchError, match="reason"):
            await ks.revoke("tenant", tenant="acme", confirm=True, actor="soc:alice", reason=" ")
        with pytest.raises(KillSwitchError, match="actor"):
            await ks.revoke("global", tenant="", confirm=True, actor="", reason="why")
        with pytest.raises(KillSwitchError):
            await ks.revoke("global", tenant="acme", confirm=True, **WHO)  # global has no tenant
        with pytest.raises(KillSwitchError):
            await ks.revoke("agent", tenant="acme", target="", **WHO)
        with pytest.raises(KillSwitchError):
            await ks.revoke("agent", tenant="", target="bot", **WHO)
        with pytest.raises(ValueError, match="everything"):
            await ks.revoke("everything", tenant="acme", **WHO)
        assert ks.active() == ()
        assert await ks.actions("acme") == [] and await ks.actions("") == []
        assert not await refused(ks, call())

    run(switches, scenario)


def test_every_action_is_on_the_trail_and_the_hook(switches: SwitchFactory) -> None:
    async def scenario() -> None:
        clock = Clock()
        ks = await switches.open(clock=clock)
        heard: list[KillSwitchAction] = []
        ks.on_action(heard.append)
        ks.on_action(lambda _a: 1 / 0)  # a failing hook is logged, never fatal
        s = await ks.suspend("agent", tenant="acme", target="bot", actor="soc:alice", reason="r1")
        clock.now += 5
        await ks.resume(s.id, actor="soc:bob", reason="r2")
        await ks.revoke("tenant", tenant="acme", confirm=True, actor="soc:carol", reason="r3")
        trail = await ks.actions("acme")
        assert [(a.action, a.actor, a.reason, a.at, a.confirmed) for a in trail] == [
            (ActionKind.SUSPEND, "soc:alice", "r1", clock.now - 5, False),
            (ActionKind.RESUME, "soc:bob", "r2", clock.now, False),
            (ActionKind.REVOKE, "soc:carol", "r3", clock.now, True),
        ]
        assert (
            trail[0].revocation.target == "bot"
            and trail[2].revocation.kind is RevocationKind.TENANT
        )
        assert heard == trail
        assert KillSwitchAction.from_dict(trail[1].to_dict()) == trail[1]

    run(switches, scenario)


def test_replicas_and_cold_start(switches: SwitchFactory) -> None:
    async def scenario() -> None:
        reg = CollectorRegistry()
        metrics = KillSwitchMetrics(reg)
        one = await switches.open(observe=metrics.observe)
        two = await switches.open(observe=metrics.observe)
        rev = await one.revoke("agent", tenant="acme", target="bot", **WHO)
        assert await refused(one, call())  # at once where the command was taken
        await switches.settle(lambda: two.match(call()) is not None)
        later = await switches.open()  # a replica started afterwards loads the set
        assert [r.id for r in later.active()] == [rev.id]
        assert await refused(later, call())
        assert reg.get_sample_value("aegis_time_to_revoke_seconds_count", {"source": "local"}) == 1
        assert reg.get_sample_value("aegis_time_to_revoke_seconds_count", {"source": "remote"}) == 1

    run(switches, scenario)


class FlakyStore(MemoryRevocationStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def apply(self, action: KillSwitchAction) -> None:
        if self.down:
            raise ConnectionError("store down")
        await super().apply(action)


def test_store_down_revoke_in_force_locally_resume_refused() -> None:
    async def scenario() -> None:
        store = FlakyStore()
        ks = await KillSwitch(store).start()
        ok = await ks.suspend("agent", tenant="acme", target="a", **WHO)
        store.down = True
        with pytest.raises(KillSwitchStoreError):
            await ks.revoke("agent", tenant="acme", target="bot", **WHO)
        assert await ks.check(call()) is not None  # in force here anyway
        with pytest.raises(KillSwitchStoreError):
            await ks.resume(ok.id, **WHO)
        assert await ks.check(call("a")) is not None  # not lifted in one replica only
        store.down = False
        await ks.reload()  # writes the pending revocation, keeps it
        assert {r.target for r in await store.active()} == {"a", "bot"}
        assert await ks.check(call()) is not None

    asyncio.run(scenario())


def test_max_staleness_turns_a_lost_store_into_store_unavailable() -> None:
    async def scenario() -> None:
        store = MemoryRevocationStore()
        ks = await KillSwitch(store, max_staleness=0.5).start()
        assert await ks.check(call()) is None
        store.out_of_sync_since = 0.0  # monotonic zero: long ago
        with pytest.raises(StoreUnavailableError):
            await ks.check(call())
        relaxed = await KillSwitch(store).start()  # default: keep the last snapshot
        assert await relaxed.check(call()) is None

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["revoke", "suspend"])
def test_revoked_and_suspended_have_distinct_codes(mode: str) -> None:
    async def scenario() -> None:
        ks = KillSwitch(MemoryRevocationStore())
        await ks.start()
        act = ks.revoke if mode == "revoke" else ks.suspend
        await act(
            RevocationKind.AGENT, tenant="acme", target="bot", reason="INC-7", actor="soc:alice"
        )
        refusal = await ks.check(call())
        assert refusal is not None
        want = ErrorCode.DECISION_REVOKED if mode == "revoke" else ErrorCode.DECISION_SUSPENDED
        assert refusal.code is want
        await ks.close()

    asyncio.run(scenario())
