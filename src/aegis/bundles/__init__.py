"""Policy bundles in OPA's layout: build, sign, verify and load them (issue 3, core)."""

from __future__ import annotations

from aegis.bundles.archive import (
    MAX_ENTRIES,
    MAX_FILE_BYTES,
    MAX_TOTAL_BYTES,
    read_archive,
    write_archive,
)
from aegis.bundles.build import build_bundle, git_commit
from aegis.bundles.errors import BundleError, BundleErrorCode
from aegis.bundles.layout import Manifest, roots_overlap
from aegis.bundles.signing import (
    MANIFEST_FILE,
    SIGNATURES_FILE,
    PublicKey,
    SignatureInfo,
    file_hash,
    keyring,
    sign_bundle,
    sign_files,
    verify_files,
)
from aegis.bundles.sources import (
    BundleSource,
    BundleSourceError,
    DirectorySource,
    Fetched,
    FileSource,
    HttpSource,
    PolicyPathsSource,
    backoff_delay,
    open_source,
)
from aegis.bundles.verify import LoadedBundle, check_roots, load_bundle

__all__ = [
    "MANIFEST_FILE",
    "MAX_ENTRIES",
    "MAX_FILE_BYTES",
    "MAX_TOTAL_BYTES",
    "SIGNATURES_FILE",
    "BundleError",
    "BundleErrorCode",
    "BundleSource",
    "BundleSourceError",
    "DirectorySource",
    "Fetched",
    "FileSource",
    "HttpSource",
    "LoadedBundle",
    "Manifest",
    "PolicyPathsSource",
    "PublicKey",
    "SignatureInfo",
    "backoff_delay",
    "build_bundle",
    "check_roots",
    "file_hash",
    "git_commit",
    "keyring",
    "load_bundle",
    "open_source",
    "read_archive",
    "roots_overlap",
    "sign_bundle",
    "sign_files",
    "verify_files",
    "write_archive",
]
