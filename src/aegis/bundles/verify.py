"""Loading a bundle: validate the archive, verify its signature, compile its policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aegis.bundles.archive import read_archive
from aegis.bundles.errors import BundleError, BundleErrorCode
from aegis.bundles.layout import Manifest, is_bundle_policy_file, roots_overlap
from aegis.bundles.signing import MANIFEST_FILE, PublicKey, SignatureInfo, verify_files
from aegis.errors import PolicyLoadError
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.compiler import compile_sources, text_hash
from aegis.policy.source import SourceDocument, parse_source


@dataclass(frozen=True, slots=True)
class LoadedBundle:
    manifest: Manifest
    files: Mapping[str, bytes]
    compiled_policy: CompiledPolicy
    signature: SignatureInfo | None = None


def _policy_texts(files: Mapping[str, bytes]) -> list[tuple[str, str]]:
    texts = []
    for name in sorted(files):
        if not is_bundle_policy_file(name):
            continue
        try:
            texts.append((name, files[name].decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise BundleError(
                BundleErrorCode.POLICY_INVALID, f"{name!r} is not valid UTF-8 at byte {exc.start}"
            ) from None
    if not texts:
        raise BundleError(BundleErrorCode.POLICY_INVALID, "bundle holds no policy files")
    return texts


def policy_files_hash(files: Mapping[str, bytes]) -> str:
    """The bundle id of a bundle's policy files without compiling them (it equals
    ``compile_files(files).bundle_hash``)."""
    return text_hash(_policy_texts(files))


def compile_files(files: Mapping[str, bytes]) -> CompiledPolicy:
    """Compile a bundle's policy files (by entry name) into one policy set."""
    parsed = []
    for name, text in _policy_texts(files):
        doc = parse_source(text, name)
        parsed.append(
            dataclasses.replace(doc, name=name) if isinstance(doc, SourceDocument) else doc
        )
    try:
        return compile_sources(parsed)
    except PolicyLoadError as exc:
        raise BundleError(
            BundleErrorCode.POLICY_INVALID,
            f"bundle policy does not compile: {exc}",
            exc.diagnostics,
        ) from None


def load_bundle(
    source: Path | str | bytes,
    *,
    keys: Mapping[str, PublicKey] | None = None,
    require_signature: bool = False,
    scope: str | None = None,
    subtree: str | None = None,
) -> LoadedBundle:
    """Read, check and compile a bundle; BundleError (with a ``bundle.*`` code) on any fault.

    The signature is verified when ``keys`` are given or ``require_signature`` is
    set (requiring a signature without keys refuses every bundle: nothing can
    vouch for it). With neither, a ``.signatures.json`` is carried but not trusted.

    ``subtree`` (e.g. ``tenants/acme``): compile only the policy files under it --
    one tenant's part of a bundle holding several. The signature and the bundle id
    still cover every file: the bundle is one unit of trust.
    """
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise BundleError(
                BundleErrorCode.CORRUPT, f"cannot read bundle: {exc.strerror}"
            ) from None
    files = read_archive(data)
    signature: SignatureInfo | None = None
    if keys is not None or require_signature:
        signature = verify_files(files, keys or {}, scope=scope)
    raw_manifest = files.get(MANIFEST_FILE)
    if raw_manifest is None:
        raise BundleError(BundleErrorCode.MISSING_MANIFEST, "bundle has no .manifest")
    manifest = Manifest.parse(raw_manifest)
    if subtree is None:
        compiled = compile_files(files)
        actual = compiled.bundle_hash
    else:
        prefix = subtree.strip("/") + "/"
        part = {name: body for name, body in files.items() if name.startswith(prefix)}
        if not any(is_bundle_policy_file(name) for name in part):
            raise BundleError(
                BundleErrorCode.POLICY_INVALID, f"bundle holds no policy files under {subtree}"
            )
        compiled = compile_files(part)
        actual = policy_files_hash(files)  # the whole set's id, not the part's
    if manifest.bundle_id is not None and manifest.bundle_id != actual:
        raise BundleError(
            BundleErrorCode.FILE_MISMATCH,
            f"policy files hash to {actual}, the manifest says {manifest.bundle_id}",
        )
    return LoadedBundle(manifest, files, compiled, signature)


def check_roots(manifests_by_tenant: Mapping[str, Manifest]) -> None:
    """Refuse two tenants' bundles whose roots overlap (OPA's rule across bundles)."""
    tenants = sorted(manifests_by_tenant)
    for i, a in enumerate(tenants):
        for b in tenants[i + 1 :]:
            for ra in manifests_by_tenant[a].roots:
                for rb in manifests_by_tenant[b].roots:
                    if roots_overlap(ra, rb):
                        raise BundleError(
                            BundleErrorCode.ROOTS_OVERLAP,
                            f"tenant {a!r} root {ra!r} overlaps tenant {b!r} root {rb!r}",
                        )
