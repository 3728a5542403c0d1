"""Stable codes for bundle errors (``bundle.*``). See docs/bundles.md for each one."""

from __future__ import annotations

from aegis.errors import AegisError, Diagnostic, ErrorCode


class BundleErrorCode:
    """The ``bundle.*`` members of :class:`aegis.errors.ErrorCode`, by their short
    names (``BundleErrorCode.TRUNCATED is ErrorCode.BUNDLE_TRUNCATED``)."""

    TRUNCATED = ErrorCode.BUNDLE_TRUNCATED
    CORRUPT = ErrorCode.BUNDLE_CORRUPT
    UNSAFE_PATH = ErrorCode.BUNDLE_UNSAFE_PATH
    LINK = ErrorCode.BUNDLE_LINK
    TOO_LARGE = ErrorCode.BUNDLE_TOO_LARGE
    DUPLICATE_ENTRY = ErrorCode.BUNDLE_DUPLICATE_ENTRY
    MISSING_MANIFEST = ErrorCode.BUNDLE_MISSING_MANIFEST
    INVALID_MANIFEST = ErrorCode.BUNDLE_INVALID_MANIFEST
    UNSIGNED = ErrorCode.BUNDLE_UNSIGNED
    BAD_SIGNATURE = ErrorCode.BUNDLE_BAD_SIGNATURE
    UNKNOWN_KEY = ErrorCode.BUNDLE_UNKNOWN_KEY
    WRONG_SCOPE = ErrorCode.BUNDLE_WRONG_SCOPE
    FILE_MISMATCH = ErrorCode.BUNDLE_FILE_MISMATCH
    EXTRA_FILE = ErrorCode.BUNDLE_EXTRA_FILE
    MISSING_FILE = ErrorCode.BUNDLE_MISSING_FILE
    ROOTS_OVERLAP = ErrorCode.BUNDLE_ROOTS_OVERLAP
    POLICY_INVALID = ErrorCode.BUNDLE_POLICY_INVALID
    SOURCE_UNAVAILABLE = ErrorCode.BUNDLE_SOURCE_UNAVAILABLE
    TENANT_MISMATCH = ErrorCode.BUNDLE_TENANT_MISMATCH


class BundleError(AegisError):
    """A bundle cannot be built, signed, read or trusted.

    ``code`` (and ``bundle_code``) is one of the ``bundle.*`` ErrorCode members;
    ``diagnostics`` holds the compiler's findings for ``bundle.policy_invalid``.
    """

    def __init__(
        self, code: ErrorCode, message: str, diagnostics: tuple[Diagnostic, ...] = ()
    ) -> None:
        super().__init__(code, message)
        self.bundle_code = code
        self.diagnostics = diagnostics
