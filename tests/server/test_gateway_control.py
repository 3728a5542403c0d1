"""`control.enabled`: the control-plane API mounted on the gateway's API listener."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from aegis.identity.keys import SigningKeys
from aegis.server import build_gateway
from aegis.settings import AegisSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
ISS, AUD = "https://aegis.example/identity", "aegis-gateway"
SECRET = "platform-secret"
PAYMENT = {
    "tenant": "acme",
    "agent_id": "finance-agent",
    "tool": "stripe.create_payment",
    "params": {"amount": 100, "currency": "USD"},
}


def _settings(tmp: Path, keys: SigningKeys) -> AegisSettings:
    operators = tmp / "operators.yaml"
    entry = {
        "name": "pat",
        "role": "platform_engineer",
        "tenants": ["acme"],
        "token_sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
    }
    operators.write_text(json.dumps([entry]))
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks()))
    (tmp / "issuer.pem").write_bytes(keys.active.to_pem())
    return AegisSettings.model_validate(
        {
            "policy": {"paths": [str(ROOT / "examples")]},
            "audit": {"enabled": False},
            "api": {"port": 0},
            "envoy": {"enabled": False},
            "proxy": {"enabled": False},
            "shutdown_grace_seconds": 1,
            "identity": {
                "mode": "tokens",
                "issuer": ISS,
                "audience": AUD,
                "jwks_path": str(tmp / "jwks.json"),
            },
            "control": {
                "enabled": True,
                "operators_file": str(operators),
                "registry_sqlite_path": str(tmp / "agents.db"),
                "signing_key_paths": [str(tmp / "issuer.pem")],
            },
        }
    )


def test_control_api_suspends_an_agent_the_gateway_then_refuses(tmp_path: Path) -> None:
    pytest.importorskip("aegis.control", reason="aegis.control is not finished yet")
    keys = SigningKeys.generate()

    async def scenario() -> None:
        gateway = build_gateway(_settings(tmp_path, keys), log_stream=io.StringIO())
        assert gateway.control is not None
        assert gateway.identity is not None
        assert gateway.control.kill_switch is gateway.identity.kill_switch
        ports = await gateway.start()
        base = f"http://127.0.0.1:{ports['api']}"
        operator = {"authorization": f"Bearer {SECRET}"}
        try:
            async with httpx.AsyncClient(base_url=base) as api:
                assert (await api.get("/v1/control/whoami")).status_code == 401
                who = await api.get("/v1/control/whoami", headers=operator)
                assert who.status_code == 200, who.text
                assert "pat" in who.text

                agents = "/v1/control/tenants/acme/agents"
                body = {"agent_id": "finance-agent", "owner": "fin", "scopes": ["payments"]}
                registered = await api.post(agents, json=body, headers=operator)
                assert registered.status_code in {200, 201}, registered.text
                minted = await api.post(
                    f"{agents}/finance-agent/tokens",
                    json={"scopes": ["payments"]},
                    headers=operator,
                )
                assert minted.status_code in {200, 201}, minted.text
                auth = {"authorization": f"Bearer {minted.json()['token']}"}
                allowed = (await api.post("/v1/decide", json=PAYMENT, headers=auth)).json()
                assert allowed["outcome"] == "allow", allowed

                suspended = await api.post(
                    f"{agents}/finance-agent/suspend", json={"reason": "odd"}, headers=operator
                )
                assert suspended.status_code in {200, 201}, suspended.text
                refused = (await api.post("/v1/decide", json=PAYMENT, headers=auth)).json()
                assert refused["outcome"] == "deny", refused
        finally:
            await gateway.stop()

    asyncio.run(scenario())


def test_disabled_control_builds_no_control_plane(tmp_path: Path) -> None:
    settings = AegisSettings.model_validate(
        {"policy": {"paths": [str(ROOT / "examples")]}, "audit": {"enabled": False}}
    )
    gateway = build_gateway(settings, log_stream=io.StringIO())
    assert gateway.control is None
    assert not (tmp_path / "agents.db").exists()


def test_control_settings(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="operators_file"):
        AegisSettings.model_validate({"control": {"enabled": True}})
    config = tmp_path / "aegis.yaml"
    data: dict[str, Any] = {
        "control": {
            "enabled": True,
            "operators_file": "ops.yaml",
            "signing_key_paths": ["keys/a.pem"],
        }
    }
    config.write_text(json.dumps(data))
    control = load_settings(config).control
    assert control.operators_file == tmp_path / "ops.yaml"
    assert control.signing_key_paths == [tmp_path / "keys/a.pem"]
    assert control.registry_sqlite_path == tmp_path / ".aegis/agents.db"
    assert AegisSettings().control.enabled is False
