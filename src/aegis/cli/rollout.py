"""`aegis policy status|promote|rollback`: policy versions on a running gateway.

Clients of the control-plane API (``/v1/control/policy`` for the shared policy,
``/v1/control/tenants/<t>/policy`` for a tenant's own bundle), with the same
``--server``, ``--token`` and ``--json`` options and exit codes as ``aegis kill``:
0 success, 1 refused by the server (its ``rollout.*`` / ``control.*`` code printed),
2 usage, 3 unusable input or the server unreachable.
"""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from aegis.cli.control import _as_json, _call, _connection, _console, _emit_json, _reason, _seg


def _base(tenant: str | None) -> str:
    return f"/tenants/{_seg(tenant)}/policy" if tenant else "/policy"


def _version(v: Any) -> str:
    if not isinstance(v, dict):
        return "-"
    return f"{v.get('revision')} ({str(v.get('id', ''))[7:19]}, {v.get('policy_version')})"


def _print_slot(slot: dict[str, Any]) -> None:
    console = _console()
    tenant = slot.get("tenant") or "(shared)"
    console.print(f"[bold]{escape(tenant)}[/bold]  source {escape(str(slot.get('source')))}")
    console.print(f"  active     {escape(_version(slot.get('active')))}")
    candidate = slot.get("candidate")
    if isinstance(candidate, dict):
        stage = candidate.get("stage")
        share = (
            f" {candidate.get('percent')}% by {candidate.get('by')}" if stage == "canary" else ""
        )
        console.print(f"  candidate  {escape(_version(candidate))} [{stage}{share}]")
    if slot.get("pinned"):
        console.print("  pinned     yes (rolled back: new versions arrive as shadow candidates)")
    reloads = slot.get("reloads") or {}
    console.print(
        "  reloads    "
        + ", ".join(f"{k} {v}" for k, v in reloads.items())
        + f"; consecutive failures {slot.get('consecutive_failures', 0)}"
        + (
            f"; last load {slot['last_load_seconds']} s"
            if slot.get("last_load_seconds") is not None
            else ""
        )
    )
    error = slot.get("last_error")
    if isinstance(error, dict):
        console.print(
            f"  last error [red]{escape(str(error.get('code')))}[/red] "
            f"{escape(str(error.get('message')))} at {escape(str(error.get('at')))}"
        )
    versions = slot.get("versions") or []
    if versions:
        table = Table("revision", "bundle id", "version", "rules", "loaded at", box=None)
        for v in versions:
            table.add_row(
                str(v.get("revision")),
                str(v.get("id", ""))[7:19],
                str(v.get("policy_version")),
                str(v.get("rules")),
                str(v.get("loaded_at")),
            )
        console.print(table)


def _show(ctx: click.Context, data: Any) -> None:
    if _as_json(ctx):
        _emit_json(data)
        return
    slots = data.get("slots") if isinstance(data, dict) and "slots" in data else [data]
    for slot in slots or []:
        if isinstance(slot, dict):
            _print_slot(slot)


_tenant = click.option(
    "--tenant", default=None, help="A tenant's own bundle; omitted: the shared policy."
)


@click.command("status")
@_tenant
@_connection
@click.pass_context
def status_cmd(ctx: click.Context, tenant: str | None) -> None:
    """Active version, candidate, versions kept and reload counts of a running gateway."""
    _show(ctx, _call(ctx, "GET", _base(tenant)))


@click.command("promote")
@click.option(
    "--stage",
    type=click.Choice(["shadow", "canary", "enforce"]),
    required=True,
    help="shadow: evaluated beside the active version; canary: decides a share; "
    "enforce: becomes the active version.",
)
@click.option("--version", "version", default=None, help="Revision, version or bundle id.")
@click.option("--percent", type=float, default=None, help="Canary share, (0, 100].")
@click.option("--by", type=click.Choice(["agent", "call"]), default="agent", show_default=True)
@click.option("--reason", default=None, help="Why (recorded in the audit log).")
@_tenant
@_connection
@click.pass_context
def promote_cmd(
    ctx: click.Context,
    *,
    stage: str,
    version: str | None,
    percent: float | None,
    by: str,
    reason: str | None,
    tenant: str | None,
) -> None:
    """Move a version forward: the candidate by default, or --version."""
    body: dict[str, Any] = {"stage": stage, "by": by, "reason": _reason(reason)}
    if version is not None:
        body["version"] = version
    if percent is not None:
        body["percent"] = percent
    _show(ctx, _call(ctx, "POST", f"{_base(tenant)}/promote", body))


@click.command("rollback")
@click.option(
    "--to",
    "to",
    default=None,
    help="Revision, version or bundle id; default: the previous active one.",
)
@click.option("--reason", default=None, help="Why (recorded in the audit log).")
@_tenant
@_connection
@click.pass_context
def rollback_cmd(
    ctx: click.Context, to: str | None, reason: str | None, tenant: str | None
) -> None:
    """Make an earlier version active now and pin it (new versions wait in shadow)."""
    body: dict[str, Any] = {"reason": _reason(reason)}
    if to is not None:
        body["to"] = to
    _show(ctx, _call(ctx, "POST", f"{_base(tenant)}/rollback", body))
