"""`aegis agents ...`, `aegis tokens ...`, `aegis kill`: a client of the control-plane API.

The commands talk to a running gateway's ``/v1/control`` API (``control.enabled``)
with an operator's bearer token. Rich output for people, ``--json`` for machines.

Exit codes (documented in docs/cli.md):

    0  success
    1  the server refused: the error code is printed (control.forbidden, ...)
    2  usage error (bad flags or arguments; click's own code)
    3  unusable input (a blank reason, a missing --confirm) or the server is
       unreachable or did not answer in the contract's JSON
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import click
import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_INPUT = 3

DEFAULT_SERVER = "http://127.0.0.1:8181"
TOKEN_ENV = "AEGIS_CONTROL_TOKEN"  # noqa: S105 - a variable name, not a secret
PREFIX = "/v1/control"

_F = TypeVar("_F", bound=Callable[..., Any])


def _console(err: bool = False) -> Console:
    return Console(stderr=err, highlight=False, soft_wrap=True)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    _console(err=True).print(f"[red]error[/red] {escape(message)}")
    sys.exit(code)


class _RefusedError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ControlClient:
    """A small synchronous client for the control-plane HTTP API."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=server.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The decoded JSON answer; raises _RefusedError for an error answer, or
        httpx.HTTPError / ValueError when the server cannot be used."""
        response = self._http.request(method, PREFIX + path, json=body)
        try:
            data = response.json()
        except ValueError:
            if response.is_success:
                raise ValueError(f"HTTP {response.status_code}: the answer is not JSON") from None
            raise _RefusedError(response.status_code, f"http.{response.status_code}", "") from None
        if response.is_success:
            return data
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code") or f"http.{response.status_code}")
            raise _RefusedError(response.status_code, code, str(error.get("message") or ""))
        raise _RefusedError(response.status_code, f"http.{response.status_code}", "")


def _seg(value: str) -> str:
    return quote(value, safe="")


def _call(ctx: click.Context, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the server; exit 1 when it refuses, 3 when it cannot be used."""
    opts: dict[str, Any] = ctx.find_root().meta.get("aegis.control", {})
    client = ControlClient(opts.get("server", DEFAULT_SERVER), opts.get("operator_token"))
    try:
        return client.request(method, path, body)
    except _RefusedError as exc:
        if opts.get("as_json"):
            _emit_json({"error": {"status": exc.status, "code": exc.code, "message": exc.message}})
        else:
            _console(err=True).print(
                f"[red]refused[/red] [bold]{escape(exc.code)}[/bold] {escape(exc.message)}"
            )
        sys.exit(EXIT_REFUSED)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {opts.get('server', DEFAULT_SERVER)}: {exc}")
    except ValueError as exc:
        _fail(f"unusable answer from the server: {exc}")
    finally:
        client.close()


def _connection(fn: _F) -> _F:
    """--server, --token and --json on every command."""

    def remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        ctx.find_root().meta.setdefault("aegis.control", {})[param.name or ""] = value
        return value

    fn = click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=remember,
        help="Machine-readable output.",
    )(fn)
    fn = click.option(
        "--token",
        "operator_token",
        envvar=TOKEN_ENV,
        show_envvar=True,
        expose_value=False,
        callback=remember,
        help="The operator's bearer token.",
    )(fn)
    return click.option(
        "--server",
        "server",
        default=DEFAULT_SERVER,
        show_default=True,
        expose_value=False,
        callback=remember,
        help="The gateway's API listener.",
    )(fn)


def _as_json(ctx: click.Context) -> bool:
    return bool(ctx.find_root().meta.get("aegis.control", {}).get("as_json"))


_tenant = click.option("--tenant", required=True, help="The tenant the command acts in.")


def _reason(value: str | None) -> str:
    if value is None or not value.strip():
        _fail("a non-blank --reason is required")
    return value


def _print_record(data: Any, title: str | None = None) -> None:
    console = _console()
    if title:
        console.print(f"[bold]{escape(title)}[/bold]")
    if isinstance(data, dict):
        for key, value in data.items():
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            console.print(f"  {escape(str(key))}: {escape(str(shown))}")
    else:
        console.print(escape(json.dumps(data, default=str)))


def _items(data: Any, key: str) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get(key), list):
        items: list[Any] = data[key]
        return items
    return []


# -- aegis agents ----------------------------------------------------------------------------
@click.group("agents")
def agents_group() -> None:
    """Register, list, show, suspend and resume agents (control-plane API)."""


@agents_group.command("register")
@click.argument("agent_id")
@click.option("--owner", required=True, help="Who answers for the agent.")
@click.option("--label", "labels", multiple=True, help="A label (repeatable).")
@click.option("--scope", "scopes", multiple=True, help="A scope it may be granted (repeatable).")
@click.option("--may-spawn", "may_spawn", multiple=True, help="An agent it may spawn.")
@_tenant
@_connection
@click.pass_context
def register_cmd(
    ctx: click.Context,
    *,
    agent_id: str,
    owner: str,
    labels: tuple[str, ...],
    scopes: tuple[str, ...],
    may_spawn: tuple[str, ...],
    tenant: str,
) -> None:
    """Register an agent in a tenant."""
    body = {
        "agent_id": agent_id,
        "owner": owner,
        "labels": list(labels),
        "scopes": list(scopes),
        "may_spawn": list(may_spawn),
    }
    data = _call(ctx, "POST", f"/tenants/{_seg(tenant)}/agents", body)
    if _as_json(ctx):
        _emit_json(data)
    else:
        _print_record(_agent(data), f"registered {agent_id} in {tenant}")


def _agent(data: Any) -> Any:
    if isinstance(data, dict) and isinstance(data.get("agent"), dict):
        return data["agent"]
    return data


@agents_group.command("list")
@_tenant
@_connection
@click.pass_context
def list_cmd(ctx: click.Context, tenant: str) -> None:
    """List a tenant's agents."""
    data = _call(ctx, "GET", f"/tenants/{_seg(tenant)}/agents")
    if _as_json(ctx):
        _emit_json(data)
        return
    table = Table("agent", "owner", "status", "scopes", "may spawn")
    for agent in _items(data, "agents"):
        if not isinstance(agent, dict):
            continue
        table.add_row(
            escape(str(agent.get("agent_id", ""))),
            escape(str(agent.get("owner", ""))),
            escape(str(agent.get("status", ""))),
            escape(", ".join(str(s) for s in agent.get("scopes") or ())),
            escape(", ".join(str(s) for s in agent.get("may_spawn") or ())),
        )
    _console().print(table)


@agents_group.command("show")
@click.argument("agent_id")
@_tenant
@_connection
@click.pass_context
def show_cmd(ctx: click.Context, agent_id: str, tenant: str) -> None:
    """Show one agent."""
    data = _call(ctx, "GET", f"/tenants/{_seg(tenant)}/agents/{_seg(agent_id)}")
    if _as_json(ctx):
        _emit_json(data)
    else:
        _print_record(_agent(data), agent_id)


@agents_group.command("suspend")
@click.argument("agent_id")
@click.option("--reason", help="Why (recorded).")
@click.option("--cascade", is_flag=True, help="Suspend the agents it spawned too.")
@_tenant
@_connection
@click.pass_context
def suspend_cmd(
    ctx: click.Context, *, agent_id: str, reason: str | None, cascade: bool, tenant: str
) -> None:
    """Suspend an agent: its calls are refused until it is resumed."""
    body = {"reason": _reason(reason), "cascade": cascade}
    path = f"/tenants/{_seg(tenant)}/agents/{_seg(agent_id)}/suspend"
    _done(ctx, _call(ctx, "POST", path, body), f"suspended {agent_id}")


@agents_group.command("resume")
@click.argument("agent_id")
@click.option("--reason", help="Why (recorded).")
@_tenant
@_connection
@click.pass_context
def resume_cmd(ctx: click.Context, agent_id: str, reason: str | None, tenant: str) -> None:
    """Resume a suspended agent."""
    body = {"reason": _reason(reason)}
    path = f"/tenants/{_seg(tenant)}/agents/{_seg(agent_id)}/resume"
    _done(ctx, _call(ctx, "POST", path, body), f"resumed {agent_id}")


def _done(ctx: click.Context, data: Any, title: str) -> None:
    if _as_json(ctx):
        _emit_json(data)
    else:
        _print_record(data, title)


# -- aegis tokens ----------------------------------------------------------------------------
@click.group("tokens")
def tokens_group() -> None:
    """Mint, revoke and inspect agent tokens (control-plane API)."""


@tokens_group.command("mint")
@click.option("--agent", "agent_id", required=True, help="The agent the token is for.")
@click.option("--scope", "scopes", multiple=True, help="A scope (repeatable).")
@click.option("--session", "session_id", help="The session the token is bound to.")
@click.option("--lifetime", type=click.IntRange(min=1), help="Lifetime in seconds.")
@_tenant
@_connection
@click.pass_context
def mint_cmd(
    ctx: click.Context,
    *,
    agent_id: str,
    scopes: tuple[str, ...],
    session_id: str | None,
    lifetime: int | None,
    tenant: str,
) -> None:
    """Mint an agent token. The token alone goes to stdout; its claims to stderr."""
    body: dict[str, Any] = {"scopes": list(scopes)}
    if session_id is not None:
        body["session_id"] = session_id
    if lifetime is not None:
        body["lifetime_seconds"] = lifetime
    path = f"/tenants/{_seg(tenant)}/agents/{_seg(agent_id)}/tokens"
    data = _call(ctx, "POST", path, body)
    if _as_json(ctx):
        _emit_json(data)
        return
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        _fail("unusable answer from the server: no token")
    click.echo(data["token"])
    claims = data.get("claims")
    if isinstance(claims, dict):
        err = _console(err=True)
        for key, value in claims.items():
            err.print(f"  {escape(str(key))}: {escape(json.dumps(value, default=str))}")


@tokens_group.command("exchange")
@click.option(
    "--parent-token",
    "parent_token",
    required=True,
    help="The parent agent's token (the operator's goes in --token).",
)
@click.option("--child", "child_agent_id", required=True, help="The agent to delegate to.")
@click.option("--scope", "scopes", multiple=True, help="A scope, only narrowing (repeatable).")
@_tenant
@_connection
@click.pass_context
def exchange_cmd(
    ctx: click.Context,
    *,
    parent_token: str,
    child_agent_id: str,
    scopes: tuple[str, ...],
    tenant: str,
) -> None:
    """Delegate: a parent agent's token -> a token for a child it may spawn.

    The child's token alone goes to stdout; its claims to stderr."""
    body = {"token": parent_token, "child_agent_id": child_agent_id, "scopes": list(scopes)}
    data = _call(ctx, "POST", f"/tenants/{_seg(tenant)}/tokens/exchange", body)
    if _as_json(ctx):
        _emit_json(data)
        return
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        _fail("unusable answer from the server: no token")
    click.echo(data["token"])
    claims = data.get("claims")
    if isinstance(claims, dict):
        err = _console(err=True)
        for key, value in claims.items():
            err.print(f"  {escape(str(key))}: {escape(json.dumps(value, default=str))}")


@tokens_group.command("revoke")
@click.argument("jti")
@click.option("--reason", help="Why (recorded).")
@_tenant
@_connection
@click.pass_context
def revoke_cmd(ctx: click.Context, jti: str, reason: str | None, tenant: str) -> None:
    """Revoke one token by its jti."""
    body = {"kind": "jti", "target": jti, "reason": _reason(reason)}
    data = _call(ctx, "POST", f"/tenants/{_seg(tenant)}/revocations", body)
    _done(ctx, data, f"revoked token {jti}")


@tokens_group.command("inspect")
@click.argument("token")
@_tenant
@_connection
@click.pass_context
def inspect_cmd(ctx: click.Context, token: str, tenant: str) -> None:
    """Verify a token and show its claims (exit 1 when it is not valid)."""
    data = _call(ctx, "POST", f"/tenants/{_seg(tenant)}/tokens/inspect", {"token": token})
    valid = isinstance(data, dict) and data.get("valid") is True
    if _as_json(ctx):
        _emit_json(data)
    elif valid:
        _print_record(data.get("claims") or {}, "valid")
    else:
        reason = data.get("reason") if isinstance(data, dict) else None
        _console(err=True).print(f"[red]not valid[/red] {escape(str(reason or ''))}")
    if not valid:
        sys.exit(EXIT_REFUSED)


# -- aegis kill ------------------------------------------------------------------------------
@click.command("kill")
@click.option("--agent", "agent_id", help="Revoke every token of this agent.")
@click.option("--session", "session_id", help="Revoke every token of this session.")
@click.option("--tenant-wide", is_flag=True, help="Revoke the whole tenant (needs --confirm).")
@click.option("--global", "global_", is_flag=True, help="Revoke everything (needs --confirm).")
@click.option("--cascade", is_flag=True, help="With --agent: the agents it spawned too.")
@click.option("--confirm", is_flag=True, help="Required by --tenant-wide and --global.")
@click.option("--reason", help="Why (recorded; required).")
@click.option("--tenant", help="The tenant (every target but --global).")
@_connection
@click.pass_context
def kill_cmd(
    ctx: click.Context,
    *,
    agent_id: str | None,
    session_id: str | None,
    tenant_wide: bool,
    global_: bool,
    cascade: bool,
    confirm: bool,
    reason: str | None,
    tenant: str | None,
) -> None:
    """The kill switch: revoke an agent, a session, a tenant, or everything."""
    chosen = [agent_id is not None, session_id is not None, tenant_wide, global_]
    if sum(chosen) != 1:
        raise click.UsageError("give exactly one of --agent, --session, --tenant-wide, --global")
    if cascade and agent_id is None:
        raise click.UsageError("--cascade goes with --agent")
    why = _reason(reason)
    if (tenant_wide or global_) and not confirm:
        _fail("--tenant-wide and --global refuse to run without --confirm")
    if global_:
        body: dict[str, Any] = {"kind": "global", "reason": why, "confirm": True}
        _done(ctx, _call(ctx, "POST", "/revocations", body), "revoked everything (global)")
        return
    if not tenant:
        raise click.UsageError("--tenant is required (except with --global)")
    if agent_id is not None:
        body = {"kind": "agent", "target": agent_id, "cascade": cascade, "reason": why}
        title = f"revoked agent {agent_id}"
    elif session_id is not None:
        body = {"kind": "session", "target": session_id, "reason": why}
        title = f"revoked session {session_id}"
    else:
        body = {"kind": "tenant", "target": tenant, "reason": why, "confirm": True}
        title = f"revoked tenant {tenant}"
    _done(ctx, _call(ctx, "POST", f"/tenants/{_seg(tenant)}/revocations", body), title)
