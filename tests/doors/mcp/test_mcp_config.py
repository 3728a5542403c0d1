"""The proxy configuration: the file form, its checks, and public API shape."""

from __future__ import annotations

from pathlib import Path

import pytest

import aegis.doors.mcp as door
from aegis.doors.mcp import (
    HttpUpstream,
    McpConfigError,
    StdioUpstream,
    UpstreamConfig,
    load_config,
)


def test_a_full_config_loads(tmp_path: Path) -> None:
    config = load_config(
        {
            "server": {"name": "gw", "version": "2"},
            "identity": {
                "tenant": "acme",
                "agent_id": "bot",
                "labels": ["support"],
                "credentials_env": "TOKEN",
            },
            "upstreams": [
                {
                    "name": "files",
                    "stdio": {
                        "command": "mcp-files",
                        "args": ["--root", "/srv"],
                        "env": {"A": "1"},
                    },
                },
                {
                    "name": "crm",
                    "url": "https://crm.internal/mcp",
                    "headers": {"x-key": "k"},
                    "prefix": "crm_",
                },
                {
                    "name": "solo",
                    "url": "http://127.0.0.1:9000/mcp",
                    "prefix": "",
                    "timeout_seconds": 5,
                },
            ],
            "http": {
                "path": "/agents/mcp",
                "default_identity": {"tenant": "acme", "agent_id": "dev"},
                "allowed_hosts": ["gw.internal:*"],
                "max_body_bytes": 1024,
            },
            "pinning": {"file": "pins.json"},
            "passthrough": {"resources": True, "prompts": True},
            "relay": {"sampling": False},
            "limits": {"max_list_pages": 5, "max_line_bytes": 65536},
        },
        env={"TOKEN": "s3cret"},
        base_dir=tmp_path,
    )
    assert config.server_name == "gw"
    assert config.identity is not None and config.identity.credentials == "s3cret"
    assert config.identity.labels == ("support",)
    files, crm, solo = config.upstreams
    assert files.tool_prefix == "files." and isinstance(files.transport, StdioUpstream)
    assert files.destination == "stdio:mcp-files --root /srv"
    assert crm.tool_prefix == "crm_" and isinstance(crm.transport, HttpUpstream)
    assert crm.destination == "https://crm.internal/mcp"
    assert solo.tool_prefix == "" and solo.timeout_seconds == 5
    assert config.http.path == "/agents/mcp" and config.http.max_body_bytes == 1024
    assert config.pinning.file == str(tmp_path / "pins.json")
    assert config.passthrough.resources and not config.passthrough.completions
    assert not config.relay.sampling and config.relay.elicitation
    assert (config.max_list_pages, config.max_line_bytes) == (5, 65536)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(McpConfigError) as caught:
        load_config(
            {
                "upstreams": [
                    {"name": "bad.name", "stdio": {"command": "x"}, "colour": "red"},
                    {"name": "both", "stdio": {"command": "x"}, "url": "http://h"},
                ],
                "identity": {"tenant": "acme", "agent_id": "a", "credentials_env": "MISSING"},
                "http": {"stateless": "yes"},
                "surprise": 1,
            },
            env={},
        )
    problems = "\n".join(caught.value.problems)
    assert "upstreams[0].colour: unknown key" in problems
    assert "upstreams[1]: exactly one of 'stdio' or 'url'" in problems
    assert "identity.credentials_env" in problems
    assert "http.stateless: expected true or false" in problems
    assert "surprise: unknown key" in problems


@pytest.mark.parametrize(
    ("upstreams", "message"),
    [
        ((), "at least one upstream"),
        ((UpstreamConfig("a.b", StdioUpstream("x")),), "must match"),
        (
            (UpstreamConfig("a", StdioUpstream("x")), UpstreamConfig("a", StdioUpstream("y"))),
            "used twice",
        ),
        (
            (
                UpstreamConfig("a", StdioUpstream("x"), prefix="p."),
                UpstreamConfig("b", StdioUpstream("y"), prefix="p."),
            ),
            "would collide",
        ),
        ((UpstreamConfig("a", StdioUpstream("x"), prefix="bad prefix"),), "prefix"),
        ((UpstreamConfig("a", HttpUpstream("ftp://h/mcp")),), r"http\(s\) URL"),
        ((UpstreamConfig("a", StdioUpstream("x"), timeout_seconds=0),), "timeout_seconds"),
    ],
)
def test_invalid_configs_are_refused(upstreams: tuple[UpstreamConfig, ...], message: str) -> None:
    with pytest.raises(McpConfigError, match=message):
        door.McpProxyConfig(upstreams=upstreams)


def test_the_public_api() -> None:
    assert set(door.__all__) == {
        "APPROVAL_NEEDED",
        "IDENTITY_REFUSED",
        "LIMITED",
        "POLICY_DENIED",
        "TOOL_DEFINITION_CHANGED",
        "UPSTREAM_FAILED",
        "AgentIdentity",
        "DefinitionPins",
        "DriftRecord",
        "HttpConfig",
        "HttpUpstream",
        "InMemoryPinStore",
        "InProcessUpstream",
        "JsonFilePinStore",
        "McpConfigError",
        "McpProxy",
        "McpProxyConfig",
        "Passthrough",
        "PinRecord",
        "PinStore",
        "PinningConfig",
        "Relay",
        "StdioUpstream",
        "UpstreamConfig",
        "build_mcp_proxy",
        "definition_hash",
        "load_config",
    }
    # The error codes stay in the implementation-defined band MCP leaves free.
    codes = [door.POLICY_DENIED, door.APPROVAL_NEEDED, door.LIMITED, door.TOOL_DEFINITION_CHANGED]
    codes += [door.UPSTREAM_FAILED, door.IDENTITY_REFUSED]
    assert codes == list(range(-32010, -32016, -1))
    assert all(-32019 <= code <= -32003 for code in codes)
