"""Delegation over the control plane, and bodies naming a tenant other than the path's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from control_harness import TENANT_A, TENANT_B, Plane, plane

from aegis.identity.registry import AgentRecord

A = f"/v1/control/tenants/{TENANT_A}"
B = f"/v1/control/tenants/{TENANT_B}"


def run(tmp_path: Path, scenario: Callable[[Plane], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with plane(tmp_path, **kw) as p:
            await scenario(p)

    asyncio.run(main())


def _code(response: Any) -> str:
    return str(response.json()["error"]["code"])


async def _a_state(p: Plane) -> tuple[Any, ...]:
    agents = [a.to_dict() for a in await p.registry.list(TENANT_A)]
    revs = sorted(r.id for r in p.kill_switch.active(TENANT_A))
    return agents, revs, len(p.records)


def test_exchange_mints_a_child_token_one_link_longer(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        await p.registry.register(AgentRecord(TENANT_A, "a-helper", "ops", scopes=("crm.read",)))
        await p.registry.set_may_spawn(TENANT_A, "a-planner", ["a-worker", "a-helper"])
        body = {"token": p.a_token, "child_agent_id": "a-helper", "scopes": ["crm.read"]}
        r = await p.call("POST", f"{A}/tokens/exchange", body)
        assert r.status_code == 201, r.text
        claims = p.verifier.verify(r.json()["token"])
        assert claims.sub == "a-helper"
        assert claims.tenant == TENANT_A
        assert claims.parent_chain == ("a-planner",)
        assert claims.scopes == ("crm.read",)
        assert claims.sid == "a-session"
        assert r.json()["claims"]["sub"] == "a-helper"
        kind, tenant, recorded = p.records[-1]
        assert (kind, tenant, recorded["action"]) == ("token", TENANT_A, "exchange")
        assert recorded["jti"] == claims.jti
        assert r.json()["token"] not in str(recorded)

    run(tmp_path, scenario)


def test_exchange_refusals_have_stable_codes_and_change_nothing(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        ex = f"{A}/tokens/exchange"
        before = await _a_state(p)
        cases: list[tuple[dict[str, Any], int, str, str]] = [
            ({"token": "garbage", "child_agent_id": "a-worker"}, 400, "control.invalid", "malformed"),
            ({"token": "x" * 1_000_000, "child_agent_id": "a-worker"}, 400, "control.invalid", ""),
            ({"token": p.a_token, "child_agent_id": "nobody"}, 404, "control.not_found", ""),
            ({"token": p.a_token, "child_agent_id": "a-planner"}, 403, "control.forbidden",
             "spawn_refused"),
            ({"token": p.a_token, "child_agent_id": "a-worker", "scopes": ["crm.write"]}, 400,
             "control.invalid", ""),
            ({"token": p.b_token, "child_agent_id": "a-worker"}, 403, "control.forbidden", ""),
            ({"child_agent_id": "a-worker"}, 400, "control.invalid", ""),
            ({"token": p.a_token, "child_agent_id": "a-worker", "tenant": TENANT_B}, 400,
             "control.invalid", "tenant"),
        ]  # fmt: skip
        for body, status, code, fragment in cases:
            r = await p.call("POST", ex, body)
            assert r.status_code == status, (body.get("child_agent_id"), r.text)
            assert _code(r) == code
            assert fragment in r.json()["error"]["message"]
        assert await _a_state(p) == before
        # the role gate: only platform_engineer mints
        body = {"token": p.a_token, "child_agent_id": "a-worker"}
        r = await p.call("POST", ex, body, role="soc_analyst")
        assert r.status_code == 403
        assert _code(r) == "control.forbidden"
        # a tenant the operator does not hold
        r = await p.call("POST", f"{B}/tokens/exchange", body)
        assert r.status_code == 403

    run(tmp_path, scenario)


def test_exchange_refuses_a_loop_and_an_over_deep_chain(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        ex = f"{A}/tokens/exchange"
        # a loop: a-worker may spawn a-planner, which is already in its chain
        await p.registry.set_may_spawn(TENANT_A, "a-worker", ["a-planner"])
        r = await p.call("POST", ex, {"token": p.a_token, "child_agent_id": "a-worker"})
        assert r.status_code == 201, r.text
        worker = r.json()["token"]
        r = await p.call("POST", ex, {"token": worker, "child_agent_id": "a-planner"})
        assert r.status_code == 403
        assert _code(r) == "control.forbidden"
        assert "spawn_refused" in r.json()["error"]["message"]
        # too deep: a chain of six distinct agents, each spawning the next
        names = [f"a-d{i}" for i in range(8)]
        for i, name in enumerate(names):
            spawn = frozenset({names[i + 1]}) if i + 1 < len(names) else frozenset()
            await p.registry.register(AgentRecord(TENANT_A, name, "ops", may_spawn=spawn))
        token, _ = p.minter.mint(names[0], TENANT_A, [], session_id="deep")
        refusal = None
        for child in names[1:]:
            r = await p.call("POST", ex, {"token": token, "child_agent_id": child})
            if r.status_code != 201:
                refusal = r
                break
            token = r.json()["token"]
        assert refusal is not None
        assert refusal.status_code == 400
        assert _code(refusal) == "control.invalid"
        assert "chain_too_deep" in refusal.json()["error"]["message"]

    run(tmp_path, scenario)


def test_exchange_refuses_a_revoked_parent(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        r = await p.call(
            "POST", f"{A}/revocations", {"kind": "agent", "target": "a-planner", "reason": "INC"}
        )
        assert r.status_code == 201, r.text
        r = await p.call(
            "POST", f"{A}/tokens/exchange", {"token": p.a_token, "child_agent_id": "a-worker"}
        )
        assert r.status_code == 409
        assert _code(r) == "control.conflict"

    run(tmp_path, scenario)


def test_a_forged_tenant_in_the_body_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        before = await _a_state(p)
        forged: list[tuple[str, dict[str, Any]]] = [
            (f"{A}/agents", {"agent_id": "a-new", "owner": "ops", "tenant": TENANT_B}),
            (f"{A}/revocations",
             {"kind": "agent", "target": "a-worker", "reason": "x", "tenant": TENANT_B}),
            (f"{A}/agents/a-planner/tokens", {"scopes": ["crm.read"], "tenant": TENANT_B}),
            (f"{A}/agents/a-planner/suspend", {"reason": "x", "tenant": ""}),
            (f"{A}/agents", {"agent_id": "a-new", "owner": "ops", "tenant": None}),
            (f"{A}/agents", {"agent_id": "a-new", "owner": "ops", "tenant": [TENANT_A]}),
        ]  # fmt: skip
        for path, body in forged:
            r = await p.call("POST", path, body)
            assert r.status_code == 400, (path, r.text)
            assert _code(r) == "control.invalid"
        assert await _a_state(p) == before
        # the same tenant as the path's is accepted
        body = {"agent_id": "a-new", "owner": "ops", "tenant": TENANT_A}
        r = await p.call("POST", f"{A}/agents", body)
        assert r.status_code == 201, r.text

    run(tmp_path, scenario)
