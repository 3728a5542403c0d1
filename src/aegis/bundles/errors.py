"""Stable codes for bundle errors (``bundle.*``). See docs/bundles.md for each one."""

from __future__ import annotations

from enum import StrEnum
from typing import cast

from aegis.errors import AegisError, Diagnostic, ErrorCode


class BundleErrorCode(StrEnum):
    """Stable machine-readable codes; never renamed or reused once released."""

    TRUNCATED = "bundle.truncated"
    CORRUPT = "bundle.corrupt"
    UNSAFE_PATH = "bundle.unsafe_path"
    LINK = "bundle.link"
    TOO_LARGE = "bundle.too_large"
    DUPLICATE_ENTRY = "bundle.duplicate_entry"
    MISSING_MANIFEST = "bundle.missing_manifest"
    INVALID_MANIFEST = "bundle.invalid_manifest"
    UNSIGNED = "bundle.unsigned"
    BAD_SIGNATURE = "bundle.bad_signature"
    UNKNOWN_KEY = "bundle.unknown_key"
    WRONG_SCOPE = "bundle.wrong_scope"
    FILE_MISMATCH = "bundle.file_mismatch"
    EXTRA_FILE = "bundle.extra_file"
    MISSING_FILE = "bundle.missing_file"
    ROOTS_OVERLAP = "bundle.roots_overlap"
    POLICY_INVALID = "bundle.policy_invalid"


class BundleError(AegisError):
    """A bundle cannot be built, signed, read or trusted.

    ``code`` (and ``bundle_code``, precisely typed) is a :class:`BundleErrorCode`;
    ``diagnostics`` holds the compiler's findings for ``bundle.policy_invalid``.
    """

    def __init__(
        self, code: BundleErrorCode, message: str, diagnostics: tuple[Diagnostic, ...] = ()
    ) -> None:
        # AegisError types ``code`` as ErrorCode; both are StrEnums of stable strings.
        super().__init__(cast(ErrorCode, code), message)
        self.bundle_code = code
        self.diagnostics = diagnostics
