"""`aegis bundle ...`: build, sign and verify OPA-layout policy bundles.

Exit codes (as for the other commands):

    0  success
    1  the bundle (or its policy) failed: printed with its stable ``bundle.*`` code
    2  usage error (click's own code)
    3  an input could not be used: unreadable key or file, unwritable output
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from aegis.bundles import BundleError, PublicKey, build_bundle, keyring, load_bundle, sign_bundle
from aegis.bundles.tenancy import TENANT_ROOT, check_tenant_bundle
from aegis.identity.keys import SigningKey

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 3


def _err(message: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[red]error[/red] {escape(message)}"
    )


def _input_failure(message: str, as_json: bool = False) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "code": None, "error": message}, indent=2))
    else:
        _err(message)
    sys.exit(EXIT_INPUT)


def _bundle_failure(exc: BundleError, as_json: bool = False) -> None:
    if as_json:
        out: dict[str, Any] = {"ok": False, "code": str(exc.bundle_code), "error": exc.message}
        if exc.diagnostics:
            out["diagnostics"] = [d.to_dict() for d in exc.diagnostics]
        click.echo(json.dumps(out, indent=2))
    else:
        _err(str(exc))
        for diagnostic in exc.diagnostics:
            _err(str(diagnostic))
    sys.exit(EXIT_FAILED)


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        _input_failure(f"cannot write {path}: {exc.strerror}")


def _read(path: Path, what: str, as_json: bool = False) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _input_failure(f"cannot read {what} {path}: {exc.strerror}", as_json)
        raise  # unreachable: _input_failure exits


@click.group("bundle")
def bundle_group() -> None:
    """Build, sign and verify policy bundles (OPA's bundle layout)."""


@bundle_group.command("build")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--revision", help="Manifest revision (default: the git commit or bundle id).")
@click.option("--root", "roots", multiple=True, help="A root the bundle owns (repeatable).")
@click.option("--data", "data_path", type=click.Path(path_type=Path), help="JSON for data.json.")
@click.option("--author", help="Author (default: the git commit's author).")
@click.option(
    "--tenant",
    help="Build a tenant's own bundle: root tenants/<tenant>, and every rule must be "
    "that tenant's (checked now, as the gateway will).",
)
@click.option(
    "--tenants",
    "tenant_subtrees",
    is_flag=True,
    help="Build one bundle of several tenants from a folder of tenants/<tenant>/ "
    "folders: one root each, each part compiled and checked on its own.",
)
def build_cmd(
    *,
    paths: tuple[Path, ...],
    output: Path,
    revision: str | None,
    roots: tuple[str, ...],
    data_path: Path | None,
    author: str | None,
    tenant: str | None,
    tenant_subtrees: bool,
) -> None:
    """Compile policy files or folders into a deterministic bundle archive."""
    if tenant_subtrees and (tenant is not None or roots):
        raise click.UsageError("--tenants sets the roots (tenants/<tenant> each); drop the rest")
    if tenant is not None:
        if roots:
            raise click.UsageError("--tenant sets the root (tenants/<tenant>); drop --root")
        roots = (f"{TENANT_ROOT}/{tenant}",)
    data: Any = None
    if data_path is not None:
        try:
            data = json.loads(_read(data_path, "data file"))
        except ValueError as exc:
            _input_failure(f"{data_path} is not JSON: {exc}")
        if not isinstance(data, dict):
            _input_failure(f"{data_path} must hold a JSON object")
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    built_at = datetime.fromtimestamp(int(epoch), UTC) if epoch and epoch.isdigit() else None
    try:
        bundle = build_bundle(
            list(paths),
            revision=revision,
            roots=list(roots) or None,
            data=data,
            author=author,
            built_at=built_at,
            tenant_subtrees=tenant_subtrees,
        )
        if tenant is not None:
            check_tenant_bundle(tenant, load_bundle(bundle))
    except BundleError as exc:
        _bundle_failure(exc)
    _write(output, bundle)
    click.echo(f"wrote {output} ({len(bundle)} bytes)")


@bundle_group.command("sign")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--key", "key_path", type=click.Path(path_type=Path), required=True)
@click.option("--scope", help="The scope claim to sign (verifiers may require it).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Default: in place.")
def sign_cmd(bundle: Path, key_path: Path, scope: str | None, output: Path | None) -> None:
    """Add an OPA-format .signatures.json (Ed25519 or ES256 PKCS#8 PEM key)."""
    try:
        key = SigningKey.from_pem(_read(key_path, "key"))
    except (ValueError, TypeError) as exc:
        _input_failure(f"cannot use key {key_path}: {exc}")
    data = _read(bundle, "bundle")
    try:
        signed = sign_bundle(data, key, scope=scope)
    except BundleError as exc:
        _bundle_failure(exc)
    target = output or bundle
    _write(target, signed)
    click.echo(f"signed {target} with key {key.kid}")


@bundle_group.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--public-key", "key_paths", type=click.Path(path_type=Path), multiple=True, required=True
)
@click.option("--scope", help="Require this scope claim.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify_cmd(bundle: Path, key_paths: tuple[Path, ...], scope: str | None, as_json: bool) -> None:
    """Verify a bundle's signature and files, and compile its policy."""
    keys: list[PublicKey] = []
    for path in key_paths:
        try:
            keys.append(PublicKey.from_pem(_read(path, "public key", as_json)))
        except (ValueError, TypeError) as exc:
            _input_failure(f"cannot use public key {path}: {exc}", as_json)
    data = _read(bundle, "bundle", as_json)
    try:
        loaded = load_bundle(data, keys=keyring(keys), require_signature=True, scope=scope)
    except BundleError as exc:
        _bundle_failure(exc, as_json)
    sig = loaded.signature
    summary = {
        "ok": True,
        "revision": loaded.manifest.revision,
        "roots": list(loaded.manifest.roots),
        "bundle_id": loaded.manifest.bundle_id,
        "kid": sig.kid if sig else None,
        "scope": sig.scope if sig else None,
        "files": sorted(loaded.files),
        "rules": len(loaded.compiled_policy.rules),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(
            f"ok revision {summary['revision']}, {summary['rules']} rules, "
            f"signed by {summary['kid']}"
        )
    sys.exit(EXIT_OK)
