"""The MCP proxy's configuration: parsed once, validated, then passed down.

A configuration names the upstream MCP servers (each launched as a stdio
subprocess, reached over Streamable HTTP, or -- for tests and embedding -- an
in-process SDK ``Server``), how their tools are namespaced, who the agent is
when the transport carries no identity (stdio), how the Streamable HTTP side
is served, and where tool-definition pins are kept.

:func:`aegis.doors.mcp.loader.load_config` reads the JSON/YAML form documented
in docs/doors/mcp.md; both it and the dataclasses' own checks report every
problem at once as :class:`McpConfigError`, each naming its key path.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp.server import Server

#: An upstream's name: also the default tool prefix (``<name>.``), so no dots.
_UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: What a tool-name prefix may contain: the MCP tool-name alphabet (spec
#: 2025-11-25, server/tools "Tool Names": A-Z a-z 0-9 _ - .), up to 64 chars.
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")
_IDENT = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class McpConfigError(ValueError):
    """The configuration is not usable; ``problems`` lists every finding."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class StdioUpstream:
    """Launch the upstream server as a subprocess and speak MCP over its stdio
    (spec 2025-11-25, basic/transports "stdio")."""

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    cwd: str | None = None

    @property
    def destination(self) -> str:
        return "stdio:" + shlex.join([self.command, *self.args])


@dataclass(frozen=True, slots=True)
class HttpUpstream:
    """Reach the upstream server over Streamable HTTP (spec 2025-11-25,
    basic/transports "Streamable HTTP")."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def destination(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True, eq=False)
class InProcessUpstream:
    """An SDK ``Server`` in this process (tests, embedding): driven over
    in-memory streams exactly as a stdio server would be."""

    server: Server[Any]

    @property
    def destination(self) -> str:
        return f"inproc:{self.server.name}"


UpstreamTransport = StdioUpstream | HttpUpstream | InProcessUpstream


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One upstream MCP server. Its tools appear to the agent as
    ``prefix + tool`` (default prefix ``"<name>."``; ``""`` keeps names as-is)."""

    name: str
    transport: UpstreamTransport
    prefix: str | None = None
    timeout_seconds: float = 60.0

    @property
    def tool_prefix(self) -> str:
        return f"{self.name}." if self.prefix is None else self.prefix

    @property
    def destination(self) -> str:
        return self.transport.destination


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who the agent is when the transport does not say (stdio, in-process):
    the host that launches the proxy vouches for it."""

    tenant: str
    agent_id: str
    credentials: str | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The Streamable HTTP side facing the agent."""

    path: str = "/mcp"
    #: Identity used when a request carries no x-aegis-tenant/x-aegis-agent-id
    #: headers. None (the default) refuses such requests with identity.missing.
    default_identity: AgentIdentity | None = None
    json_response: bool = False
    stateless: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    session_idle_timeout: float = 1800.0
    max_sessions: int = 1000
    #: Extra Host / Origin values accepted besides the loopback ones
    #: (DNS-rebinding protection, spec 2025-11-25 basic/transports "Security Warning").
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    #: SSE ``retry`` hint in milliseconds (SEP-1699); None sends none.
    retry_interval_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Passthrough:
    """MCP features relayed without a policy decision (the policy language
    covers tools only). Off by default: an unmediated path is opt-in."""

    resources: bool = False
    prompts: bool = False
    completions: bool = False
    logging: bool = True


@dataclass(frozen=True, slots=True)
class Relay:
    """Server-to-client requests an upstream may make during a call, relayed to
    the agent when the agent declared the capability (spec 2025-11-25,
    client/sampling, client/elicitation, client/roots)."""

    sampling: bool = True
    elicitation: bool = True
    roots: bool = True


@dataclass(frozen=True, slots=True)
class PinningConfig:
    enabled: bool = True
    #: None keeps pins in memory; a path keeps them in that JSON file.
    file: str | None = None


@dataclass(frozen=True, slots=True)
class McpProxyConfig:
    upstreams: tuple[UpstreamConfig, ...]
    identity: AgentIdentity | None = None
    http: HttpConfig = HttpConfig()
    pinning: PinningConfig = PinningConfig()
    passthrough: Passthrough = Passthrough()
    relay: Relay = Relay()
    server_name: str = "aegis-mcp-proxy"
    server_version: str = "0.1.0"
    #: Pages of tools/list (resources/list, ...) read from one upstream at most.
    max_list_pages: int = 100
    #: Longest JSON-RPC line accepted on stdio.
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES

    def __post_init__(self) -> None:
        problems = _check(self)
        if problems:
            raise McpConfigError(problems)

    def upstream(self, name: str) -> UpstreamConfig:
        for up in self.upstreams:
            if up.name == name:
                return up
        raise KeyError(name)


def _check(config: McpProxyConfig) -> list[str]:
    problems: list[str] = []
    if not config.upstreams:
        problems.append("upstreams: at least one upstream is required")
    names: set[str] = set()
    prefixes: dict[str, str] = {}
    for i, up in enumerate(config.upstreams):
        where = f"upstreams[{i}]"
        if not _UPSTREAM_NAME.match(up.name):
            problems.append(f"{where}.name: {up.name!r} must match {_UPSTREAM_NAME.pattern}")
        if up.name in names:
            problems.append(f"{where}.name: {up.name!r} is used twice")
        names.add(up.name)
        prefix = up.tool_prefix
        if not _PREFIX.match(prefix):
            problems.append(f"{where}.prefix: {prefix!r} must match {_PREFIX.pattern}")
        if prefix in prefixes:
            problems.append(
                f"{where}.prefix: {prefix!r} is also the prefix of {prefixes[prefix]!r}; "
                "tool names would collide"
            )
        prefixes[prefix] = up.name
        if not up.timeout_seconds > 0:
            problems.append(f"{where}.timeout_seconds must be > 0")
        if isinstance(up.transport, HttpUpstream) and not up.transport.url.startswith(
            ("http://", "https://")
        ):
            problems.append(f"{where}.url must be an http(s) URL")
    for label, ident in (
        ("identity", config.identity),
        ("http.default_identity", config.http.default_identity),
    ):
        if ident is not None:
            for key in ("tenant", "agent_id"):
                if not _IDENT.match(getattr(ident, key)):
                    problems.append(f"{label}.{key}: 1-256 printable characters required")
    if not config.http.path.startswith("/"):
        problems.append("http.path must start with '/'")
    if config.max_list_pages < 1:
        problems.append("max_list_pages must be >= 1")
    if config.max_line_bytes < 1024:
        problems.append("max_line_bytes must be >= 1024")
    return problems


__all__ = [
    "AgentIdentity",
    "HttpConfig",
    "HttpUpstream",
    "InProcessUpstream",
    "McpConfigError",
    "McpProxyConfig",
    "Passthrough",
    "PinningConfig",
    "Relay",
    "StdioUpstream",
    "UpstreamConfig",
    "UpstreamTransport",
]
