"""Who is calling: the agent identity the pipeline decides for.

* stdio (and in-process): the transport carries no identity, so the host that
  launches the proxy vouches for the agent in the configuration
  (``identity:``), optionally with a token read from the environment. MCP's
  authorization spec does not apply to stdio (spec 2025-11-25,
  basic/authorization "Protocol Requirements": stdio implementations retrieve
  credentials from the environment).
* Streamable HTTP: each request names its tenant and agent in
  ``x-aegis-tenant`` / ``x-aegis-agent-id`` and carries its token in
  ``Authorization: Bearer`` (basic/authorization "Token Requirements": the
  token is sent on every request). The token goes into
  ``RequestContext.credentials`` unverified; the pipeline's identity stage
  verifies it. A request without the headers is refused (identity.missing)
  unless ``http.default_identity`` is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from starlette.requests import Request

from aegis.doors.mcp.config import AgentIdentity, McpProxyConfig
from aegis.doors.mcp.wire import IDENTITY_REFUSED, request_error
from aegis.errors import ErrorCode

TENANT_HEADER = "x-aegis-tenant"
AGENT_HEADER = "x-aegis-agent-id"
SESSION_HEADER = "mcp-session-id"
_MAX_IDENT = 256


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    agent_id: str
    credentials: str | None
    labels: frozenset[str]
    #: Which agent connection this is: "local" (stdio, in-process), "http:<session>"
    #: for a Streamable HTTP session, "shared" for requests without one.
    connection: str
    session_id: str = ""
    remote_addr: str | None = None


def identify(request: object | None, config: McpProxyConfig) -> Caller:
    """The caller of one MCP request, or an MCPError (-32015, identity.*)."""
    if not isinstance(request, Request):
        ident = config.identity
        if ident is None:
            raise request_error(
                IDENTITY_REFUSED,
                ErrorCode.IDENTITY_MISSING,
                "no agent identity: configure `identity` for stdio",
            )
        return _from_config(ident, "local")
    headers = request.headers
    session_id = headers.get(SESSION_HEADER, "")
    connection = f"http:{session_id}" if session_id else "shared"
    remote = request.client.host if request.client is not None else None
    tenant = headers.get(TENANT_HEADER)
    agent_id = headers.get(AGENT_HEADER)
    credentials = _bearer(headers.get("authorization"))
    if tenant is None and agent_id is None and config.http.default_identity is not None:
        ident = config.http.default_identity
        caller = _from_config(ident, connection, session_id=session_id, remote=remote)
        return caller if credentials is None else replace(caller, credentials=credentials)
    if not tenant or not agent_id:
        missing = TENANT_HEADER if not tenant else AGENT_HEADER
        raise request_error(
            IDENTITY_REFUSED,
            ErrorCode.IDENTITY_MISSING,
            f"missing header {missing}",
            header=missing,
        )
    for name, value in ((TENANT_HEADER, tenant), (AGENT_HEADER, agent_id)):
        if len(value) > _MAX_IDENT or not value.isprintable():
            raise request_error(
                IDENTITY_REFUSED,
                ErrorCode.IDENTITY_INVALID,
                f"header {name} must be 1-{_MAX_IDENT} printable characters",
                header=name,
            )
    return Caller(
        tenant=tenant,
        agent_id=agent_id,
        credentials=credentials,
        labels=frozenset(),
        connection=connection,
        session_id=session_id if len(session_id) <= _MAX_IDENT and session_id.isprintable() else "",
        remote_addr=remote,
    )


def _from_config(
    ident: AgentIdentity, connection: str, *, session_id: str = "", remote: str | None = None
) -> Caller:
    return Caller(
        tenant=ident.tenant,
        agent_id=ident.agent_id,
        credentials=ident.credentials,
        labels=frozenset(ident.labels),
        connection=connection,
        session_id=session_id,
        remote_addr=remote,
    )


def _bearer(value: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (RFC 6750 §2.1), else None."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


__all__ = ["AGENT_HEADER", "SESSION_HEADER", "TENANT_HEADER", "Caller", "identify"]
