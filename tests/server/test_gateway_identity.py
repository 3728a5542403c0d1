"""`identity.mode: tokens` end to end: every door's call is bound to a verified token."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from aegis.identity.keys import SigningKeys
from aegis.identity.stage import TokenIdentity
from aegis.identity.tokens import TokenMinter
from aegis.pipeline.stages import AllowAllIdentity
from aegis.server import build_gateway
from aegis.server.errors import ConfigError
from aegis.settings import AegisSettings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
ISS, AUD = "https://aegis.example/identity", "aegis-gateway"
PAYMENT = {
    "tenant": "acme",
    "agent_id": "finance-agent",
    "tool": "stripe.create_payment",
    "params": {"amount": 100, "currency": "USD"},
}


def settings(tmp: Path, identity: dict[str, Any], *, proxy: bool = False) -> AegisSettings:
    return AegisSettings.model_validate(
        {
            "policy": {"paths": [str(ROOT / "examples")]},
            "audit": {"enabled": False},
            "api": {"port": 0},
            "envoy": {"enabled": False},
            "proxy": {"enabled": proxy, "port": 0},
            "shutdown_grace_seconds": 1,
            "identity": identity,
        }
    )


def tokens_identity(tmp: Path, keys: SigningKeys, *, pem: bool = False) -> dict[str, Any]:
    if pem:
        path = tmp / "issuer.pub.pem"
        path.write_bytes(keys.active.key.as_pem(private=False))
        return {"mode": "tokens", "issuer": ISS, "audience": AUD, "public_key_paths": [str(path)]}
    path = tmp / "jwks.json"
    path.write_text(json.dumps(keys.jwks()))
    return {"mode": "tokens", "issuer": ISS, "audience": AUD, "jwks_path": str(path)}


def test_the_default_is_unverified(tmp_path: Path) -> None:
    gateway = build_gateway(settings(tmp_path, {}))
    assert gateway.identity is None
    assert isinstance(gateway.pipeline.identity, AllowAllIdentity)


@pytest.mark.parametrize("pem", [False, True], ids=["jwks_path", "public_key_paths"])
def test_api_calls_need_a_valid_unrevoked_token(tmp_path: Path, pem: bool) -> None:
    keys = SigningKeys.generate()
    minter = TokenMinter(keys, issuer=ISS, audience=AUD)

    async def scenario() -> None:
        log = io.StringIO()
        gateway = build_gateway(
            settings(tmp_path, tokens_identity(tmp_path, keys, pem=pem)), log_stream=log
        )
        assert isinstance(gateway.pipeline.identity, TokenIdentity)
        ports = await gateway.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}") as api:
                missing = (await api.post("/v1/decide", json=PAYMENT)).json()
                assert missing["outcome"] == "deny"
                assert missing["code"] == "identity.missing"

                garbage = await api.post(
                    "/v1/decide", json=PAYMENT, headers={"authorization": "Bearer x.y.z"}
                )
                assert garbage.json()["code"] == "identity.invalid"

                token, claims = minter.mint("finance-agent", "acme", ["payments"])
                auth = {"authorization": f"Bearer {token}"}
                allowed = (await api.post("/v1/decide", json=PAYMENT, headers=auth)).json()
                assert allowed["outcome"] == "allow", allowed

                other = {**PAYMENT, "agent_id": "crm"}
                mismatch = (await api.post("/v1/decide", json=other, headers=auth)).json()
                assert mismatch["code"] == "identity.mismatch"

                assert gateway.identity is not None
                assert gateway.identity.kill_switch is not None
                await gateway.identity.kill_switch.revoke(
                    "jti", tenant="acme", target=claims.jti, actor="sec", reason="leaked"
                )
                revoked = (await api.post("/v1/decide", json=PAYMENT, headers=auth)).json()
                assert revoked["outcome"] == "deny"
                assert revoked["code"] == "decision.revoked"

                jwks = await api.get("/.well-known/jwks.json")
                assert jwks.status_code == 200
                assert jwks.headers["content-type"] == "application/jwk-set+json"
                (served,) = jwks.json()["keys"]
                assert served["kid"] == keys.active.kid
                assert "d" not in served  # public members only
        finally:
            await gateway.stop()
        started = [json.loads(line) for line in log.getvalue().splitlines()]
        assert not any(e.get("event") == "identity.unverified" for e in started)

    asyncio.run(scenario())


def test_no_jwks_route_when_unverified(tmp_path: Path) -> None:
    async def scenario() -> None:
        gateway = build_gateway(settings(tmp_path, {}), log_stream=io.StringIO())
        ports = await gateway.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}") as api:
                assert (await api.get("/.well-known/jwks.json")).status_code == 404
                decided = (await api.post("/v1/decide", json=PAYMENT)).json()
                assert decided["outcome"] == "allow"  # identities taken from the call
        finally:
            await gateway.stop()

    asyncio.run(scenario())


async def _proxy_get(port: int, creds: bytes) -> bytes:
    basic = base64.b64encode(creds).decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET http://example-exfil.xyz/upload HTTP/1.1\r\nHost: example-exfil.xyz\r\n"
        + f"Proxy-Authorization: Basic {basic}\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


def test_the_proxy_binds_basic_credentials_to_the_token(tmp_path: Path) -> None:
    keys = SigningKeys.generate()
    minter = TokenMinter(keys, issuer=ISS, audience=AUD)

    async def scenario() -> None:
        cfg = settings(tmp_path, tokens_identity(tmp_path, keys), proxy=True)
        gateway = build_gateway(cfg, log_stream=io.StringIO())
        ports = await gateway.start()
        try:
            bad = await _proxy_get(ports["proxy"], b"acme/crm:not-a-token")
            assert bad.startswith(b"HTTP/1.1 407")  # identity refusals ask for credentials
            assert b"identity.invalid" in bad
            token, _ = minter.mint("crm", "acme", [])
            # Verified: the policy decides (the unknown domain is denied by rule).
            decided = await _proxy_get(ports["proxy"], f"acme/crm:{token}".encode())
            assert decided.startswith(b"HTTP/1.1 403")
            assert b"egress-unknown-domain" in decided
            spoofed = await _proxy_get(ports["proxy"], f"acme/finance-agent:{token}".encode())
            assert spoofed.startswith(b"HTTP/1.1 407")
            assert b"identity.mismatch" in spoofed
        finally:
            await gateway.stop()

    asyncio.run(scenario())


def test_tokens_mode_needs_issuer_audience_and_one_key_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="issuer"):
        AegisSettings.model_validate({"identity": {"mode": "tokens", "jwks_path": "k.json"}})
    with pytest.raises(ValueError, match="exactly one"):
        AegisSettings.model_validate(
            {"identity": {"mode": "tokens", "issuer": ISS, "audience": AUD}}
        )
    config = tmp_path / "aegis.yaml"
    config.write_text("identity: {mode: tokens, issuer: x}\n")
    with pytest.raises(SettingsError, match="identity"):
        load_settings(config)


def test_key_files_resolve_against_the_settings_file(tmp_path: Path) -> None:
    config = tmp_path / "aegis.yaml"
    config.write_text(
        f"identity: {{mode: tokens, issuer: '{ISS}', audience: {AUD}, jwks_path: jwks.json}}\n"
    )
    assert load_settings(config).identity.jwks_path == tmp_path / "jwks.json"


def test_a_bad_key_set_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    identity = {
        "mode": "tokens",
        "issuer": ISS,
        "audience": AUD,
        "jwks_path": str(tmp_path / "jwks.json"),
    }
    with pytest.raises(ConfigError, match="no EdDSA or ES256 key"):
        build_gateway(settings(tmp_path, identity))
