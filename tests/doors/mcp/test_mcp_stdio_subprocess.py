"""The proxy as the agent's host runs it: ``python -m aegis.doors.mcp --stdio``
in a subprocess, with the reference server as a stdio subprocess upstream.
Every wait is bounded; the processes are ended by the test that started them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp.shared.exceptions import MCPError
from mcp_helpers import POLICY, bounded

from aegis.doors.mcp import POLICY_DENIED
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent


def _write_setup(tmp_path: Path, **identity: Any) -> tuple[Path, Path, Path]:
    calls = tmp_path / "upstream-calls.jsonl"
    config = {
        "identity": {"tenant": "acme", "agent_id": "support-bot", **identity},
        "upstreams": [
            {
                "name": "ref",
                "stdio": {
                    "command": sys.executable,
                    "args": [str(HERE / "mcp_reference_server.py"), "--calls-file", str(calls)],
                },
                "timeout_seconds": 20,
            }
        ],
        "pinning": {"file": "pins.json"},
    }
    config_path = tmp_path / "proxy.yaml"
    config_path.write_text(yaml.safe_dump(config))
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(POLICY)
    return config_path, policy_path, calls


def _proxy_args(config: Path, policy: Path) -> list[str]:
    return ["-m", "aegis.doors.mcp", "--config", str(config), "--policy", str(policy), "--stdio"]


@bounded(90)
async def test_stdio_proxy_subprocess_end_to_end(tmp_path: Path) -> None:
    config, policy, calls = _write_setup(tmp_path)
    stderr_path = tmp_path / "proxy-stderr.log"
    params = StdioServerParameters(
        command=sys.executable, args=_proxy_args(config, policy), cwd=str(tmp_path)
    )
    with stderr_path.open("w") as errlog:
        from mcp.client.stdio import stdio_client

        async with Client(
            stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=30
        ) as agent:
            names = {tool.name for tool in (await agent.list_tools()).tools}
            assert {"ref.read_file", "ref.weather"} <= names and "ref.admin_reset" not in names
            result = await agent.call_tool("ref.read_file", {"path": "/srv/a"})
            assert not result.is_error
            with pytest.raises(MCPError) as caught:
                await agent.call_tool("ref.delete_file", {"path": "/"})
            assert caught.value.code == POLICY_DENIED
    forwarded = [json.loads(line) for line in calls.read_text().splitlines()]
    assert forwarded == [{"tool": "read_file", "arguments": {"path": "/srv/a"}}]
    log = [
        json.loads(line) for line in stderr_path.read_text().splitlines() if line.startswith("{")
    ]
    denied = {
        line["tool"]: line
        for line in log
        if line["event"] == "decision" and line["outcome"] == "deny"
    }
    assert denied["ref.delete_file"]["rule_ids"] == ["no-delete"]
    assert denied["ref.delete_file"]["door"] == "mcp"
    assert denied["ref.admin_reset"]["rule_ids"] == ["hide-admin"]  # the list-phase decision
    pins = json.loads((tmp_path / "pins.json").read_text())
    assert any(p["tool"] == "read_file" for p in pins["pins"])


def test_stdio_proxy_answers_raw_garbage_and_invalid_utf8(tmp_path: Path) -> None:
    config, policy, calls = _write_setup(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, *_proxy_args(config, policy)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        lines = [
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "raw", "version": "0"},
                    },
                }
            ).encode(),
            b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
            b"\xff\xfe garbage \x80",
            b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ref.echo","arguments":{"a":"\xed\xa0\x80"}}}',
            b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ref.echo","arguments":{"ok":1}}}',
        ]
        proc.stdin.write(b"\n".join(lines) + b"\n")
        proc.stdin.flush()
        answers = [_read_json_line(proc) for _ in range(4)]
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    by_id = {a.get("id"): a for a in answers if a.get("id") is not None}
    garbage = [a for a in answers if a.get("id") is None]
    assert by_id[1]["result"]["serverInfo"]["name"] == "aegis-mcp-proxy"
    assert [g["error"]["code"] for g in garbage] == [-32700, -32700]  # both invalid UTF-8 lines
    assert "result" in by_id[3] and not by_id[3]["result"].get("isError")
    assert [json.loads(line)["tool"] for line in calls.read_text().splitlines()] == ["echo"]
    assert proc.returncode == 0


def _read_json_line(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> dict[str, Any]:
    import select

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    buffer = b""
    while not buffer.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no line from the proxy within {timeout}s"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            byte = proc.stdout.read1(1) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
            assert byte, "the proxy closed its stdout"
            buffer += byte
    parsed: dict[str, Any] = json.loads(buffer)
    return parsed


def test_a_bad_configuration_stops_the_proxy_with_status_2(tmp_path: Path) -> None:
    config, policy, _ = _write_setup(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams: []\nsurprise: 1\n")
    for args in (
        ["--config", str(bad), "--policy", str(policy), "--stdio"],
        ["--config", str(config), "--policy", str(tmp_path / "missing"), "--stdio"],
        ["--config", str(config), "--policy", str(policy), "--http", "no-port"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "aegis.doors.mcp", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 2, (args, proc.stderr)
        (line,) = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
        assert line["event"] == "mcp.config_invalid"
