"""The control-plane API over a real server: roles, guards, records, the document."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from control_harness import ROLES, TENANT_A, TENANT_B, Plane, plane, secret_of

from aegis.control import OperatorStore, Permission, Role, allows, hash_secret
from aegis.control.openapi import control_openapi_document

A = f"/v1/control/tenants/{TENANT_A}"


def run(tmp_path: Path, scenario: Callable[[Plane], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with plane(tmp_path, **kw) as p:
            await scenario(p)

    asyncio.run(main())


# (method, path, body, roles allowed, success status)
ALL = frozenset(ROLES)
SOC = frozenset({"soc_analyst", "platform_engineer"})
PLATFORM = frozenset({"platform_engineer"})
MATRIX: list[tuple[str, str, Any, frozenset[str], int]] = [
    ("GET", "/v1/control/whoami", None, ALL, 200),
    ("GET", "/v1/control/openapi.json", None, ALL, 200),
    ("GET", f"{A}/agents", None, ALL, 200),
    ("GET", f"{A}/agents/a-planner", None, ALL, 200),
    ("POST", f"{A}/agents", {"agent_id": "a-new", "owner": "ops"}, PLATFORM, 201),
    ("PUT", f"{A}/agents/a-planner/may_spawn", {"may_spawn": []}, PLATFORM, 200),
    ("POST", f"{A}/agents/a-planner/suspend", {"reason": "INC-1"}, SOC, 200),
    ("POST", f"{A}/agents/a-planner/resume", {"reason": "INC-1"}, SOC, 404),
    ("POST", f"{A}/agents/a-planner/tokens", {"scopes": ["crm.read"]}, PLATFORM, 201),
    ("POST", f"{A}/revocations", {"kind": "jti", "target": "j1", "reason": "r"}, SOC, 201),
    (
        "POST",
        f"{A}/revocations",
        {"kind": "tenant", "target": "", "reason": "INC-2", "confirm": True},
        SOC,
        201,
    ),
    ("GET", f"{A}/revocations", None, ALL, 200),
    ("GET", f"{A}/actions", None, ALL, 200),
    ("POST", f"{A}/tokens/inspect", {"token": "not-a-token"}, SOC, 200),
    ("POST", "/v1/control/revocations", {"kind": "global", "reason": "r", "confirm": True},
     frozenset(), 201),
]  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "allowed", "ok"), MATRIX)
def test_role_matrix(
    tmp_path: Path, role: str, method: str, path: str, body: Any, allowed: frozenset[str], ok: int
) -> None:
    async def scenario(p: Plane) -> None:
        before = len(p.records)
        response = await p.call(method, path, body, role=role)
        if role in allowed:
            assert response.status_code == ok, response.text
        else:
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "control.forbidden"
            assert len(p.records) == before

    run(tmp_path, scenario)


def test_roles_grant_what_the_issue_says() -> None:
    assert not allows(Role.AUDITOR, Permission.SUSPEND)
    assert allows(Role.SOC_ANALYST, Permission.REVOKE_SCOPED)
    assert not allows(Role.SOC_ANALYST, Permission.MINT)
    assert allows(Role.PLATFORM_ENGINEER, Permission.MINT)
    assert allows(Role.POLICY_OWNER, Permission.READ)
    assert not allows(Role.POLICY_OWNER, Permission.REVOKE_SCOPED)


def test_operator_store_hashes_and_validates() -> None:
    store = OperatorStore(
        [{"name": "al", "role": "auditor", "tenants": ["t"], "token_sha256": hash_secret("x")}]
    )
    op = store.authenticate("x")
    assert op is not None and op.name == "al" and op.holds("t") and not op.holds("u")
    assert store.authenticate("y") is None and store.authenticate("") is None
    with pytest.raises(ValueError, match="role"):
        OperatorStore([{"name": "a", "role": "root", "tenants": ["t"], "token_sha256": "0" * 64}])
    with pytest.raises(ValueError, match="hex"):
        OperatorStore([{"name": "a", "role": "auditor", "tenants": ["t"], "token_sha256": "x"}])
    entry = {"name": "a", "role": "auditor", "tenants": ["t"], "token_sha256": "0" * 64}
    with pytest.raises(ValueError, match="twice"):
        OperatorStore([entry, {**entry, "token_sha256": "1" * 64}])


def test_authentication(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic x"}):
            response = await p.client.get("/v1/control/whoami", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "control.unauthenticated"
        who = await p.call("GET", "/v1/control/whoami", role="auditor")
        assert who.json() == {"name": f"auditor@{TENANT_A}", "role": "auditor",
                              "tenants": [TENANT_A]}  # fmt: skip
        assert (await p.call("GET", "/v1/control/nowhere")).status_code == 404
        assert (await p.call("DELETE", f"{A}/agents")).status_code == 405

    run(tmp_path, scenario)


def test_agents_lifecycle_and_records(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        body = {"agent_id": "a-new", "owner": "ops", "scopes": ["crm.*"], "labels": ["x"]}
        created = await p.call("POST", f"{A}/agents", body)
        assert created.status_code == 201 and created.json()["agent_id"] == "a-new"
        assert (await p.call("POST", f"{A}/agents", body)).status_code == 409
        assert (await p.call("POST", f"{A}/agents", {"owner": "x"})).status_code == 400
        assert (await p.call("GET", f"{A}/agents/missing")).status_code == 404
        names = [a["agent_id"] for a in (await p.call("GET", f"{A}/agents")).json()["agents"]]
        assert names == ["a-new", "a-planner", "a-worker"]

        suspended = await p.call("POST", f"{A}/agents/a-planner/suspend", {"reason": "INC-7"})
        rev = suspended.json()["revocation"]
        assert rev["mode"] == "suspended" and rev["cascaded"] == ["a-worker"]
        assert rev["actor"] == f"platform_engineer:platform_engineer@{TENANT_A}"
        agent = (await p.call("GET", f"{A}/agents/a-planner")).json()
        assert agent["status"] == "suspended"
        minted = await p.call("POST", f"{A}/agents/a-planner/tokens", {"scopes": ["crm.read"]})
        assert minted.status_code == 409
        resumed = await p.call("POST", f"{A}/agents/a-planner/resume", {"reason": "fixed"})
        assert resumed.status_code == 200 and len(resumed.json()["resumed"]) == 1
        actions = (await p.call("GET", f"{A}/actions", role="auditor")).json()["actions"]
        assert [a["action"] for a in actions] == ["suspend", "resume"]
        assert all(a["actor"] and a["reason"] and a["at"] for a in actions)

        kinds = [(k, t, b["action"]) for k, t, b in p.records]
        assert kinds == [
            ("agent", TENANT_A, "register"),
            ("revocation", TENANT_A, "suspend"),
            ("revocation", TENANT_A, "resume"),
        ]
        assert all(b["actor"]["role"] == "platform_engineer" for _, _, b in p.records)

    run(tmp_path, scenario)


def test_mint_records_only_the_jti_and_inspect(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        minted = await p.call(
            "POST", f"{A}/agents/a-planner/tokens",
            {"scopes": ["crm.read"], "session_id": "s1", "lifetime_seconds": 60},
        )  # fmt: skip
        assert minted.status_code == 201, minted.text
        token, claims = minted.json()["token"], minted.json()["claims"]
        assert claims["sub"] == "a-planner" and claims["exp"] - claims["iat"] == 60
        kind, tenant, body = p.records[-1]
        assert (kind, tenant, body["jti"]) == ("token", TENANT_A, claims["jti"])
        assert token not in repr(p.records)
        bad = await p.call("POST", f"{A}/agents/a-planner/tokens", {"scopes": ["admin"]})
        assert bad.status_code == 400

        seen = await p.call("POST", f"{A}/tokens/inspect", {"token": token}, role="soc_analyst")
        assert seen.json() == {"valid": True, "claims": claims}
        other = await p.call("POST", f"{A}/tokens/inspect", {"token": p.b_token})
        assert other.json() == {"valid": False, "reason": "other tenant"}
        junk = (await p.call("POST", f"{A}/tokens/inspect", {"token": "x.y.z"})).json()
        assert junk["valid"] is False and "claims" not in junk

    run(tmp_path, scenario)


def test_no_minter_is_a_clear_404(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        response = await p.call("POST", f"{A}/agents/a-planner/tokens", {"scopes": []})
        assert response.status_code == 404
        assert "not configured" in response.json()["error"]["message"]

    run(tmp_path, scenario, with_minter=False)


def test_confirmation_guards(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        for body in (
            {"kind": "tenant", "reason": "INC"},
            {"kind": "tenant", "confirm": True},
            {"kind": "tenant", "confirm": True, "reason": " "},
            {"kind": "tool_scope", "target": "*", "reason": "INC"},
        ):
            response = await p.call("POST", f"{A}/revocations", body, role="soc_analyst")
            assert response.status_code == 428, body
            assert response.json()["error"]["code"] == "control.confirmation_required"
        missing_reason = await p.call("POST", f"{A}/revocations", {"kind": "jti", "target": "j"})
        assert missing_reason.status_code == 400
        assert p.kill_switch.active(TENANT_A) == ()

        scoped = await p.call(
            "POST", f"{A}/revocations", {"kind": "session", "target": "s", "reason": "INC"}
        )
        assert scoped.status_code == 201
        listed = (await p.call("GET", f"{A}/revocations", role="auditor")).json()["revocations"]
        assert [r["target"] for r in listed] == ["s"]

        glob = {"kind": "global", "reason": "INC-9", "confirm": True}
        for role in ROLES:
            response = await p.call("POST", "/v1/control/revocations", glob, role=role)
            assert response.status_code == 403
        unconfirmed = {"kind": "global", "reason": "INC-9"}
        response = await p.call(
            "POST", "/v1/control/revocations", unconfirmed, role="soc_analyst", tenants=("*",)
        )
        assert response.status_code == 428
        auditor_star = await p.call(
            "POST", "/v1/control/revocations", glob, role="auditor", tenants=("*",)
        )
        assert auditor_star.status_code == 403
        response = await p.call(
            "POST", "/v1/control/revocations", glob, role="soc_analyst", tenants=("*",)
        )
        assert response.status_code == 201
        assert response.json()["revocation"]["kind"] == "global"
        assert p.records[-1][0] == "revocation" and p.records[-1][1] is None

    run(tmp_path, scenario)


def test_global_operator_reaches_every_tenant(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        response = await p.call("GET", f"/v1/control/tenants/{TENANT_B}/agents",
                                role="auditor", tenants=("*",))  # fmt: skip
        assert [a["agent_id"] for a in response.json()["agents"]] == ["b-planner", "b-worker"]

    run(tmp_path, scenario)


def test_openapi_document_names_every_endpoint(tmp_path: Path) -> None:
    doc = control_openapi_document()
    assert doc["openapi"] == "3.1.0"
    for method, path, *_ in MATRIX:
        templated = path.replace(TENANT_A, "{tenant}").replace("a-planner", "{agent_id}")
        assert method.lower() in doc["paths"][templated], path

    async def scenario(p: Plane) -> None:
        served = await p.call("GET", "/v1/control/openapi.json", role="auditor")
        assert served.json() == doc

    run(tmp_path, scenario)


def test_secret_is_never_echoed(tmp_path: Path) -> None:
    async def scenario(p: Plane) -> None:
        secret = secret_of("auditor", (TENANT_A,))
        response = await p.call("GET", "/v1/control/whoami", role="auditor")
        assert secret not in response.text

    run(tmp_path, scenario)
