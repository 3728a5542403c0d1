"""Serving bundles: reload, last good, signatures, tenants, rollout, rollback, restart."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aegis.bundles import (
    BundleError,
    BundleErrorCode,
    PublicKey,
    build_bundle,
    keyring,
    sign_bundle,
)
from aegis.bundles.history import VersionHistory
from aegis.bundles.manager import ManagerConfig, PolicyManager, RolloutError
from aegis.bundles.sources import DirectorySource, FileSource
from aegis.bundles.tenancy import SHARED
from aegis.bundles.versions import Version
from aegis.core.call import parse_call
from aegis.core.decision import Outcome
from aegis.errors import ErrorCode
from aegis.identity.keys import SigningKey
from aegis.policy.rollout import Policies

WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)

POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {{name: p{n}, version: v{n}{tenant_line}}}
tools:
  - {{name: crm.lookup, kind: read}}
  - {{name: payments.send, kind: write}}
rules:
  - id: lookup-{n}
    match: {{tools: [crm.lookup]}}
    effect: {lookup}
    reason: lookup in version {n}
  - id: pay-{n}
    match: {{tools: [payments.send]}}
    effect: {pay}
    reason: payments in version {n}
"""


def policy_text(
    n: int, *, lookup: str = "allow", pay: str = "deny", tenant: str | None = None
) -> str:
    tenant_line = f", tenant: {tenant}" if tenant else ""
    return POLICY.format(n=n, lookup=lookup, pay=pay, tenant_line=tenant_line)


def write_policy(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.yaml").write_text(text, encoding="utf-8")


def bundle_bytes(
    tmp: Path, text: str, *, roots: Sequence[str] | None = None, key: SigningKey | None = None
) -> bytes:
    src = tmp / f"src-{abs(hash(text))}"
    shutil.rmtree(src, ignore_errors=True)
    write_policy(src, text)
    data = build_bundle([src], built_at=WHEN, use_git=False, roots=roots)
    return sign_bundle(data, key) if key is not None else data


class Events:
    def __init__(self) -> None:
        self.reloads: list[tuple[str, str, str | None]] = []
        self.activations: list[tuple[str, str, str]] = []

    def reloaded(
        self, tenant: str, result: str, version: Version | None, error: BundleError | None
    ) -> None:
        self.reloads.append((tenant, result, str(error.code) if error else None))

    async def activated(self, tenant: str, version: Version, how: str, actor: str | None) -> None:
        self.activations.append((tenant, version.policy.version, how))


class Harness:
    def __init__(self) -> None:
        self.installed: list[Policies] = []

    def install(self, policies: Policies) -> None:
        self.installed.append(policies)

    @property
    def current(self) -> Policies:
        return self.installed[-1]


def decide(policies: Policies, tool: str, *, tenant: str = "acme", agent: str = "a1") -> Any:
    call = parse_call({"tenant": tenant, "agent_id": agent, "tool": tool, "params": {}})
    return policies.route(call.tenant).decide(call, NOW)[0]


def manager(
    sources: Sequence[tuple[str, Any]],
    harness: Harness,
    *,
    state: Path | None = None,
    events: Events | None = None,
    **config: Any,
) -> PolicyManager:
    return PolicyManager(
        sources,
        harness.install,
        config=ManagerConfig(**config),
        history=VersionHistory(state),
        events=events,
    )


# -- reload and last good ----------------------------------------------------------------


def test_a_changed_folder_is_activated_and_a_broken_one_keeps_the_last_good(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "policy"
    write_policy(folder, policy_text(1))
    harness, events = Harness(), Events()
    m = manager([(SHARED, DirectorySource(folder))], harness, events=events)

    async def run() -> None:
        await m.start(poll=False)
        assert decide(harness.current, "crm.lookup").policy_version == "v1"
        write_policy(folder, policy_text(2, lookup="deny"))
        assert await m.poll(m.slots[SHARED]) is None
        d = decide(harness.current, "crm.lookup")
        assert (d.outcome, d.policy_version, d.rule_ids) == (Outcome.DENY, "v2", ("lookup-2",))
        write_policy(folder, "apiVersion: aegis.dev/v1\nkind: Policy\nrules: [oops\n")
        error = await m.poll(m.slots[SHARED])
        assert error is not None and error.code is ErrorCode.BUNDLE_POLICY_INVALID
        assert decide(harness.current, "crm.lookup").policy_version == "v2"  # last good
        # the same broken bytes again: reported once, not reloaded on every poll
        assert await m.poll(m.slots[SHARED]) is None
        assert decide(harness.current, "crm.lookup").policy_version == "v2"
        write_policy(folder, policy_text(2, lookup="deny"))  # back to v2's bytes
        assert await m.poll(m.slots[SHARED]) is None

    asyncio.run(run())
    status = m.status()[0]
    assert status["active"]["policy_version"] == "v2"
    assert status["reloads"]["activated"] == 2  # v1 at start, v2
    assert status["last_load_seconds"] is not None and status["last_load_seconds"] > 0
    assert status["reloads"]["failed"] == 1
    assert status["last_error"]["code"] == "bundle.policy_invalid"
    assert [r[1] for r in events.reloads] == [
        "activated", "activated", "failed", "unchanged", "unchanged"
    ]  # fmt: skip
    assert [a[1] for a in events.activations] == ["v1", "v2"]


def test_the_shared_policy_must_load_at_start(tmp_path: Path) -> None:
    m = manager([(SHARED, FileSource(tmp_path / "missing.tar.gz"))], Harness())
    with pytest.raises(BundleError) as info:
        asyncio.run(m.start(poll=False))
    assert info.value.code is ErrorCode.BUNDLE_SOURCE_UNAVAILABLE


@pytest.mark.parametrize("case", ["unsigned", "tampered", "wrong_key", "wrong_scope"])
def test_a_gateway_requiring_signatures_refuses_bad_bundles_and_keeps_serving(
    tmp_path: Path, case: str
) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    good = bundle_bytes(tmp_path, policy_text(1), key=key)
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(good)
    harness = Harness()
    m = manager(
        [(SHARED, FileSource(path))],
        harness,
        keys=keyring([PublicKey.of(key)]),
        require_signature=True,
        scope="prod",
    )
    resigned = sign_bundle(good, key, scope="prod")
    path.write_bytes(resigned)
    text2 = policy_text(2, lookup="deny")
    bad = {
        "unsigned": bundle_bytes(tmp_path, text2),
        "tampered": _tamper(resigned),
        "wrong_key": sign_bundle(bundle_bytes(tmp_path, text2), other, scope="prod"),
        "wrong_scope": sign_bundle(bundle_bytes(tmp_path, text2), key, scope="staging"),
    }[case]
    expected = {
        "unsigned": ErrorCode.BUNDLE_UNSIGNED,
        "tampered": None,  # any bundle.* code: which byte class broke decides it
        "wrong_key": ErrorCode.BUNDLE_UNKNOWN_KEY,
        "wrong_scope": ErrorCode.BUNDLE_WRONG_SCOPE,
    }[case]

    async def run() -> None:
        await m.start(poll=False)
        assert decide(harness.current, "crm.lookup").policy_version == "v1"
        path.write_bytes(bad)
        error = await m.poll(m.slots[SHARED])
        assert error is not None and str(error.code).startswith("bundle.")
        if expected is not None:
            assert error.code is expected
        d = decide(harness.current, "crm.lookup")
        assert (d.outcome, d.policy_version) == (Outcome.ALLOW, "v1")

    asyncio.run(run())
    assert m.status()[0]["reloads"]["failed"] == 1


def _tamper(data: bytes) -> bytes:
    from aegis.bundles import read_archive, write_archive

    files = read_archive(data)
    files["policy.yaml"] = files["policy.yaml"].replace(b"effect: allow", b"effect: deny")
    return write_archive(files)


# -- tenants -------------------------------------------------------------------------------


def test_each_tenant_has_its_own_version_and_a_broken_one_touches_no_other(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    write_policy(shared, policy_text(0))
    acme, globex = tmp_path / "acme.tar.gz", tmp_path / "globex.tar.gz"
    acme.write_bytes(bundle_bytes(tmp_path, policy_text(1), roots=["tenants/acme"]))
    globex.write_bytes(
        bundle_bytes(tmp_path, policy_text(2, lookup="deny"), roots=["tenants/globex"])
    )
    harness = Harness()
    m = manager(
        [
            (SHARED, DirectorySource(shared)),
            ("acme", FileSource(acme)),
            ("globex", FileSource(globex)),
        ],
        harness,
    )

    async def run() -> None:
        await m.start(poll=False)
        p = harness.current
        assert decide(p, "crm.lookup", tenant="acme").policy_version == "v1"
        assert decide(p, "crm.lookup", tenant="globex").policy_version == "v2"
        assert decide(p, "crm.lookup", tenant="initech").policy_version == "v0"  # shared
        # acme publishes a broken bundle, then one that claims globex's root
        acme.write_bytes(b"\x1f\x8b not a bundle")
        error = await m.poll(m.slots["acme"])
        assert error is not None and error.code is ErrorCode.BUNDLE_TRUNCATED
        acme.write_bytes(bundle_bytes(tmp_path, policy_text(3), roots=["tenants/globex"]))
        error = await m.poll(m.slots["acme"])
        assert error is not None and error.code is ErrorCode.BUNDLE_ROOTS_OVERLAP
        acme.write_bytes(bundle_bytes(tmp_path, policy_text(3), roots=[""]))
        error = await m.poll(m.slots["acme"])
        assert error is not None and error.code is ErrorCode.BUNDLE_ROOTS_OVERLAP
        acme.write_bytes(
            bundle_bytes(tmp_path, policy_text(3, tenant="globex"), roots=["tenants/acme"])
        )
        error = await m.poll(m.slots["acme"])
        assert error is not None and error.code is ErrorCode.BUNDLE_TENANT_MISMATCH
        # globex moves on meanwhile
        globex.write_bytes(bundle_bytes(tmp_path, policy_text(4), roots=["tenants/globex"]))
        assert await m.poll(m.slots["globex"]) is None
        p = harness.current
        assert decide(p, "crm.lookup", tenant="acme").policy_version == "v1"
        assert decide(p, "crm.lookup", tenant="globex").policy_version == "v4"

    asyncio.run(run())


def test_a_tenant_whose_bundle_never_loaded_is_denied_not_given_the_shared_policy(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    write_policy(shared, policy_text(0))  # the shared policy allows crm.lookup
    harness = Harness()
    m = manager(
        [(SHARED, DirectorySource(shared)), ("acme", FileSource(tmp_path / "missing.tar.gz"))],
        harness,
    )
    asyncio.run(m.start(poll=False))
    d = decide(harness.current, "crm.lookup", tenant="acme")
    assert d.outcome is Outcome.DENY
    assert "tenant 'acme' is unavailable" in d.reason
    assert decide(harness.current, "crm.lookup", tenant="other").outcome is Outcome.ALLOW


# -- rollout -------------------------------------------------------------------------------


def test_staged_rollout_shadow_canary_enforce_and_rollback(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    write_policy(folder, policy_text(1))  # lookup allowed
    harness, events = Harness(), Events()
    m = manager([(SHARED, DirectorySource(folder))], harness, events=events, staged=True)
    agents = [f"agent-{i}" for i in range(200)]

    async def run() -> None:
        await m.start(poll=False)
        write_policy(folder, policy_text(2, lookup="deny"))
        await m.poll(m.slots[SHARED])
        # shadow: v1 decides every call, v2's different outcome rides along
        for agent in agents[:20]:
            d = decide(harness.current, "crm.lookup", agent=agent)
            assert (d.outcome, d.policy_version) == (Outcome.ALLOW, "v1")
            assert d.shadow is not None
            assert (d.shadow.outcome, d.shadow.policy_version) == (Outcome.DENY, "v2")
        same = decide(harness.current, "payments.send")  # both deny: no shadow
        assert same.shadow is None
        # canary 25 % by agent: a stable, roughly proportional share goes to v2
        await m.promote(SHARED, "canary", percent=25)
        first = [decide(harness.current, "crm.lookup", agent=a).policy_version for a in agents]
        again = [decide(harness.current, "crm.lookup", agent=a).policy_version for a in agents]
        assert first == again
        share = first.count("v2") / len(agents)
        assert 0.15 < share < 0.35
        for agent, version in zip(agents, first, strict=True):
            d = decide(harness.current, "crm.lookup", agent=agent)
            other = "v1" if version == "v2" else "v2"
            assert d.shadow is not None and d.shadow.policy_version == other
        # enforce: v2 for everyone, no candidate left
        await m.promote(SHARED, "enforce")
        d = decide(harness.current, "crm.lookup")
        assert (d.outcome, d.policy_version, d.shadow) == (Outcome.DENY, "v2", None)
        # rollback: v1 again, pinned; a new version arrives as a shadow candidate only
        status = await m.rollback(SHARED)
        assert status["active"]["policy_version"] == "v1" and status["pinned"]
        assert decide(harness.current, "crm.lookup").policy_version == "v1"
        write_policy(folder, policy_text(3, lookup="deny"))
        await m.poll(m.slots[SHARED])
        d = decide(harness.current, "crm.lookup")
        assert d.policy_version == "v1" and d.shadow is not None
        assert d.shadow.policy_version == "v3"
        # rollback to any earlier version by revision, and promote one by hash prefix
        status = await m.rollback(SHARED, to=m.status()[0]["versions"][1]["revision"])
        assert status["active"]["policy_version"] == "v2"
        v3 = next(v for v in m.status()[0]["versions"] if v["policy_version"] == "v3")
        await m.promote(SHARED, "enforce", version=v3["id"][7:19])
        assert decide(harness.current, "crm.lookup").policy_version == "v3"
        assert not m.status()[0]["pinned"]

    asyncio.run(run())
    hows = [a[2] for a in events.activations]
    assert hows == ["start", "promote:enforce", "rollback", "rollback", "promote:enforce"]


def test_rollout_errors_have_stable_codes_and_change_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    write_policy(folder, policy_text(1))
    harness = Harness()
    m = manager([(SHARED, DirectorySource(folder))], harness, staged=True)

    async def run() -> None:
        await m.start(poll=False)
        before = m.status()

        async def refused(coro: Any, code: ErrorCode) -> None:
            with pytest.raises(RolloutError) as info:
                await coro
            assert info.value.code is code

        await refused(m.promote(SHARED, "enforce"), ErrorCode.ROLLOUT_INVALID)  # no candidate
        await refused(m.promote("nobody", "enforce", version="x"), ErrorCode.ROLLOUT_UNKNOWN_TENANT)
        await refused(
            m.promote(SHARED, "enforce", version="nope"), ErrorCode.ROLLOUT_UNKNOWN_VERSION
        )
        await refused(m.promote(SHARED, "canary", version="v1"), ErrorCode.ROLLOUT_INVALID)
        await refused(m.rollback(SHARED), ErrorCode.ROLLOUT_INVALID)  # nothing earlier
        write_policy(folder, policy_text(2))
        await m.poll(m.slots[SHARED])
        await refused(m.promote(SHARED, "canary"), ErrorCode.ROLLOUT_INVALID)  # no percent
        await refused(m.promote(SHARED, "canary", percent=150), ErrorCode.ROLLOUT_INVALID)
        await refused(m.promote(SHARED, "live"), ErrorCode.ROLLOUT_INVALID)
        after = m.status()[0]
        assert after["active"] == before[0]["active"]
        assert after["candidate"]["stage"] == "shadow"

    asyncio.run(run())


# -- restart -------------------------------------------------------------------------------


def test_versions_and_rollout_state_survive_a_restart_and_tampered_saves_are_refused(
    tmp_path: Path,
) -> None:
    key = SigningKey.generate()
    path, state = tmp_path / "bundle.tar.gz", tmp_path / "state"
    keys = keyring([PublicKey.of(key)])
    path.write_bytes(bundle_bytes(tmp_path, policy_text(1), key=key))
    first = Harness()
    m1 = manager([(SHARED, FileSource(path))], first, state=state, keys=keys)

    async def run_first() -> None:
        await m1.start(poll=False)
        path.write_bytes(bundle_bytes(tmp_path, policy_text(2, lookup="deny"), key=key))
        await m1.poll(m1.slots[SHARED])
        await m1.rollback(SHARED)  # v1 active, pinned

    asyncio.run(run_first())
    # the source goes away; the restarted gateway serves the saved, re-verified v1
    path.unlink()
    second = Harness()
    m2 = manager([(SHARED, FileSource(path))], second, state=state, keys=keys)
    asyncio.run(m2.start(poll=False))
    assert decide(second.current, "crm.lookup").policy_version == "v1"
    status = m2.status()[0]
    assert status["pinned"] and len(status["versions"]) == 2
    assert status["last_error"]["code"] == "bundle.source_unavailable"
    # a saved archive changed on disk is refused when read back
    for saved in (state / "versions").iterdir():
        saved.write_bytes(saved.read_bytes()[:-8] + b"\0" * 8)
    m3 = manager([(SHARED, FileSource(path))], Harness(), state=state, keys=keys)
    with pytest.raises(BundleError):
        asyncio.run(m3.start(poll=False))


def test_only_the_newest_versions_are_kept(tmp_path: Path) -> None:
    folder, state = tmp_path / "policy", tmp_path / "state"
    write_policy(folder, policy_text(0))
    m = manager([(SHARED, DirectorySource(folder))], Harness(), state=state, keep_versions=3)

    async def run() -> None:
        await m.start(poll=False)
        for n in range(1, 6):
            write_policy(folder, policy_text(n))
            await m.poll(m.slots[SHARED])

    asyncio.run(run())
    versions = [v["policy_version"] for v in m.status()[0]["versions"]]
    assert versions == ["v3", "v4", "v5"]
    assert len(list((state / "versions").iterdir())) == 3
    assert BundleErrorCode.TENANT_MISMATCH is ErrorCode.BUNDLE_TENANT_MISMATCH


def test_only_serving_versions_stay_compiled_and_others_reload_verified(tmp_path: Path) -> None:
    """Memory stays bounded by two compiled policies per slot however many versions
    are kept; rolling back to a kept version loads and verifies its archive again."""
    folder, state = tmp_path / "policy", tmp_path / "state"
    write_policy(folder, policy_text(1))
    m = manager([(SHARED, DirectorySource(folder))], Harness(), state=state, staged=True)

    async def run() -> None:
        await m.start(poll=False)
        for n in (2, 3):
            write_policy(folder, policy_text(n))
            await m.poll(m.slots[SHARED])
            await m.promote(SHARED, "enforce")
        write_policy(folder, policy_text(4))
        await m.poll(m.slots[SHARED])  # v4: the shadow candidate
        slot = m.slots[SHARED]
        compiled = sorted(v.policy_version for v in slot.versions.values() if v.compiled)
        assert compiled == ["v3", "v4"]  # active and candidate only
        status = await m.rollback(SHARED, to="v1")
        assert status["active"]["policy_version"] == "v1"
        assert sorted(v.policy_version for v in slot.versions.values() if v.compiled) == ["v1"]
        # a kept archive changed on disk (and in memory) is refused, nothing changes
        v2 = next(v for v in slot.versions.values() if v.policy_version == "v2")
        from aegis.bundles import read_archive, write_archive

        files = read_archive(v2.archive)
        files["policy.yaml"] = files["policy.yaml"].replace(b"allow", b"deny")
        slot.versions[v2.id] = dataclasses.replace(v2, archive=write_archive(files))
        with pytest.raises(RolloutError) as info:
            await m.rollback(SHARED, to="v2")
        assert info.value.code is ErrorCode.ROLLOUT_INVALID
        assert "bundle.file_mismatch" in info.value.message
        assert m.status()[0]["active"]["policy_version"] == "v1"

    asyncio.run(run())


# -- several tenants in one bundle ---------------------------------------------------------


def _multi(tmp: Path, texts: dict[str, str]) -> Path:
    root = tmp / f"multi-{abs(hash(tuple(sorted(texts.items()))))}"
    shutil.rmtree(root, ignore_errors=True)
    for tenant, text in texts.items():
        write_policy(root / "tenants" / tenant, text)
    return root


def test_a_bundle_of_several_tenants_is_built_per_tenant_and_served_per_tenant(
    tmp_path: Path,
) -> None:
    from aegis.bundles import read_archive, write_archive
    from aegis.bundles.layout import Manifest
    from aegis.bundles.verify import policy_files_hash

    folder = _multi(tmp_path, {"acme": policy_text(1), "globex": policy_text(2, lookup="deny")})
    data = build_bundle([folder], built_at=WHEN, use_git=False, tenant_subtrees=True)
    files = read_archive(data)
    manifest = Manifest.parse(files[".manifest"])
    assert manifest.roots == ("tenants/acme", "tenants/globex")
    assert "policy.rego" not in files  # one Rego package holds one policy
    # the build refuses what the gateway would
    with pytest.raises(BundleError) as info:
        build_bundle(
            [_multi(tmp_path, {"acme": policy_text(1), "globex": policy_text(2, tenant="acme")})],
            use_git=False,
            tenant_subtrees=True,
        )
    assert info.value.code is ErrorCode.BUNDLE_TENANT_MISMATCH
    stray = _multi(tmp_path, {"acme": policy_text(1)})
    write_policy(stray / "elsewhere", policy_text(9))
    with pytest.raises(BundleError) as info:
        build_bundle([stray], use_git=False, tenant_subtrees=True)
    assert info.value.code is ErrorCode.BUNDLE_POLICY_INVALID

    key = SigningKey.generate()
    path = tmp_path / "tenants.tar.gz"
    path.write_bytes(sign_bundle(data, key))
    shared = tmp_path / "shared.tar.gz"
    shared.write_bytes(bundle_bytes(tmp_path, policy_text(0), key=key))
    harness = Harness()
    m = PolicyManager(
        [
            (SHARED, FileSource(shared)),
            ("acme", FileSource(path)),
            ("globex", FileSource(path)),
        ],
        harness.install,
        config=ManagerConfig(keys=keyring([PublicKey.of(key)]), require_signature=True),
        subtrees={"acme", "globex"},
    )

    async def run() -> None:
        await m.start(poll=False)
        p = harness.current
        assert decide(p, "crm.lookup", tenant="acme").policy_version == "v1"
        assert decide(p, "crm.lookup", tenant="globex").policy_version == "v2"
        assert decide(p, "crm.lookup", tenant="initech").policy_version == "v0"
        # next release: globex moves on, acme's part is broken -- signed all the same
        nxt = dict(read_archive(data))
        nxt["tenants/acme/policy.yaml"] = b"apiVersion: aegis.dev/v1\nkind: Policy\nrules: [\n"
        nxt["tenants/globex/policy.yaml"] = policy_text(3).encode()
        nxt.pop(".signatures.json", None)
        meta = dict(manifest.metadata)
        meta["aegis"] = {**meta["aegis"], "bundle_id": policy_files_hash(nxt)}
        nxt[".manifest"] = Manifest(manifest.revision, manifest.roots, meta).to_bytes()
        path.write_bytes(sign_bundle(write_archive(nxt), key))
        error = await m.poll(m.slots["acme"])
        assert error is not None and error.code is ErrorCode.BUNDLE_POLICY_INVALID
        assert await m.poll(m.slots["globex"]) is None
        p = harness.current
        assert decide(p, "crm.lookup", tenant="acme").policy_version == "v1"  # last good
        assert decide(p, "crm.lookup", tenant="globex").policy_version == "v3"
        # a tampered release is refused for every tenant in it
        tampered = read_archive(path.read_bytes())
        tampered["tenants/globex/policy.yaml"] += b"\n# changed after signing\n"
        path.write_bytes(write_archive(tampered))
        for tenant in ("acme", "globex"):
            error = await m.poll(m.slots[tenant])
            assert error is not None and error.code is ErrorCode.BUNDLE_FILE_MISMATCH
        assert decide(harness.current, "crm.lookup", tenant="globex").policy_version == "v3"

    asyncio.run(run())
