"""The shared AgentRegistry suite, on every backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from test_registry_backends import RegistryFactory, registries_fixture  # noqa: F401 - the fixture

from aegis.identity.registry import (
    AgentExistsError,
    AgentNotFoundError,
    AgentRecord,
    AgentStatus,
    InvalidAgentError,
)


def run(factory: RegistryFactory, scenario: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        registry = factory.open()
        try:
            await scenario(registry)
        finally:
            await registry.close()

    asyncio.run(main())


def agent(agent_id: str, tenant: str = "acme", **kw: Any) -> AgentRecord:
    return AgentRecord(tenant=tenant, agent_id=agent_id, owner=kw.pop("owner", "alice"), **kw)


def test_register_get_list(registries: RegistryFactory) -> None:
    async def scenario(reg: Any) -> None:
        stored = await reg.register(
            agent("planner", labels=frozenset({"orchestrator"}), scopes=("search.*", "crm.read"),
                  may_spawn=frozenset({"finance"}))
        )  # fmt: skip
        assert stored.created_at == stored.updated_at == registries.clock.now
        await reg.register(agent("finance"))
        got = await reg.get("acme", "planner")
        assert got == stored
        assert got.labels == {"orchestrator"} and got.scopes == ("search.*", "crm.read")
        assert got.status is AgentStatus.ACTIVE
        assert [r.agent_id for r in await reg.list("acme")] == ["finance", "planner"]
        assert await reg.get("acme", "nobody") is None
        with pytest.raises(AgentExistsError):
            await reg.register(agent("planner", owner="mallory"))
        assert (await reg.get("acme", "planner")).owner == "alice"

    run(registries, scenario)


def test_scopes_are_tool_globs() -> None:
    record = agent("a", scopes=("stripe.*", "crm.read", "*.list"))
    assert record.allows_tool("stripe.refund")
    assert record.allows_tool("crm.read")
    assert record.allows_tool("files.list")
    assert not record.allows_tool("crm.write")
    assert not agent("b").allows_tool("anything")


@pytest.mark.parametrize(
    "bad",
    [
        agent("", owner="x"),
        agent("a", owner=""),
        agent("a", tenant=""),
        agent("a", scopes=("",)),
        agent("a", labels=frozenset({"bad\nlabel"})),
        agent("a", may_spawn=frozenset({"a"})),
        agent("x" * 257),
    ],
    ids=[
        "empty-id",
        "empty-owner",
        "empty-tenant",
        "empty-scope",
        "control-char",
        "self-spawn",
        "too-long",
    ],
)
def test_invalid_records_are_refused(registries: RegistryFactory, bad: AgentRecord) -> None:
    async def scenario(reg: Any) -> None:
        with pytest.raises(InvalidAgentError):
            await reg.register(bad)
        assert await reg.list(bad.tenant or "acme") == ()

    run(registries, scenario)


def test_tenant_isolation(registries: RegistryFactory) -> None:
    async def scenario(reg: Any) -> None:
        await reg.register(agent("bot", tenant="a", owner="alice", may_spawn=frozenset({"x"})))
        await reg.register(agent("bot", tenant="b", owner="bob"))  # same id, other tenant
        await reg.register(agent("x", tenant="b", may_spawn=frozenset({"y"})))
        assert (await reg.get("a", "bot")).owner == "alice"
        assert (await reg.get("b", "bot")).owner == "bob"
        assert await reg.get("a", "x") is None
        assert [r.agent_id for r in await reg.list("a")] == ["bot"]
        assert [r.agent_id for r in await reg.list("b")] == ["bot", "x"]
        await reg.set_status("a", "bot", AgentStatus.SUSPENDED)
        assert (await reg.get("b", "bot")).status is AgentStatus.ACTIVE
        with pytest.raises(AgentNotFoundError):
            await reg.set_status("a", "x", AgentStatus.REVOKED)
        # tenant a's bot may spawn "x"; b's "x" spawns "y", which a must not reach.
        assert await reg.descendants("a", "bot") == {"x"}

    run(registries, scenario)


def test_status_transitions_and_revoked_is_final(registries: RegistryFactory) -> None:
    async def scenario(reg: Any) -> None:
        await reg.register(agent("bot"))
        registries.clock.now += 10
        suspended = await reg.set_status("acme", "bot", AgentStatus.SUSPENDED)
        assert suspended.status is AgentStatus.SUSPENDED
        assert suspended.updated_at == suspended.created_at + 10
        assert (
            await reg.set_status("acme", "bot", AgentStatus.ACTIVE)
        ).status is AgentStatus.ACTIVE
        await reg.set_status("acme", "bot", AgentStatus.REVOKED)
        for status in (AgentStatus.ACTIVE, AgentStatus.SUSPENDED):
            with pytest.raises(InvalidAgentError):
                await reg.set_status("acme", "bot", status)
        assert (await reg.get("acme", "bot")).status is AgentStatus.REVOKED
        with pytest.raises(AgentNotFoundError):
            await reg.set_status("acme", "ghost", AgentStatus.SUSPENDED)

    run(registries, scenario)


def test_descendants_follow_the_spawn_graph(registries: RegistryFactory) -> None:
    async def scenario(reg: Any) -> None:
        await reg.register(agent("planner", may_spawn=frozenset({"finance", "search"})))
        await reg.register(agent("finance", may_spawn=frozenset({"payments"})))
        await reg.register(
            agent("payments", may_spawn=frozenset({"ledger"}))
        )  # ledger unregistered
        await reg.register(agent("search"))
        assert await reg.descendants("acme", "planner") == {
            "finance",
            "search",
            "payments",
            "ledger",
        }
        assert await reg.descendants("acme", "finance") == {"payments", "ledger"}
        assert await reg.descendants("acme", "search") == frozenset()
        assert await reg.descendants("acme", "unknown") == frozenset()
        # A cycle terminates and never lists the start.
        updated = await reg.set_may_spawn("acme", "payments", ["finance", "ledger"])
        assert updated.may_spawn == {"finance", "ledger"}
        assert await reg.descendants("acme", "finance") == {"payments", "ledger"}
        with pytest.raises(InvalidAgentError):
            await reg.set_may_spawn("acme", "search", ["search"])
        with pytest.raises(AgentNotFoundError):
            await reg.set_may_spawn("acme", "ghost", [])

    run(registries, scenario)


def test_records_survive_reopening(registries: RegistryFactory) -> None:
    async def first(reg: Any) -> None:
        await reg.register(agent("bot", scopes=("a.*",), may_spawn=frozenset({"kid"})))
        await reg.set_status("acme", "bot", AgentStatus.SUSPENDED)

    async def second(reg: Any) -> None:
        got = await reg.get("acme", "bot")
        assert got is not None and got.status is AgentStatus.SUSPENDED
        assert got.scopes == ("a.*",) and got.may_spawn == {"kid"}

    run(registries, first)
    run(registries, second)


def test_record_dict_round_trip() -> None:
    record = agent("a", labels=frozenset({"x"}), scopes=("t.*",), may_spawn=frozenset({"b"}),
                   status=AgentStatus.SUSPENDED, created_at=1.0, updated_at=2.0)  # fmt: skip
    assert AgentRecord.from_dict(record.to_dict()) == record
