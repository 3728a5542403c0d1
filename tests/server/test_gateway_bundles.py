"""Bundles in the running gateway: hot reload under load, tenants, rollout by command."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
from click.testing import CliRunner

from aegis.bundles import (
    PublicKey,
    build_bundle,
    read_archive,
    sign_bundle,
    write_archive,
)
from aegis.cli.main import cli
from aegis.identity.keys import SigningKey
from aegis.server import build_gateway
from aegis.settings import AegisSettings
from services import PG_DSN, require_postgres

SECRET = "policy-owner-secret"

#: Each version allows or denies `crm.lookup` by a rule whose id names the version,
#: plus filler rules so a compile is real work (several ms in the reload thread).
VERSION = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {{name: reload, version: {v}}}
tools:
  - {{name: crm.lookup, kind: read}}
rules:
  - id: marker-{v}
    match: {{tools: [crm.lookup]}}
    effect: {effect}
    reason: decided by {v}
{filler}
"""


def version_text(v: str, effect: str, filler: int = 300) -> str:
    rules = "\n".join(
        f"  - id: filler-{v}-{i}\n"
        f"    match: {{tools: [tool.{i}]}}\n"
        f"    when: [{{param: amount, gt: {i}}}]\n"
        f"    effect: deny\n"
        f"    reason: filler {i}"
        for i in range(filler)
    )
    return VERSION.format(v=v, effect=effect, filler=rules)


EXPECT = {"v1": ("allow", ["marker-v1"]), "v2": ("deny", ["marker-v2"])}


def settings(tmp: Path, **policy: Any) -> AegisSettings:
    if not (tmp / "audit.pem").exists():
        made = CliRunner().invoke(cli, ["audit", "keygen", "--out", str(tmp / "audit.pem")])
        assert made.exit_code == 0, made.output
    operators = tmp / "operators.yaml"
    operators.write_text(
        json.dumps(
            [
                {
                    "name": "olive",
                    "role": "policy_owner",
                    "tenants": ["*"],
                    "token_sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
                },
                {
                    "name": "sam",
                    "role": "soc_analyst",
                    "tenants": ["*"],
                    "token_sha256": hashlib.sha256(b"soc-secret").hexdigest(),
                },
            ]
        )
    )
    return AegisSettings.model_validate(
        {
            "policy": {"poll_seconds": 0.05, **policy},
            "audit": {"enabled": True, "sqlite_path": str(tmp / "audit.db"),
                      "signing_key_path": str(tmp / "audit.pem"), "generate_key": False},
            "api": {"port": 0},
            "envoy": {"enabled": False},
            "proxy": {"enabled": False},
            "shutdown_grace_seconds": 1,
            "control": {
                "enabled": True,
                "operators_file": str(operators),
                "registry_sqlite_path": str(tmp / "agents.db"),
            },
        }
    )  # fmt: skip


def lookup(agent: str = "a1", tenant: str = "acme") -> dict[str, Any]:
    return {"tenant": tenant, "agent_id": agent, "tool": "crm.lookup", "params": {}}


def test_hot_reload_under_load_fails_no_call_and_mixes_no_versions(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    folder.mkdir()
    texts = {v: version_text(v, EXPECT[v][0]) for v in EXPECT}
    (folder / "policy.yaml").write_text(texts["v1"])
    gateway = build_gateway(settings(tmp_path, paths=[str(folder)]), log_stream=io.StringIO())
    answers: list[tuple[int, dict[str, Any] | str]] = []
    swaps = 0

    async def client(api: httpx.AsyncClient, stop: asyncio.Event, n: int) -> None:
        i = 0
        while not stop.is_set() and i < 2_000:  # bounded in count and in time
            r = await api.post("/v1/decide", json=lookup(f"agent-{n}-{i % 7}"))
            answers.append((r.status_code, r.json() if r.status_code < 500 else r.text))
            i += 1

    async def flipper(stop: asyncio.Event) -> None:
        nonlocal swaps
        current = "v1"
        for _ in range(12):
            await asyncio.sleep(0.15)
            current = "v2" if current == "v1" else "v1"
            # Published as deploy tools do: written aside, renamed into place (an
            # in-place write can be read half-done; that would be a failed reload
            # -- last good kept -- not a failed call, but this test counts both).
            (tmp_path / "next.yaml").write_text(texts[current])
            (tmp_path / "next.yaml").replace(folder / "policy.yaml")
            swaps += 1
        await asyncio.sleep(0.3)
        stop.set()

    async def scenario() -> None:
        ports = await gateway.start()
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{ports['api']}", timeout=10
            ) as api:
                stop = asyncio.Event()
                await asyncio.wait_for(
                    asyncio.gather(flipper(stop), *(client(api, stop, n) for n in range(8))),
                    timeout=60,
                )
                metrics = (await api.get("/metrics")).text
        finally:
            await gateway.stop()
        assert 'aegis_policy_reloads_total{result="activated",tenant=""}' in metrics
        assert "aegis_policy_active_info{" in metrics
        assert 'aegis_policy_load_seconds_count{tenant=""}' in metrics

    asyncio.run(scenario())
    assert swaps == 12
    assert len(answers) > 200
    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed[:3]
    seen: Counter[str] = Counter()
    for _, body in answers:
        assert isinstance(body, dict)
        version = body["policy_version"]
        outcome, rule_ids = EXPECT[version]  # KeyError: a version nobody published
        assert (body["outcome"], body["rule_ids"]) == (outcome, rule_ids), body
        assert body["reason"] == f"decided by {version}"
        seen[version] += 1
    assert seen["v1"] > 0 and seen["v2"] > 0
    manager = gateway.policy
    assert manager is not None
    reloads = manager.status()[0]["reloads"]
    assert reloads["activated"] >= 3, reloads  # several swaps landed under load
    assert reloads["failed"] == 0, manager.status()[0]["last_error"]


def test_tenant_bundles_staged_rollout_and_rollback_by_command(tmp_path: Path) -> None:
    """The issue's 'done when': built from a folder, served per tenant, rolled
    forward and back with `aegis policy promote|rollback` against the gateway."""
    shared, acme_src = tmp_path / "shared", tmp_path / "acme-src"
    shared.mkdir()
    acme_src.mkdir()
    (shared / "policy.yaml").write_text(version_text("s1", "allow", filler=0))
    acme_bundle = tmp_path / "acme.tar.gz"

    def publish_acme(v: str) -> None:
        (acme_src / "policy.yaml").write_text(version_text(v, EXPECT[v][0], filler=5))
        acme_bundle.write_bytes(build_bundle([acme_src], use_git=False, roots=["tenants/acme"]))

    publish_acme("v1")
    gateway = build_gateway(
        settings(
            tmp_path,
            paths=[str(shared)],
            rollout="staged",
            state_dir=str(tmp_path / "state"),
            bundles=[{"tenant": "acme", "source": str(acme_bundle)}],
        ),
        log_stream=io.StringIO(),
    )

    async def scenario() -> None:
        ports = await gateway.start()
        server = f"http://127.0.0.1:{ports['api']}"

        async def aegis(*args: str, secret: str = SECRET) -> tuple[int, Any]:
            argv = ["policy", *args, "--server", server, "--token", secret, "--json"]
            result = await asyncio.to_thread(CliRunner().invoke, cli, argv)
            return result.exit_code, json.loads(result.output) if result.output else None

        async def decide(agent: str, tenant: str = "acme") -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=server) as api:
                r = await api.post("/v1/decide", json=lookup(agent, tenant))
                assert r.status_code == 200, r.text
                body: dict[str, Any] = r.json()
                return body

        async def wait_for(predicate: Any) -> None:
            for _ in range(200):
                if predicate():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the gateway did not pick the new bundle up")

        try:
            assert (await decide("a1"))["policy_version"] == "v1"
            assert (await decide("a1", tenant="globex"))["policy_version"] == "s1"  # shared
            # v2 is published: staged, so it runs in shadow; v1 still decides
            publish_acme("v2")
            slot = gateway.policy.slots["acme"]  # type: ignore[union-attr]
            await wait_for(lambda: slot.record.candidate is not None)
            d = await decide("a1")
            assert (d["policy_version"], d["outcome"]) == ("v1", "allow")
            assert d["shadow"]["outcome"] == "deny" and d["shadow"]["policy_version"] == "v2"
            # canary 50 % of agents, by command
            code, out = await aegis(
                "promote", "--tenant", "acme", "--stage", "canary", "--percent", "50",
                "--reason", "canary the new lookup rule",
            )  # fmt: skip
            assert code == 0, out
            assert out["candidate"]["stage"] == "canary" and out["candidate"]["percent"] == 50
            versions = Counter([(await decide(f"agent-{i}"))["policy_version"] for i in range(60)])
            assert versions["v1"] > 10 and versions["v2"] > 10
            # a SOC analyst may not deploy policy
            code, out = await aegis(
                "promote", "--tenant", "acme", "--stage", "enforce", "--reason", "x",
                secret="soc-secret",
            )  # fmt: skip
            assert code == 1 and out["error"]["code"] == "control.forbidden"
            # enforce, then roll back in one command
            code, out = await aegis(
                "promote", "--tenant", "acme", "--stage", "enforce", "--reason", "looks good"
            )
            assert code == 0 and out["active"]["policy_version"] == "v2"
            assert (await decide("a1"))["policy_version"] == "v2"
            code, out = await aegis("rollback", "--tenant", "acme", "--reason", "complaints")
            assert code == 0 and out["active"]["policy_version"] == "v1" and out["pinned"]
            d = await decide("a1")
            assert (d["policy_version"], d["outcome"], d["shadow"]) == ("v1", "allow", None)
            # errors carry stable codes
            code, out = await aegis("rollback", "--tenant", "acme", "--to", "nope", "--reason", "r")
            assert code == 1 and out["error"]["code"] == "rollout.unknown_version"
            code, out = await aegis("status", "--tenant", "globex")
            assert code == 1 and out["error"]["code"] == "rollout.unknown_tenant"
            code, out = await aegis("status")
            assert code == 0
            tenants = {s["tenant"]: s for s in out["slots"]}
            assert set(tenants) == {"", "acme"}
            assert tenants["acme"]["active"]["policy_version"] == "v1"
            assert len(tenants["acme"]["versions"]) == 2
            human = await asyncio.to_thread(
                CliRunner().invoke,
                cli,
                ["policy", "status", "--tenant", "acme", "--server", server, "--token", SECRET],
            )
            assert human.exit_code == 0, human.output
            assert "active" in human.output and ", v1)" in human.output
            assert "pinned     yes" in human.output and "last load" in human.output
            # a broken acme bundle: acme keeps v1, the shared policy is untouched
            acme_bundle.write_bytes(b"\x1f\x8b\x08 truncated")
            await wait_for(lambda: slot.counts["failed"] > 0)
            assert (await decide("a1"))["policy_version"] == "v1"
            assert (await decide("a1", tenant="globex"))["policy_version"] == "s1"
        finally:
            await gateway.stop()

    asyncio.run(scenario())
    # every activation and every rollout command is in the verified audit log
    audit_db, public = tmp_path / "audit.db", tmp_path / "audit.pub.pem"
    verified = CliRunner().invoke(
        cli, ["audit", "verify", "--sqlite", str(audit_db), "--public-key", str(public)]
    )
    assert verified.exit_code == 0, verified.output
    exported = tmp_path / "export.jsonl"
    result = CliRunner().invoke(
        cli, ["audit", "export", "--sqlite", str(audit_db), "-o", str(exported)]
    )
    assert result.exit_code == 0, result.output
    kinds: Counter[str] = Counter()
    activations = []
    shadowed: list[dict[str, Any]] = []
    for line in exported.read_text().splitlines():
        record = json.loads(line).get("record")
        if record is None:
            continue  # the export header, proofs, checkpoints
        kind = record.get("kind")
        kinds[kind] += 1
        if kind == "policy_activation":
            body = record["body"]
            activations.append((record.get("tenant"), body["version"], body["bundle"]["how"]))
        if kind == "decision" and record["body"]["shadow"] is not None:
            shadowed.append(record["body"])
    assert kinds["rollout"] == 3  # canary, enforce, rollback (refusals change nothing)
    assert ("acme", "v2", "promote:enforce") in activations
    assert ("acme", "v1", "rollback") in activations
    # the differences seen in shadow and canary are in the record, version named
    assert shadowed
    for body in shadowed:
        other = {"v1": "v2", "v2": "v1"}[body["policy_version"]]
        assert body["shadow"]["policy_version"] == other
        assert body["shadow"]["outcome"] == EXPECT[other][0]


class _BundleHandler(BaseHTTPRequestHandler):
    """OPA's bundle service, the part a gateway uses: GET with ETag / If-None-Match."""

    server: _BundleServer

    def do_GET(self) -> None:
        srv = self.server
        srv.seen_if_none_match.append(self.headers.get("If-None-Match"))
        etag = '"' + hashlib.sha256(srv.body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(srv.body)))
        self.end_headers()
        self.wfile.write(srv.body)

    def log_message(self, *_args: object) -> None:
        pass


class _BundleServer(ThreadingHTTPServer):
    def __init__(self, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _BundleHandler)
        self.body = body
        self.seen_if_none_match: list[str | None] = []


def test_signed_bundles_over_http_refuse_bad_ones_and_keep_serving(tmp_path: Path) -> None:
    """Issue 3 items 2 and 4 through the gateway: a bundle server polled with ETag;
    a tampered, an unsigned and a wrong-key bundle are each refused with their code
    while the last good version keeps deciding; a good one is picked up."""
    key, other = SigningKey.generate(), SigningKey.generate()
    (tmp_path / "bundle-key.pub.pem").write_bytes(PublicKey.of(key).to_pem())
    src = tmp_path / "src"
    src.mkdir()

    def bundle(v: str, signer: SigningKey | None) -> bytes:
        (src / "policy.yaml").write_text(version_text(v, EXPECT[v][0], filler=3))
        data = build_bundle([src], use_git=False)
        return sign_bundle(data, signer, scope="prod") if signer else data

    good = bundle("v1", key)
    files = read_archive(good)
    files["policy.yaml"] = files["policy.yaml"].replace(b"effect: allow", b"effect: deny")
    tampered = write_archive(files)
    server = _BundleServer(good)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/bundles/shared.tar.gz"
    gateway = build_gateway(
        settings(
            tmp_path,
            bundles=[{"source": url}],
            require_signature=True,
            public_key_paths=[str(tmp_path / "bundle-key.pub.pem")],
            signature_scope="prod",
        ),
        log_stream=(log := io.StringIO()),
    )

    async def scenario() -> None:
        ports = await gateway.start()
        slot = gateway.policy.slots[""]  # type: ignore[union-attr]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}") as api:

                async def version() -> tuple[str, str]:
                    d = (await api.post("/v1/decide", json=lookup())).json()
                    return d["policy_version"], d["outcome"]

                async def served(body: bytes, failed: int) -> None:
                    server.body = body
                    for _ in range(200):
                        if slot.counts["failed"] >= failed and slot.last_fetch_at:
                            break
                        await asyncio.sleep(0.05)
                    assert slot.counts["failed"] == failed, slot.last_error

                assert await version() == ("v1", "allow")
                for n, (body, code) in enumerate(
                    [
                        (tampered, "bundle.file_mismatch"),
                        (bundle("v2", None), "bundle.unsigned"),
                        (bundle("v2", other), "bundle.unknown_key"),
                    ],
                    start=1,
                ):
                    await served(body, n)
                    assert slot.last_error is not None and slot.last_error["code"] == code
                    assert await version() == ("v1", "allow")  # the last good one
                server.body = bundle("v2", key)
                for _ in range(200):
                    if await version() == ("v2", "deny"):
                        break
                    await asyncio.sleep(0.05)
                assert await version() == ("v2", "deny")
        finally:
            await gateway.stop()
            server.shutdown()

    asyncio.run(scenario())
    assert server.seen_if_none_match[0] is None
    assert any(tag for tag in server.seen_if_none_match[1:])  # 304s between changes
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    refused = [e for e in events if e.get("event") == "policy.reload_failed"]
    assert [e["code"] for e in refused] == [
        "bundle.file_mismatch", "bundle.unsigned", "bundle.unknown_key"
    ]  # fmt: skip


def test_two_replicas_follow_one_rollback(tmp_path: Path) -> None:
    """`aegis policy promote` on one gateway and `rollback` on another: both serve
    the same version within a poll interval (shared state in PostgreSQL, for real)."""
    require_postgres()
    prefix = f"t_{uuid.uuid4().hex[:12]}"
    folder = tmp_path / "policy"
    folder.mkdir()

    def publish(v: str) -> None:
        (tmp_path / "next.yaml").write_text(version_text(v, EXPECT[v][0], filler=3))
        (tmp_path / "next.yaml").replace(folder / "policy.yaml")

    publish("v1")
    replicas = []
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        replicas.append(
            build_gateway(
                settings(
                    home,
                    paths=[str(folder)],
                    rollout="staged",
                    poll_seconds=0.1,
                    shared_state_dsn=PG_DSN,
                    shared_state_table_prefix=prefix,
                ),
                log_stream=io.StringIO(),
            )
        )

    async def scenario() -> None:
        ports = [await g.start() for g in replicas]
        servers = [f"http://127.0.0.1:{p['api']}" for p in ports]

        async def aegis(server: str, *args: str) -> tuple[int, Any]:
            argv = ["policy", *args, "--server", server, "--token", SECRET, "--json"]
            result = await asyncio.to_thread(CliRunner().invoke, cli, argv)
            return result.exit_code, json.loads(result.output) if result.output else None

        async def versions() -> list[str]:
            out = []
            for server in servers:
                async with httpx.AsyncClient(base_url=server) as api:
                    out.append((await api.post("/v1/decide", json=lookup())).json())
            return [d["policy_version"] for d in out]

        async def until(expected: list[str]) -> None:
            for _ in range(200):
                if await versions() == expected:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{await versions()} != {expected}")

        try:
            await until(["v1", "v1"])
            publish("v2")  # both replicas see it as a shadow candidate
            for g in replicas:
                slot = g.policy.slots[""]  # type: ignore[union-attr]
                for _ in range(200):
                    if slot.record.candidate is not None:
                        break
                    await asyncio.sleep(0.05)
            code, out = await aegis(servers[0], "promote", "--stage", "enforce", "--reason", "go")
            assert code == 0, out
            await until(["v2", "v2"])
            code, out = await aegis(servers[1], "rollback", "--reason", "refunds blocked")
            assert code == 0, out
            await until(["v1", "v1"])
            _, status = await aegis(servers[0], "status")
            (slot,) = status["slots"]
            assert slot["pinned"] and slot["shared"]["error"] is None
        finally:
            for g in replicas:
                await g.stop()
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {prefix}_state, {prefix}_archives")

    asyncio.run(scenario())
