"""Issue 5 item 5: tenant A's credentials never read or change anything of tenant B.

Every control-plane endpoint is walked with an operator of tenant A (any role)
or with bad credentials, aimed at identifiers that exist in tenant B: every
answer is 403 (401 for bad credentials), B's agents, revocations, trail and
records are unchanged, and no identifier of B appears in any response.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from control_harness import ROLES, TENANT_A, TENANT_B, Plane, plane
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

B = f"/v1/control/tenants/{TENANT_B}"
B_AGENTS = ("b-planner", "b-worker", "b-absent")


def endpoints(p: Plane, agent: str) -> list[tuple[str, str, Any]]:
    a = f"{B}/agents/{agent}"
    return [
        ("GET", f"{B}/agents", None),
        ("POST", f"{B}/agents", {"agent_id": "b-planner", "owner": "ops"}),
        ("POST", f"{B}/agents", {"agent_id": "b-fresh", "owner": "ops"}),
        ("GET", a, None),
        ("POST", f"{a}/suspend", {"reason": "x"}),
        ("POST", f"{a}/resume", {"reason": "x"}),
        ("PUT", f"{a}/may_spawn", {"may_spawn": []}),
        ("POST", f"{a}/tokens", {"scopes": ["crm.read"]}),
        ("POST", f"{B}/revocations", {"kind": "agent", "target": agent, "reason": "x"}),
        ("POST", f"{B}/revocations", {"kind": "jti", "target": p.b_jti, "reason": "x"}),
        ("POST", f"{B}/revocations", {"kind": "tenant", "reason": "x", "confirm": True}),
        ("POST", f"{B}/revocations", "not an object"),
        ("GET", f"{B}/revocations", None),
        ("GET", f"{B}/actions", None),
        ("POST", f"{B}/tokens/inspect", {"token": p.b_token}),
        ("POST", "/v1/control/revocations", {"kind": "global", "reason": "x", "confirm": True}),
        ("HEAD", f"{B}/agents", None),
        ("GET", f"{B}/policy", None),
        ("POST", f"{B}/policy/promote", {"stage": "enforce", "reason": "x"}),
        ("POST", f"{B}/policy/rollback", {"reason": "x"}),
        ("POST", "/v1/control/policy/promote", {"stage": "enforce", "reason": "x"}),
        ("POST", "/v1/control/policy/rollback", {"reason": "x"}),
    ]


def b_identifiers(p: Plane) -> tuple[str, ...]:
    return (TENANT_B, "b-planner", "b-worker", "b-session", "b-revoked-jti", p.b_jti, p.b_token)


def test_cross_tenant_credentials_touch_nothing_of_b(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    context = plane(tmp_path)
    p = loop.run_until_complete(context.__aenter__())
    try:
        before = loop.run_until_complete(p.b_state())
        secrets_b = b_identifiers(p)

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(
            role=st.sampled_from(ROLES),
            bad_credentials=st.booleans(),
            agent=st.sampled_from(B_AGENTS),
            index=st.integers(min_value=0, max_value=21),
        )
        def walk(role: str, bad_credentials: bool, agent: str, index: int) -> None:
            method, path, body = endpoints(p, agent)[index]
            secret = "wrong-secret" if bad_credentials else None
            response = loop.run_until_complete(
                p.call(method, path, body, role=role, tenants=(TENANT_A,), secret=secret)
            )
            expected = 401 if bad_credentials else 403
            assert response.status_code == expected, (method, path, response.text)
            for ident in secrets_b:
                assert ident not in response.text, (method, path, ident)
            assert loop.run_until_complete(p.b_state()) == before

        walk()
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()


def test_every_endpoint_gives_the_same_403(tmp_path: Path) -> None:
    """Whether the tenant or agent exists or not, the refusal reads the same."""

    async def scenario() -> None:
        async with plane(tmp_path) as p:
            for role in ROLES:
                bodies = set()
                for tenant in (TENANT_B, "tenant-nonexistent"):
                    for agent in ("b-planner", "nobody"):
                        path = f"/v1/control/tenants/{tenant}/agents/{agent}"
                        response = await p.call("GET", path, role=role)
                        assert response.status_code == 403
                        bodies.add(response.content)
                assert len(bodies) == 1

    asyncio.run(scenario())


def test_inspect_in_own_tenant_never_reveals_b_claims(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with plane(tmp_path) as p:
            path = f"/v1/control/tenants/{TENANT_A}/tokens/inspect"
            response = await p.call("POST", path, {"token": p.b_token}, role="soc_analyst")
            assert response.json() == {"valid": False, "reason": "other tenant"}
            for ident in b_identifiers(p):
                assert ident not in response.text

    asyncio.run(scenario())
