"""The control plane's policy endpoints: who may read and move which versions."""

from __future__ import annotations

import asyncio
from pathlib import Path

from control_harness import TENANT_A, TENANT_B, plane

P = "/v1/control"


def test_status_lists_the_shared_policy_and_held_tenants_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with plane(tmp_path) as p:
            mine = await p.call("GET", f"{P}/policy", role="auditor", tenants=(TENANT_A,))
            assert mine.status_code == 200
            assert [s["tenant"] for s in mine.json()["slots"]] == ["", TENANT_A]
            assert TENANT_B not in mine.text and "b1" not in mine.text
            everyone = await p.call("GET", f"{P}/policy", role="auditor", tenants=("*",))
            assert [s["tenant"] for s in everyone.json()["slots"]] == ["", TENANT_A, TENANT_B]
            one = await p.call("GET", f"{P}/tenants/{TENANT_A}/policy", role="soc_analyst")
            (slot,) = one.json()["slots"]
            assert slot["active"]["policy_version"] == "a1" and slot["candidate"] is None

    asyncio.run(scenario())


def test_promote_and_rollback_by_role_and_scope(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with plane(tmp_path) as p:
            b = f"{P}/tenants/{TENANT_B}/policy"
            body = {"stage": "canary", "percent": 20, "reason": "try b2 on a fifth"}
            for role in ("auditor", "soc_analyst"):  # may read, may not deploy
                refused = await p.call("POST", f"{b}/promote", body, role=role, tenants=("*",))
                assert refused.status_code == 403
                assert refused.json()["error"]["code"] == "control.forbidden"
            ok = await p.call("POST", f"{b}/promote", body, role="policy_owner", tenants=("*",))
            assert ok.status_code == 200, ok.text
            assert ok.json()["candidate"]["stage"] == "canary"
            assert ok.json()["candidate"]["percent"] == 20
            enforce = {"stage": "enforce", "reason": "clean"}
            done = await p.call(
                "POST", f"{b}/promote", enforce, role="platform_engineer", tenants=(TENANT_B,)
            )
            assert done.json()["active"]["policy_version"] == "b2"
            back = await p.call(
                "POST", f"{b}/rollback", {"reason": "oops"}, role="policy_owner", tenants=("*",)
            )
            assert back.json()["active"]["policy_version"] == "b1" and back.json()["pinned"]
            # the shared policy decides every tenant's calls: it needs an operator of all
            shared = await p.call(
                "POST", f"{P}/policy/rollback", {"reason": "x"}, role="policy_owner"
            )
            assert shared.status_code == 403
            # each change is an audit record naming the actor, the request and the reason
            kinds = [(k, t, b["action"], b["reason"]) for k, t, b in p.records if k == "rollout"]
            assert kinds == [
                ("rollout", TENANT_B, "promote", "try b2 on a fifth"),
                ("rollout", TENANT_B, "promote", "clean"),
                ("rollout", TENANT_B, "rollback", "oops"),
            ]
            actor = p.records[-1][2]["actor"]
            assert actor == {"name": "policy_owner@*", "role": "policy_owner"}

    asyncio.run(scenario())


def test_bad_requests_have_stable_codes_and_change_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with plane(tmp_path) as p:
            b = f"{P}/tenants/{TENANT_B}/policy"
            before = await p.b_state()
            cases = [
                (f"{b}/promote", {"stage": "canary", "reason": "r"}, 409, "rollout.invalid"),
                (f"{b}/promote", {"stage": "canary", "percent": "ten", "reason": "r"}, 400,
                 "control.invalid"),
                (f"{b}/promote", {"stage": "live", "reason": "r"}, 409, "rollout.invalid"),
                (f"{b}/promote", {"stage": "enforce"}, 400, "control.invalid"),  # no reason
                (f"{b}/promote", {"stage": "enforce", "version": "zzz", "reason": "r"}, 404,
                 "rollout.unknown_version"),
                (f"{b}/promote", {"stage": "enforce", "reason": "r", "tenant": TENANT_A}, 400,
                 "control.invalid"),  # a body naming another tenant
                (f"{b}/rollback", {"reason": "r"}, 409, "rollout.invalid"),  # none earlier
                (f"{P}/tenants/tenant-c/policy/rollback", {"reason": "r"}, 404,
                 "rollout.unknown_tenant"),
            ]  # fmt: skip
            for path, body, status, code in cases:
                r = await p.call("POST", path, body, role="policy_owner", tenants=("*",))
                assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
            assert await p.b_state() == before
            assert not [r for r in p.records if r[0] == "rollout"]

    asyncio.run(scenario())
