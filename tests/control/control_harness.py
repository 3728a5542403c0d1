"""A control plane over a real HttpServer on 127.0.0.1:0, for the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aegis.bundles.manager import ManagerConfig, PolicyManager
from aegis.bundles.sources import DirectorySource
from aegis.bundles.tenancy import SHARED
from aegis.control import OperatorStore, hash_secret
from aegis.control.api import build_control_routes
from aegis.http.router import Router
from aegis.http.server import HttpServer
from aegis.identity.keys import SigningKeys
from aegis.identity.killswitch import KillSwitch, MemoryRevocationStore
from aegis.identity.registry import AgentRecord
from aegis.identity.registry_sqlite import SqliteAgentRegistry
from aegis.identity.tokens import TokenMinter
from aegis.identity.verifier import TokenVerifier

ISS, AUD = "https://aegis.test", "aegis-gateway"
TENANT_A, TENANT_B = "tenant-a", "tenant-b"
ROLES = ("soc_analyst", "policy_owner", "platform_engineer", "auditor")


def secret_of(role: str, tenants: tuple[str, ...]) -> str:
    return f"s3cret-{role}-{'+'.join(tenants)}"


def operator_entries() -> list[dict[str, Any]]:
    entries = []
    for role in ROLES:
        for tenants in ((TENANT_A,), (TENANT_B,), ("*",)):
            entries.append(
                {
                    "name": f"{role}@{'+'.join(tenants)}",
                    "role": role,
                    "tenants": list(tenants),
                    "token_sha256": hash_secret(secret_of(role, tenants)),
                }
            )
    return entries


@dataclass
class Plane:
    client: httpx.AsyncClient
    registry: SqliteAgentRegistry
    kill_switch: KillSwitch
    minter: TokenMinter
    verifier: TokenVerifier
    records: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    b_token: str = ""
    b_jti: str = ""
    a_token: str = ""
    policies: PolicyManager | None = None

    async def call(
        self, method: str, path: str, body: Any = None, *, role: str = "platform_engineer",
        tenants: tuple[str, ...] = (TENANT_A,), secret: str | None = None,
    ) -> httpx.Response:  # fmt: skip
        token = secret if secret is not None else secret_of(role, tenants)
        return await self.client.request(
            method, path, json=body, headers={"authorization": f"Bearer {token}"}
        )

    async def b_state(self) -> tuple[Any, ...]:
        agents = [a.to_dict() for a in await self.registry.list(TENANT_B)]
        revs = sorted(r.id for r in self.kill_switch.active(TENANT_B))
        actions = len(await self.kill_switch.actions(TENANT_B))
        recorded = [r for r in self.records if r[1] == TENANT_B]
        policy = None
        if self.policies is not None:
            (slot,) = self.policies.status([TENANT_B])
            policy = (slot["active"], slot["candidate"], slot["pinned"], len(slot["versions"]))
        return agents, revs, actions, len(recorded), policy


POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {{name: {name}, version: {version}}}
rules:
  - {{id: r-{version}, match: {{tools: [crm.lookup]}}, effect: allow, reason: ok}}
"""


async def policy_manager(tmp_path: Path) -> PolicyManager:
    """Shared, tenant A and tenant B slots; B has a candidate in shadow and two versions."""
    sources: list[tuple[str, DirectorySource]] = []
    folders = {}
    for tenant, name in ((SHARED, "shared"), (TENANT_A, "a"), (TENANT_B, "b")):
        folder = tmp_path / f"policy-{name}"
        folder.mkdir()
        (folder / "policy.yaml").write_text(POLICY.format(name=name, version=f"{name}1"))
        roots = [f"tenants/{tenant}"] if tenant else None
        sources.append((tenant, DirectorySource(folder, roots=roots)))
        folders[tenant] = folder
    manager = PolicyManager(sources, lambda _policies: None, config=ManagerConfig(staged=True))
    await manager.start(poll=False)
    (folders[TENANT_B] / "policy.yaml").write_text(POLICY.format(name="b", version="b2"))
    await manager.poll(manager.slots[TENANT_B])
    return manager


@asynccontextmanager
async def plane(tmp_path: Path, *, with_minter: bool = True) -> AsyncIterator[Plane]:
    registry = SqliteAgentRegistry(tmp_path / "registry.db")
    kill_switch = await KillSwitch(MemoryRevocationStore(), registry=registry).start()
    keys = SigningKeys.generate()
    minter = TokenMinter(keys, issuer=ISS, audience=AUD)
    verifier = TokenVerifier(keys.verification_keys(), issuer=ISS, audience=AUD)
    records: list[tuple[str, str | None, dict[str, Any]]] = []

    async def record(kind: str, tenant: str | None, body: dict[str, Any]) -> None:
        records.append((kind, tenant, body))

    routes = build_control_routes(
        operators=OperatorStore(operator_entries()),
        registry=registry,
        kill_switch=kill_switch,
        minter=minter if with_minter else None,
        verifier=verifier,
        record=record,
        policies=(policies := await policy_manager(tmp_path)),
    )
    for tenant, prefix in ((TENANT_A, "a"), (TENANT_B, "b")):
        await registry.register(
            AgentRecord(tenant, f"{prefix}-planner", "ops", scopes=("crm.read",),
                        may_spawn=frozenset({f"{prefix}-worker"}))
        )  # fmt: skip
        await registry.register(AgentRecord(tenant, f"{prefix}-worker", "ops"))
    b_token, b_claims = minter.mint("b-planner", TENANT_B, ["crm.read"], session_id="b-session")
    a_token, _ = minter.mint("a-planner", TENANT_A, ["crm.read"], session_id="a-session")
    await kill_switch.revoke(
        "jti", tenant=TENANT_B, target="b-revoked-jti", actor="setup", reason="b-setup"
    )
    server = HttpServer(Router(routes))
    port = await server.start("127.0.0.1", 0)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}")
    try:
        yield Plane(client, registry, kill_switch, minter, verifier, records, b_token,
                    b_claims.jti, a_token, policies)  # fmt: skip
    finally:
        await client.aclose()
        await server.stop(0.1)
        await registry.close()
