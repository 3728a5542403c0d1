"""``aegis bundle build``: policy files -> a deterministic OPA-layout bundle archive."""

from __future__ import annotations

import importlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aegis.bundles.archive import write_archive
from aegis.bundles.errors import BundleError, BundleErrorCode
from aegis.bundles.layout import DATA_FILE, REGO_FILE, Manifest, is_bundle_policy_file
from aegis.bundles.signing import MANIFEST_FILE
from aegis.bundles.tenancy import TENANT_ROOT, check_tenant_rules
from aegis.bundles.verify import compile_files, policy_files_hash
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.compiler import named_policy_files

_GIT_TIMEOUT = 5.0


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", *args],  # noqa: S607
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def git_commit(where: Path) -> tuple[str | None, str | None]:
    """(commit, author) of HEAD when ``where`` is inside a git work tree, else Nones."""
    cwd = where if where.is_dir() else where.parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    author = _git(["log", "-1", "--format=%an <%ae>"], cwd) if commit else None
    return commit, author


def _rego(compiled: CompiledPolicy) -> tuple[bytes | None, dict[str, Any]]:
    """policy.rego from aegis.policy.rego when that module exists; else a note why not."""
    try:
        module = importlib.import_module("aegis.policy.rego")
    except ImportError:
        return None, {"included": False, "reason": "aegis.policy.rego is not available"}
    try:
        export = module.export_rego(compiled)
        text = str(export.text)
        unsupported = [str(u) for u in getattr(export, "unsupported", ())]
    except Exception as exc:
        return None, {"included": False, "reason": f"Rego export failed: {exc}"}
    return text.encode("utf-8"), {"included": True, "unsupported": unsupported}


def _check_tenant_subtrees(files: Mapping[str, bytes], *, compile_parts: bool) -> list[str]:
    """Check each ``tenants/<tenant>/`` part (compiled on its own); return the roots."""
    parts: dict[str, dict[str, bytes]] = {}
    for name, body in files.items():
        segments = name.split("/")
        if len(segments) < 3 or segments[0] != TENANT_ROOT:
            raise BundleError(
                BundleErrorCode.POLICY_INVALID,
                f"{name!r} is not under {TENANT_ROOT}/<tenant>/ (a bundle of several "
                "tenants holds nothing else)",
            )
        parts.setdefault(segments[1], {})[name] = body
    if not parts:
        raise BundleError(BundleErrorCode.POLICY_INVALID, "bundle holds no policy files")
    for tenant, part in sorted(parts.items()):
        if compile_parts:
            check_tenant_rules(tenant, compile_files(part))
    return [f"{TENANT_ROOT}/{tenant}" for tenant in sorted(parts)]


def build_bundle(
    paths: Sequence[Path],
    *,
    revision: str | None = None,
    roots: Sequence[str] | None = None,
    data: Mapping[str, Any] | None = None,
    author: str | None = None,
    built_at: datetime | None = None,
    source_commit: str | None = None,
    use_git: bool = True,
    compile_policy: bool = True,
    tenant_subtrees: bool = False,
) -> bytes:
    """Compile ``paths`` (refusing an invalid set) and pack them as a bundle archive.

    The same inputs (including ``built_at``) give the same bytes. ``revision``
    defaults to the git commit, else the first 12 hex digits of the bundle id.

    ``compile_policy=False`` is for a gateway's own sources, whose loader compiles
    the bundle anyway: the files are hashed for the bundle id, not compiled, and
    no ``policy.rego`` is generated -- half the work of a hot reload.

    ``tenant_subtrees``: several tenants in one bundle. Every policy file must lie
    under ``tenants/<tenant>/``; each tenant's files are compiled (and checked to
    be that tenant's) on their own, the roots are ``tenants/<tenant>`` for each,
    and no ``policy.rego`` is generated (one Rego package holds one policy).
    """
    files: dict[str, bytes] = {}
    try:
        for path, name in named_policy_files(paths):
            if not is_bundle_policy_file(name):
                raise BundleError(
                    BundleErrorCode.UNSAFE_PATH,
                    f"policy file name {name!r} is reserved in a bundle",
                )
            files[name] = path.read_bytes()
    except OSError as exc:
        raise BundleError(
            BundleErrorCode.POLICY_INVALID, f"cannot read {exc.filename}: {exc.strerror}"
        ) from None
    if tenant_subtrees:
        # Each part compiled on its own (a gateway source leaves that to its loader).
        roots = _check_tenant_subtrees(files, compile_parts=compile_policy)
        compile_policy = False  # the whole is not one policy
    # From the bytes just read, as load_bundle will read them: a file edited
    # during the build cannot give a manifest that disagrees with its files.
    compiled = compile_files(files) if compile_policy else None
    if use_git and paths and (source_commit is None or author is None):
        commit, git_author = git_commit(paths[0])
        source_commit = source_commit or commit
        author = author or git_author
    if compiled is not None:
        rego_text, rego_note = _rego(compiled)
        if rego_text is not None:
            files[REGO_FILE] = rego_text
        bundle_id, policy_version = compiled.bundle_hash, compiled.version
    else:
        reason = "several tenants' policies" if tenant_subtrees else "built by a gateway source"
        rego_note = {"included": False, "reason": reason}
        bundle_id, policy_version = policy_files_hash(files), None
    when = (built_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    manifest = Manifest(
        revision=revision or source_commit or bundle_id[7:19],
        roots=tuple(roots) if roots else ("",),
        metadata={
            "aegis": {
                "bundle_id": bundle_id,
                "policy_version": policy_version,
                "author": author,
                "built_at": when.isoformat().replace("+00:00", "Z"),
                "source_commit": source_commit,
                "rego": rego_note,
            }
        },
    )
    Manifest.parse(manifest.to_bytes())  # refuse overlapping roots at build time too
    files[MANIFEST_FILE] = manifest.to_bytes()
    files[DATA_FILE] = json.dumps(dict(data or {}), indent=2, sort_keys=True).encode() + b"\n"
    return write_archive(files)
