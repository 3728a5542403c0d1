"""docs/identity.md "Walkthrough", as a test: register, mint, delegate, call through
every door, kill one subtree from the CLI while its siblings keep working."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import httpx2
from click.testing import CliRunner
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from aegis.cli.main import cli
from aegis.control import hash_secret
from aegis.identity.keys import SigningKeys
from aegis.server import build_gateway
from aegis.settings import AegisSettings
from mcp import Client

ISS, AUD = "https://aegis.example/identity", "aegis-gateway"
PLATFORM, SOC = "platform-secret", "soc-secret"
AGENTS = ("planner", "finance", "research", "payments")
#: The MCP door's upstream: a stdio MCP server whose tool ``read`` the proxy shows as
#: ``crm.read`` (upstream ``crm``, default prefix ``crm.``).
MCP_SERVER = Path(__file__).with_name("walkthrough_mcp_server.py")
POLICY = {
    "apiVersion": "aegis.dev/v1",
    "kind": "Policy",
    "metadata": {"name": "walkthrough", "tenant": "acme", "owner": "ops@acme.example"},
    "tools": [
        {"name": "crm.read", "kind": "read"},
        {"name": "http:GET api.example.com/*", "kind": "read"},
    ],
    "rules": [
        {
            "id": "agents-read",
            "match": {"agents": list(AGENTS), "tools": ["crm.read", "http:GET api.example.com/*"]},
            "effect": "allow",
        }
    ],
}


def _settings(tmp: Path) -> AegisSettings:
    keys = SigningKeys.generate()
    (tmp / "issuer.pem").write_bytes(keys.active.to_pem())
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks()))
    (tmp / "policies").mkdir()
    (tmp / "policies" / "policy.yaml").write_text(json.dumps(POLICY))
    operators = [
        {"name": "pat", "role": "platform_engineer", "tenants": ["acme"],
         "token_sha256": hash_secret(PLATFORM)},
        {"name": "sam", "role": "soc_analyst", "tenants": ["acme"],
         "token_sha256": hash_secret(SOC)},
    ]  # fmt: skip
    (tmp / "operators.yaml").write_text(json.dumps(operators))
    return AegisSettings.model_validate(
        {
            "policy": {"paths": [str(tmp / "policies")]},
            "audit": {
                "enabled": True,
                "sqlite_path": str(tmp / "audit.db"),
                "signing_key_path": str(tmp / "audit-key.pem"),
            },
            "api": {"port": 0},
            "envoy": {"enabled": True, "port": 0},
            "proxy": {"enabled": True, "port": 0},
            "mcp": {
                "enabled": True,
                "port": 0,
                "options": {
                    "upstreams": [
                        {
                            "name": "crm",
                            "stdio": {"command": sys.executable, "args": [str(MCP_SERVER)]},
                        }
                    ],
                    "http": {"json_response": True},
                },
            },
            "shutdown_grace_seconds": 1,
            "identity": {
                "mode": "tokens",
                "issuer": ISS,
                "audience": AUD,
                "jwks_path": str(tmp / "jwks.json"),
            },
            "control": {
                "enabled": True,
                "operators_file": str(tmp / "operators.yaml"),
                "registry_sqlite_path": str(tmp / "agents.db"),
                "signing_key_paths": [str(tmp / "issuer.pem")],
            },
        }
    )


class Walk:
    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.server = f"http://127.0.0.1:{ports['api']}"

    async def aegis(self, *args: str, secret: str = PLATFORM) -> tuple[int, str]:
        """The CLI, in a thread (it is synchronous; the gateway runs on this loop)."""
        argv = [*args, "--server", self.server, "--token", secret]
        result = await asyncio.to_thread(CliRunner().invoke, cli, argv)
        return result.exit_code, result.stdout.strip()

    async def via_api(self, agent: str, token: str) -> dict[str, Any]:
        call = {"tenant": "acme", "agent_id": agent, "tool": "crm.read", "params": {}}
        async with httpx.AsyncClient(base_url=self.server) as api:
            answer = await api.post(
                "/v1/decide", json=call, headers={"authorization": f"Bearer {token}"}
            )
        data: dict[str, Any] = answer.json()
        return data

    async def via_envoy_http(self, agent: str, token: str) -> tuple[int, str]:
        headers = {
            "authorization": f"Bearer {token}",
            "x-aegis-tenant": "acme",
            "x-aegis-agent-id": agent,
            "host": "api.example.com",
        }
        async with httpx.AsyncClient(base_url=self.server) as api:
            answer = await api.get("/envoy/authz/v1/items", headers=headers)
        return answer.status_code, answer.headers.get("x-aegis-code", answer.text)

    async def via_envoy_grpc(self, agent: str, token: str) -> tuple[int, str]:
        check = external_auth_pb2.CheckRequest()
        http = check.attributes.request.http
        http.method, http.path, http.host, http.scheme = (
            "GET",
            "/v1/items",
            "api.example.com",
            "https",
        )
        http.id, http.protocol = "req-1", "HTTP/1.1"
        headers = {
            ":method": "GET",
            ":path": "/v1/items",
            ":authority": "api.example.com",
            "authorization": f"Bearer {token}",
            "x-aegis-tenant": "acme",
            "x-aegis-agent-id": agent,
        }
        for key, value in headers.items():
            http.headers[key] = value
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.ports['envoy']}") as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            response = await stub.Check(check, timeout=5)
        return int(response.status.code), str(response)

    async def via_ext_proc(self, agent: str, token: str) -> tuple[int, str]:
        """Envoy's side of one ext_proc stream: the request's headers, then its (empty)
        body. (status, the x-aegis-code header): 200 for a CONTINUE, else the
        ImmediateResponse's status."""
        head = ep.ProcessingRequest()
        headers = {
            ":method": "GET",
            ":path": "/v1/items",
            ":authority": "api.example.com",
            ":scheme": "https",
            "authorization": f"Bearer {token}",
            "x-aegis-tenant": "acme",
            "x-aegis-agent-id": agent,
        }
        for key, value in headers.items():
            head.request_headers.headers.headers.add(key=key, raw_value=value.encode())
        head.request_headers.end_of_stream = False
        body = ep.ProcessingRequest()
        body.request_body.body, body.request_body.end_of_stream = b"", True
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.ports['envoy']}") as channel:
            call = external_processor_pb2_grpc.ExternalProcessorStub(channel).Process(timeout=5)
            last = None
            for message in (head, body):
                await call.write(message)
                last = await call.read()
                assert last is not grpc.aio.EOF, (agent, await call.details())
                if last.HasField("immediate_response"):
                    break
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK, (agent, await call.details())
        assert last is not None
        if last.HasField("immediate_response"):
            reply = last.immediate_response
            set_headers = reply.headers.set_headers
        else:
            assert last.HasField("request_body"), (agent, last)  # CONTINUE on the body
            reply = None
            set_headers = last.request_body.response.header_mutation.set_headers
        codes = [bytes(h.header.raw_value).decode() or h.header.value
                 for h in set_headers if h.header.key == "x-aegis-code"]  # fmt: skip
        status = 200 if reply is None else int(reply.status.code)
        return status, codes[0] if codes else str(last)

    async def via_mcp(self, agent: str, token: str) -> tuple[bool, str]:
        """tools/call crm.read through the MCP proxy's Streamable HTTP endpoint:
        (allowed, the Aegis code of the JSON-RPC error, or the tool's text)."""
        headers = {
            "authorization": f"Bearer {token}",
            "x-aegis-tenant": "acme",
            "x-aegis-agent-id": agent,
        }
        url = f"http://127.0.0.1:{self.ports['mcp']}/mcp"
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10.0)) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):
            try:
                result = await client.call_tool("crm.read", {"account": "a-1"})
            except MCPError as exc:
                data = exc.data if isinstance(exc.data, dict) else {}
                return False, str(data.get("error", {}).get("code", exc))
        assert not result.is_error, (agent, result)
        return True, json.dumps(result.structured_content)

    async def via_proxy(self, agent: str, token: str) -> bytes:
        creds = base64.b64encode(f"acme/{agent}:{token}".encode()).decode()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.ports["proxy"])
        writer.write(
            b"GET http://denied.example.net/x HTTP/1.1\r\nHost: denied.example.net\r\n"
            + f"Proxy-Authorization: Basic {creds}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return answer

    async def works(self, agent: str, token: str) -> None:
        decided = await self.via_api(agent, token)
        assert decided["outcome"] == "allow", (agent, decided)
        status, code = await self.via_envoy_http(agent, token)
        assert status == 200, (agent, status, code)
        rpc, text = await self.via_envoy_grpc(agent, token)
        assert rpc == 0, (agent, text)
        status, code = await self.via_ext_proc(agent, token)
        assert (status, code) == (200, "decision.allowed"), (agent, status, code)
        allowed, text = await self.via_mcp(agent, token)
        assert allowed and "record of a-1" in text, (agent, text)
        answer = await self.via_proxy(agent, token)  # denied by policy, not for identity
        assert answer.startswith(b"HTTP/1.1 403"), answer[:300]
        assert b"decision.default_deny" in answer, answer[:600]

    async def refused(self, agent: str, token: str) -> None:
        decided = await self.via_api(agent, token)
        assert (decided["outcome"], decided["code"]) == ("deny", "decision.revoked"), decided
        status, code = await self.via_envoy_http(agent, token)
        assert status == 403 and "decision.revoked" in code, (agent, status, code)
        rpc, text = await self.via_envoy_grpc(agent, token)
        assert rpc != 0 and "decision.revoked" in text, (agent, text)
        status, code = await self.via_ext_proc(agent, token)
        assert (status, code) == (403, "decision.revoked"), (agent, status, code)
        allowed, code = await self.via_mcp(agent, token)
        assert (allowed, code) == (False, "decision.revoked"), (agent, code)
        answer = await self.via_proxy(agent, token)
        assert answer.startswith(b"HTTP/1.1 403") and b"decision.revoked" in answer, answer[:600]


def test_the_walkthrough(tmp_path: Path) -> None:
    async def scenario() -> None:
        gateway = build_gateway(_settings(tmp_path), log_stream=io.StringIO())
        ports = await gateway.start()
        walk = Walk(ports)
        try:
            spawn = {"planner": ("finance", "research"), "finance": ("payments",)}
            for agent in AGENTS:
                args = ["agents", "register", agent, "--tenant", "acme", "--owner", "ops",
                        "--scope", "crm.read"]  # fmt: skip
                for child in spawn.get(agent, ()):
                    args += ["--may-spawn", child]
                code, out = await walk.aegis(*args)
                assert code == 0, out
            code, planner = await walk.aegis(
                "tokens", "mint", "--tenant", "acme", "--agent", "planner", "--scope", "crm.read"
            )
            assert code == 0, planner
            tokens = {"planner": planner}
            for parent, child in (("planner", "finance"), ("planner", "research"),
                                  ("finance", "payments")):  # fmt: skip
                code, out = await walk.aegis(
                    "tokens", "exchange", "--tenant", "acme", "--parent-token", tokens[parent],
                    "--child", child, "--scope", "crm.read",
                )  # fmt: skip
                assert code == 0, out
                tokens[child] = out
            for agent in AGENTS:
                await walk.works(agent, tokens[agent])

            # bad input
            garbage = await walk.via_api("planner", "garbage")
            assert garbage["code"] == "identity.invalid", garbage
            big = await walk.via_api("planner", "x" * 12_000)  # over the 8 KiB token limit
            assert big["code"] == "identity.invalid", big
            assert "too_large" in json.dumps(big), big
            # 1 MB does not even make a request head: refused by the HTTP layer, no crash
            huge = await walk.via_api("planner", "x" * 1_000_000)
            assert huge["error"]["code"] == "request.too_large", huge
            code, _ = await walk.aegis(
                "tokens", "exchange", "--tenant", "acme", "--parent-token", planner,
                "--child", "nobody",
            )  # fmt: skip
            assert code == 1
            code, out = await walk.aegis(
                "tokens", "exchange", "--tenant", "acme", "--parent-token", tokens["payments"],
                "--child", "planner", "--json",
            )  # fmt: skip
            assert code == 1
            assert json.loads(out)["error"]["code"] == "control.forbidden"

            code, out = await walk.aegis(
                "kill", "--tenant", "acme", "--agent", "finance", "--cascade",
                "--reason", "INC-7: finance looping", secret=SOC,
            )  # fmt: skip
            assert code == 0, out
            await walk.refused("finance", tokens["finance"])
            await walk.refused("payments", tokens["payments"])
            await walk.works("planner", tokens["planner"])
            await walk.works("research", tokens["research"])
        finally:
            await gateway.stop()

    asyncio.run(scenario())
