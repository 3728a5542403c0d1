"""The proxy configuration's file form (YAML/JSON data), read once into
:class:`~aegis.doors.mcp.config.McpProxyConfig`.

Every unknown key, wrong type and missing value is collected and reported at
once as :class:`~aegis.doors.mcp.config.McpConfigError`, each with its key path
(``upstreams[1].stdio.command: expected a non-empty string``). This is the only
place the door reads the environment (``credentials_env``); relative paths
(``stdio.cwd``, ``pinning.file``) are taken relative to the file's folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aegis.doors.mcp.config import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    AgentIdentity,
    HttpConfig,
    HttpUpstream,
    McpConfigError,
    McpProxyConfig,
    Passthrough,
    PinningConfig,
    Relay,
    StdioUpstream,
    UpstreamConfig,
    UpstreamTransport,
)


def load_config(
    data: object, *, env: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> McpProxyConfig:
    """Build a :class:`McpProxyConfig` from its JSON/YAML data (docs/doors/mcp.md).

    ``env`` resolves ``credentials_env`` (the agent's token is never written in
    the file): the environment as the command line captured it, passed down
    like all configuration (none given: no variables). Relative pin-file paths
    are resolved against ``base_dir``.
    """
    env = {} if env is None else env
    r = _Reader()
    root = r.as_obj(data, "")
    r.check_keys(
        root,
        "",
        {"upstreams", "identity", "http", "pinning", "passthrough", "relay", "server", "limits"},
    )
    upstreams = tuple(
        _upstream(r, item, f"upstreams[{i}]", base_dir)
        for i, item in enumerate(r.as_list(root.get("upstreams"), "upstreams"))
    )
    identity = _identity(r, root.get("identity"), "identity", env)
    http_raw = r.as_obj(root.get("http", {}), "http")
    r.check_keys(
        http_raw,
        "http",
        {
            "path",
            "default_identity",
            "json_response",
            "stateless",
            "max_body_bytes",
            "session_idle_timeout",
            "max_sessions",
            "allowed_hosts",
            "allowed_origins",
            "retry_interval_ms",
        },
    )
    http = HttpConfig(
        path=r.as_str(http_raw.get("path", "/mcp"), "http.path"),
        default_identity=_identity(
            r, http_raw.get("default_identity"), "http.default_identity", env
        ),
        json_response=r.as_bool(http_raw.get("json_response", False), "http.json_response"),
        stateless=r.as_bool(http_raw.get("stateless", False), "http.stateless"),
        max_body_bytes=r.as_int(
            http_raw.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES), "http.max_body_bytes"
        ),
        session_idle_timeout=r.as_num(
            http_raw.get("session_idle_timeout", 1800), "http.session_idle_timeout"
        ),
        max_sessions=r.as_int(http_raw.get("max_sessions", 1000), "http.max_sessions"),
        allowed_hosts=tuple(r.as_strs(http_raw.get("allowed_hosts", []), "http.allowed_hosts")),
        allowed_origins=tuple(
            r.as_strs(http_raw.get("allowed_origins", []), "http.allowed_origins")
        ),
        retry_interval_ms=(
            None
            if http_raw.get("retry_interval_ms") is None
            else r.as_int(http_raw["retry_interval_ms"], "http.retry_interval_ms")
        ),
    )
    pin_raw = r.as_obj(root.get("pinning", {}), "pinning")
    r.check_keys(pin_raw, "pinning", {"enabled", "file"})
    pin_file = pin_raw.get("file")
    if pin_file is not None:
        pin_file = _resolve(r.as_str(pin_file, "pinning.file"), base_dir)
    pinning = PinningConfig(
        enabled=r.as_bool(pin_raw.get("enabled", True), "pinning.enabled"), file=pin_file
    )
    pt_raw = r.as_obj(root.get("passthrough", {}), "passthrough")
    r.check_keys(pt_raw, "passthrough", {"resources", "prompts", "completions", "logging"})
    passthrough = Passthrough(
        resources=r.as_bool(pt_raw.get("resources", False), "passthrough.resources"),
        prompts=r.as_bool(pt_raw.get("prompts", False), "passthrough.prompts"),
        completions=r.as_bool(pt_raw.get("completions", False), "passthrough.completions"),
        logging=r.as_bool(pt_raw.get("logging", True), "passthrough.logging"),
    )
    relay_raw = r.as_obj(root.get("relay", {}), "relay")
    r.check_keys(relay_raw, "relay", {"sampling", "elicitation", "roots"})
    relay = Relay(
        sampling=r.as_bool(relay_raw.get("sampling", True), "relay.sampling"),
        elicitation=r.as_bool(relay_raw.get("elicitation", True), "relay.elicitation"),
        roots=r.as_bool(relay_raw.get("roots", True), "relay.roots"),
    )
    server_raw = r.as_obj(root.get("server", {}), "server")
    r.check_keys(server_raw, "server", {"name", "version"})
    limits_raw = r.as_obj(root.get("limits", {}), "limits")
    r.check_keys(limits_raw, "limits", {"max_list_pages", "max_line_bytes"})
    server_name = r.as_str(server_raw.get("name", "aegis-mcp-proxy"), "server.name")
    server_version = r.as_str(server_raw.get("version", "0.1.0"), "server.version")
    max_list_pages = r.as_int(limits_raw.get("max_list_pages", 100), "limits.max_list_pages")
    max_line_bytes = r.as_int(
        limits_raw.get("max_line_bytes", DEFAULT_MAX_LINE_BYTES), "limits.max_line_bytes"
    )
    if r.problems:
        raise McpConfigError(r.problems)
    return McpProxyConfig(
        upstreams=upstreams,
        identity=identity,
        http=http,
        pinning=pinning,
        passthrough=passthrough,
        relay=relay,
        server_name=server_name,
        server_version=server_version,
        max_list_pages=max_list_pages,
        max_line_bytes=max_line_bytes,
    )


def _resolve(path: str, base_dir: Path | None) -> str:
    """A relative path in the file is relative to the file's folder."""
    if base_dir is None or Path(path).is_absolute():
        return path
    return str(base_dir / path)


def _upstream(r: _Reader, data: object, where: str, base_dir: Path | None) -> UpstreamConfig:
    raw = r.as_obj(data, where)
    r.check_keys(raw, where, {"name", "prefix", "stdio", "url", "headers", "timeout_seconds"})
    name = r.as_str(raw.get("name", ""), f"{where}.name")
    transport: UpstreamTransport
    if ("stdio" in raw) == ("url" in raw):
        r.problems.append(f"{where}: exactly one of 'stdio' or 'url' is required")
        transport = StdioUpstream(command="false")
    elif "stdio" in raw:
        s = r.as_obj(raw["stdio"], f"{where}.stdio")
        r.check_keys(s, f"{where}.stdio", {"command", "args", "env", "cwd"})
        env_raw = s.get("env")
        transport = StdioUpstream(
            command=r.as_str(s.get("command", ""), f"{where}.stdio.command"),
            args=tuple(r.as_strs(s.get("args", []), f"{where}.stdio.args")),
            env=None if env_raw is None else r.as_map(env_raw, f"{where}.stdio.env"),
            cwd=_resolve(r.as_str(s["cwd"], f"{where}.stdio.cwd"), base_dir)
            if "cwd" in s
            else None,
        )
    else:
        transport = HttpUpstream(
            url=r.as_str(raw["url"], f"{where}.url"),
            headers=r.as_map(raw.get("headers", {}), f"{where}.headers"),
        )
    prefix = raw.get("prefix")
    return UpstreamConfig(
        name=name,
        transport=transport,
        prefix=None if prefix is None else r.as_str(prefix, f"{where}.prefix", allow_empty=True),
        timeout_seconds=r.as_num(raw.get("timeout_seconds", 60), f"{where}.timeout_seconds"),
    )


def _identity(r: _Reader, data: object, where: str, env: Mapping[str, str]) -> AgentIdentity | None:
    if data is None:
        return None
    raw = r.as_obj(data, where)
    r.check_keys(raw, where, {"tenant", "agent_id", "labels", "credentials_env"})
    credentials = None
    if raw.get("credentials_env") is not None:
        var = r.as_str(raw["credentials_env"], f"{where}.credentials_env")
        credentials = env.get(var)
        if credentials is None:
            r.problems.append(f"{where}.credentials_env: environment variable {var!r} is not set")
    return AgentIdentity(
        tenant=r.as_str(raw.get("tenant", ""), f"{where}.tenant"),
        agent_id=r.as_str(raw.get("agent_id", ""), f"{where}.agent_id"),
        credentials=credentials,
        labels=tuple(r.as_strs(raw.get("labels", []), f"{where}.labels")),
    )


class _Reader:
    """Typed accessors that collect problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def as_obj(self, value: object, where: str) -> Mapping[str, Any]:
        if isinstance(value, Mapping):
            return value
        self.problems.append(f"{where or '<root>'}: expected an object")
        return {}

    def check_keys(self, value: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        for key in value:
            if key not in allowed:
                self.problems.append(f"{where + '.' if where else ''}{key}: unknown key")

    def as_list(self, value: object, where: str) -> list[Any]:
        if isinstance(value, list):
            return value
        self.problems.append(f"{where}: expected a list")
        return []

    def as_str(self, value: object, where: str, *, allow_empty: bool = False) -> str:
        if isinstance(value, str) and (value or allow_empty):
            return value
        self.problems.append(f"{where}: expected a non-empty string")
        return ""

    def as_strs(self, value: object, where: str) -> list[str]:
        return [self.as_str(v, f"{where}[{i}]") for i, v in enumerate(self.as_list(value, where))]

    def as_map(self, value: object, where: str) -> dict[str, str]:
        return {
            str(k): self.as_str(v, f"{where}.{k}", allow_empty=True)
            for k, v in self.as_obj(value, where).items()
        }

    def as_bool(self, value: object, where: str) -> bool:
        if isinstance(value, bool):
            return value
        self.problems.append(f"{where}: expected true or false")
        return False

    def as_int(self, value: object, where: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.problems.append(f"{where}: expected an integer")
        return 1

    def as_num(self, value: object, where: str) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.problems.append(f"{where}: expected a number")
        return 1.0


__all__ = ["load_config"]
