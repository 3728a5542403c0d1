"""`aegis audit ...`: keygen, verify, export and proof for the signed audit log.

Exit codes (stable for CI jobs and cron):

    0  success: the log verified, the export was written, the proof verified
    1  verification failed: the first bad record (or checkpoint) is printed
    2  usage error (click's own code)
    3  an input could not be used: unreadable key, export file or store

Stores are imported lazily (``aegis.audit.sqlite_store``, ``aegis.audit.postgres_store``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from aegis.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    KeyUnavailableError,
    SigningKey,
    VerifyKey,
    verify_checkpoint,
)
from aegis.audit.export import ExportError, export_store, iter_jsonl, parse_time, read_export
from aegis.audit.merkle import MerkleTree, ProofError, leaf_hash, verify_inclusion
from aegis.audit.verify import LogVerifier, VerifyReport, parse_record, verify_log
from aegis.errors import AegisError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 3

_T = TypeVar("_T")

_json_flag = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _console(err: bool = False) -> Console:
    return Console(stderr=err, highlight=False, soft_wrap=True)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _fail_input(message: str, as_json: bool = False, code: str | None = None) -> None:
    if as_json:
        _emit_json({"ok": False, "code": code, "error": message})
    else:
        _console(err=True).print(f"[red]error[/red] {escape(message)}")
    raise SystemExit(EXIT_INPUT)


def _sources(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--input", "input_path", type=click.Path(path_type=Path), help="An export (JSONL)."
            ),
            click.option(
                "--sqlite", "sqlite_path", type=click.Path(path_type=Path), help="A SQLite store."
            ),
            click.option("--postgres", "postgres_dsn", help="A PostgreSQL store DSN."),
        ]
    ):
        func = option(func)
    return func


def _one_source(input_path: Path | None, sqlite: Path | None, dsn: str | None) -> None:
    if sum(x is not None for x in (input_path, sqlite, dsn)) != 1:
        raise click.UsageError("give exactly one of --input, --sqlite, --postgres")


def _open_store(sqlite: Path | None, dsn: str | None) -> Any:
    """The store, imported lazily; AegisError-free errors become exit 3."""
    if sqlite is not None:
        if not sqlite.exists():
            raise FileNotFoundError(f"no such SQLite store: {sqlite}")
        module = importlib.import_module("aegis.audit.sqlite_store")
        return module.SqliteAuditStore(sqlite)
    module = importlib.import_module("aegis.audit.postgres_store")
    return module.PostgresAuditStore(dsn)


def _with_store(
    sqlite: Path | None, dsn: str | None, work: Callable[[Any], Coroutine[Any, Any, _T]]
) -> _T:
    async def run() -> _T:
        store = _open_store(sqlite, dsn)
        opened = getattr(store, "open", None)
        if opened is not None:
            await opened()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _load_keys(paths: tuple[Path, ...]) -> dict[str, VerifyKey]:
    keys: dict[str, VerifyKey] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyUnavailableError(f"cannot read {path}: {exc.strerror}") from None
        key = VerifyKey.from_pem(data)
        keys[key.kid] = key
    return keys


@click.group("audit")
def audit_group() -> None:
    """Keys, verification, export and proofs for the signed audit log."""


# -- keygen ------------------------------------------------------------------------------


@audit_group.command("keygen")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="key.pem")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@_json_flag
def keygen_cmd(out: Path, force: bool, as_json: bool) -> None:
    """Create an Ed25519 checkpoint key: OUT (private, 0600) and OUT's .pub.pem."""
    key = SigningKey.generate()
    public = out.with_name(out.name.removesuffix(".pem") + ".pub.pem")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(out, flags, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.to_pem())
        os.chmod(out, 0o600)
        public.write_bytes(key.public_pem())
    except OSError as exc:
        _fail_input(f"cannot write {exc.filename}: {exc.strerror}", as_json)
    if as_json:
        _emit_json({"kid": key.kid, "private_key": str(out), "public_key": str(public)})
    else:
        _console().print(f"wrote {out} (0600) and {public}\nkid {key.kid}")


# -- verify ------------------------------------------------------------------------------


def _verify_file(path: Path, keys: dict[str, VerifyKey]) -> VerifyReport:
    """Two passes: checkpoints and header first, then the records streamed."""
    header: dict[str, Any] | None = None
    checkpoints: list[dict[str, Any]] = []
    for kind, value in iter_jsonl(path):
        if kind == "export":
            header = value
        elif kind == "checkpoint":
            checkpoints.append(value)
    if header and header.get("filtered"):
        contents = read_export(path)
        return verify_log(
            contents.records, checkpoints, keys, complete=False, proofs=contents.proofs
        )
    verifier = LogVerifier(checkpoints, keys)
    for kind, value in iter_jsonl(path):
        if kind == "record" and not verifier.feed(value):
            break
    return verifier.finish()


@audit_group.command("verify")
@_sources
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="PEM public key (repeat for rotated keys).",
)
@_json_flag
def verify_cmd(
    *,
    input_path: Path | None,
    sqlite_path: Path | None,
    postgres_dsn: str | None,
    public_keys: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Verify the chain, the Merkle roots and the checkpoint signatures, offline."""
    _one_source(input_path, sqlite_path, postgres_dsn)
    try:
        keys = _load_keys(public_keys)
        if input_path is not None:
            report = _verify_file(input_path, keys)
        else:
            from aegis.audit.verify import verify_store  # noqa: PLC0415

            report = _with_store(sqlite_path, postgres_dsn, lambda s: verify_store(s, keys))
    except AegisError as exc:
        _fail_input(exc.message, as_json, str(exc.code))
        return
    except (OSError, ImportError, ValueError) as exc:
        _fail_input(str(exc), as_json)
        return
    if as_json:
        _emit_json(report.to_dict())
    elif report.ok:
        root = f", root {report.root_hash}" if report.root_hash else ""
        _console().print(
            f"[green]ok[/green] {escape(report.message)}; "
            f"{report.checkpoints_checked} checkpoints{root}"
        )
    else:
        where = (
            f"first bad record: {report.first_bad_seq}: "
            if report.first_bad_seq is not None
            else ""
        )
        _console().print(
            f"[red]FAILED[/red] [bold]{report.code}[/bold] {where}{escape(report.message)}"
        )
    raise SystemExit(EXIT_OK if report.ok else EXIT_FAILED)


# -- export ------------------------------------------------------------------------------


@audit_group.command("export")
@click.option("--sqlite", "sqlite_path", type=click.Path(path_type=Path), help="A SQLite store.")
@click.option("--postgres", "postgres_dsn", help="A PostgreSQL store DSN.")
@click.option("--tenant", default=None)
@click.option("--agent", "agent_id", default=None)
@click.option("--since", default=None, help="ISO 8601 time, inclusive.")
@click.option("--until", default=None, help="ISO 8601 time, exclusive.")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path))
@_json_flag
def export_cmd(
    *,
    sqlite_path: Path | None,
    postgres_dsn: str | None,
    tenant: str | None,
    agent_id: str | None,
    since: str | None,
    until: str | None,
    output: Path,
    as_json: bool,
) -> None:
    """Write the log (or the matching records, with inclusion proofs) as JSON Lines."""
    _one_source(None, sqlite_path, postgres_dsn)
    for name, value in (("--since", since), ("--until", until)):
        try:
            parse_time(value)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not an ISO 8601 time", param_hint=name
            ) from None
    tmp = output.with_name(output.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            count = _with_store(
                sqlite_path,
                postgres_dsn,
                lambda s: export_store(
                    s, out, tenant=tenant, agent_id=agent_id, since=since, until=until
                ),
            )
        tmp.replace(output)
    except (AegisError, OSError, ImportError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        _fail_input(getattr(exc, "message", str(exc)), as_json)
        return
    if as_json:
        _emit_json({"records": count, "output": str(output)})
    else:
        _console().print(f"wrote {count} records to {output}")


# -- proof -------------------------------------------------------------------------------


async def _store_leaves(store: Any) -> tuple[list[bytes], list[dict[str, Any]]]:
    leaves = [leaf_hash(r.leaf_bytes()) async for r in store.records()]
    return leaves, await store.checkpoints()


def _file_leaves(path: Path) -> tuple[list[bytes], list[dict[str, Any]]]:
    contents = read_export(path)
    if contents.filtered:
        raise ExportError(
            "a filtered export has no full log: prove from the store or a full export"
        )
    leaves = [leaf_hash(parse_record(r, i).leaf_bytes()) for i, r in enumerate(contents.records)]
    return leaves, contents.checkpoints


@audit_group.command("proof")
@_sources
@click.option("--seq", required=True, type=click.IntRange(min=0))
@click.option(
    "--tree-size", type=click.IntRange(min=1), default=None, help="Default: latest checkpoint."
)
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(path_type=Path))
@_json_flag
def proof_cmd(
    *,
    input_path: Path | None,
    sqlite_path: Path | None,
    postgres_dsn: str | None,
    seq: int,
    tree_size: int | None,
    public_keys: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Print (and verify) the RFC 6962 inclusion proof of record SEQ."""
    _one_source(input_path, sqlite_path, postgres_dsn)
    try:
        keys = _load_keys(public_keys)
        if input_path is not None:
            leaves, raw_cps = _file_leaves(input_path)
        else:
            leaves, raw_cps = _with_store(sqlite_path, postgres_dsn, _store_leaves)
        cps = [Checkpoint.from_dict(c) for c in raw_cps]
    except AegisError as exc:
        _fail_input(exc.message, as_json, str(exc.code))
        return
    except (OSError, ImportError, ValueError) as exc:
        _fail_input(str(exc), as_json)
        return
    if tree_size is None:
        covering = [c.tree_size for c in cps if seq < c.tree_size <= len(leaves)]
        tree_size = max(covering) if covering else len(leaves)
    if not seq < tree_size <= len(leaves):
        _fail_input(
            f"no record {seq} in a tree of size {tree_size} ({len(leaves)} records)", as_json
        )
    tree = MerkleTree(leaves)
    proof = tree.inclusion_proof(seq, tree_size)
    root = tree.subtree(0, tree_size)
    problems: list[str] = []
    try:
        verify_inclusion(leaves[seq], seq, tree_size, proof, root)
    except ProofError as exc:
        problems.append(str(exc))
    signed = [c for c in cps if c.tree_size == tree_size]
    for cp in signed:
        if cp.root_bytes() != root:
            problems.append(f"checkpoint at size {tree_size} signs another root {cp.root_hash}")
        if keys:
            try:
                verify_checkpoint(cp, keys)
            except CheckpointError as exc:
                problems.append(exc.message)
    proof_hex = [h.hex() for h in proof]
    result = {
        "ok": not problems,
        "seq": seq,
        "leaf_index": seq,
        "leaf_hash": leaves[seq].hex(),
        "tree_size": tree_size,
        "root_hash": root.hex(),
        "proof": proof_hex,
        "checkpoint": signed[0].to_dict() if signed else None,
        "signature_checked": bool(signed and keys),
        "problems": problems,
    }
    if as_json:
        _emit_json(result)
    else:
        console = _console()
        console.print(f"leaf hash  {result['leaf_hash']}\nleaf index {seq}\ntree size  {tree_size}")
        console.print(f"root       {result['root_hash']}")
        for i, h in enumerate(proof_hex):
            console.print(f"proof[{i}]   {h}")
        note = "signed checkpoint" if signed else "no checkpoint at this size"
        verdict = (
            "[green]verified[/green]"
            if not problems
            else "[red]FAILED[/red] " + escape("; ".join(problems))
        )
        console.print(f"{verdict} ({note})")
    raise SystemExit(EXIT_OK if not problems else EXIT_FAILED)
