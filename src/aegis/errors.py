"""Every error Aegis reports, and its stable code.

Codes are part of the public contract: callers, CI jobs and SIEM rules match on
them, so a code is never renamed or reused once released. Messages may change.

The hierarchy::

    AegisError
    ├── CallError             a ToolCall that cannot be decided (malformed input)
    ├── PolicyLoadError       a policy set that does not compile (carries diagnostics)
    ├── HostPatternError      a host or URL pattern that cannot be used
    └── PatternError          a regular expression RE2 cannot run, or too large

Codes are grouped by prefix:

* ``call.*``      -- the call itself is malformed; never allowed.
* ``policy.*``    -- compile-time errors and warnings about a policy set.
* ``decision.*``  -- why a decision came out as it did (deny reasons, fail modes).
* ``identity.*``  -- the caller's identity is missing, invalid or does not match.
* ``pipeline.*``  -- the core could not decide (timeout, store down, a bug);
  the configured fail mode turns it into a response, and both are recorded.
* ``request.*``   -- a door refused the request before a call existed.
* ``control.*``   -- an operator's control-plane request was refused.
* ``bundle.*``    -- a policy bundle cannot be built, read or trusted.
* ``config.*``    -- the gateway's own configuration file is invalid.
* ``test.*``      -- `aegis policy test` suite problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable machine-readable codes. See docs/errors.md for each one."""

    # -- the call ---------------------------------------------------------------
    CALL_NOT_AN_OBJECT = "call.not_an_object"
    CALL_MISSING_FIELD = "call.missing_field"
    CALL_UNKNOWN_FIELD = "call.unknown_field"
    CALL_INVALID_TYPE = "call.invalid_type"
    CALL_INVALID_VALUE = "call.invalid_value"
    CALL_TOO_DEEP = "call.too_deep"
    CALL_TOO_LARGE = "call.too_large"
    CALL_INVALID_NUMBER = "call.invalid_number"
    CALL_INVALID_JSON = "call.invalid_json"

    # -- policy: parse stage ----------------------------------------------------
    POLICY_IO = "policy.io_error"
    POLICY_FILE_TOO_LARGE = "policy.file_too_large"
    POLICY_YAML_SYNTAX = "policy.yaml_syntax"
    POLICY_JSON_SYNTAX = "policy.json_syntax"
    POLICY_YAML_ALIAS = "policy.yaml_alias"
    POLICY_YAML_TAG = "policy.yaml_tag"
    POLICY_TOO_DEEP = "policy.too_deep"
    POLICY_DUPLICATE_KEY = "policy.duplicate_key"
    POLICY_MULTIPLE_DOCUMENTS = "policy.multiple_documents"
    POLICY_EMPTY = "policy.empty"
    POLICY_NO_FILES = "policy.no_files"

    # -- policy: validate stage -------------------------------------------------
    POLICY_UNKNOWN_FIELD = "policy.unknown_field"
    POLICY_MISSING_FIELD = "policy.missing_field"
    POLICY_INVALID_TYPE = "policy.invalid_type"
    POLICY_INVALID_VALUE = "policy.invalid_value"
    POLICY_UNSUPPORTED_VERSION = "policy.unsupported_version"

    # -- policy: resolve stage --------------------------------------------------
    POLICY_DUPLICATE_ID = "policy.duplicate_id"
    POLICY_INVALID_REGEX = "policy.invalid_regex"
    POLICY_REGEX_TOO_LONG = "policy.regex_too_long"
    POLICY_INVALID_GLOB = "policy.invalid_glob"
    POLICY_INVALID_PATH = "policy.invalid_path"
    POLICY_INVALID_HOST_PATTERN = "policy.invalid_host_pattern"
    POLICY_PUBLIC_SUFFIX_WILDCARD = "policy.public_suffix_wildcard"
    POLICY_INVALID_CIDR = "policy.invalid_cidr"
    POLICY_INVALID_TIME_WINDOW = "policy.invalid_time_window"
    POLICY_INVALID_TIMEZONE = "policy.invalid_timezone"
    POLICY_INVALID_DURATION = "policy.invalid_duration"
    POLICY_WRITE_FAIL_OPEN = "policy.write_fail_open"
    POLICY_UNKNOWN_DETECTOR = "policy.unknown_detector"
    POLICY_MISSING_OBLIGATION = "policy.missing_obligation"
    POLICY_UNEXPECTED_OBLIGATION = "policy.unexpected_obligation"
    POLICY_INVALID_OPERATOR = "policy.invalid_operator"
    POLICY_TOO_MANY_RULES = "policy.too_many_rules"

    # -- policy: check stage (warnings) -----------------------------------------
    POLICY_RULE_NEVER_FIRES = "policy.rule_never_fires"
    POLICY_RULE_UNREACHABLE = "policy.rule_unreachable"
    POLICY_ALWAYS_ALLOW = "policy.always_allow"
    POLICY_DEFAULT_ALLOW = "policy.default_allow"
    POLICY_UNKNOWN_TOOL = "policy.unknown_tool"
    POLICY_UNKNOWN_AGENT = "policy.unknown_agent"

    # -- decisions --------------------------------------------------------------
    DECISION_ALLOWED = "decision.allowed"
    DECISION_SANITIZED = "decision.sanitized"
    DECISION_DENIED_BY_RULE = "decision.denied_by_rule"
    DECISION_DEFAULT_DENY = "decision.default_deny"
    DECISION_APPROVAL_REQUIRED = "decision.approval_required"
    DECISION_DEFAULT_ALLOW = "decision.default_allow"

    DECISION_FAIL_CLOSED = "decision.fail_closed"
    DECISION_FAIL_OPEN = "decision.fail_open"
    DECISION_LIMIT_EXCEEDED = "decision.limit_exceeded"
    DECISION_REVOKED = "decision.revoked"
    DECISION_SUSPENDED = "decision.suspended"
    DECISION_CHAIN_MISMATCH = "decision.chain_mismatch"

    # -- identity (filled by the identity capability) -------------------------
    IDENTITY_MISSING = "identity.missing"
    IDENTITY_INVALID = "identity.invalid"
    IDENTITY_EXPIRED = "identity.expired"
    IDENTITY_MISMATCH = "identity.mismatch"

    # -- the pipeline could not decide (a fail mode turns these into a response) -
    PIPELINE_TIMEOUT = "pipeline.timeout"
    PIPELINE_INTERNAL_ERROR = "pipeline.internal_error"
    PIPELINE_STORE_UNAVAILABLE = "pipeline.store_unavailable"

    # -- the audit log ----------------------------------------------------------
    AUDIT_UNAVAILABLE = "audit.unavailable"
    AUDIT_INVALID_RECORD = "audit.invalid_record"
    AUDIT_CHAIN_BROKEN = "audit.chain_broken"
    AUDIT_BAD_CHECKPOINT = "audit.bad_checkpoint"
    AUDIT_KEY_UNAVAILABLE = "audit.key_unavailable"

    # -- requests at a door, before any call exists ------------------------------
    REQUEST_MALFORMED = "request.malformed"
    REQUEST_INVALID_JSON = "request.invalid_json"
    REQUEST_TOO_LARGE = "request.too_large"
    REQUEST_UNSUPPORTED_MEDIA_TYPE = "request.unsupported_media_type"
    REQUEST_METHOD_NOT_ALLOWED = "request.method_not_allowed"
    REQUEST_NOT_FOUND = "request.not_found"
    REQUEST_INVALID_HEADER = "request.invalid_header"
    REQUEST_AMBIGUOUS_LENGTH = "request.ambiguous_length"
    REQUEST_DESTINATION_REFUSED = "request.destination_refused"
    REQUEST_UPSTREAM_FAILED = "request.upstream_failed"
    REQUEST_TOOL_DEFINITION_CHANGED = "request.tool_definition_changed"

    # -- the control plane (operators: SOC analysts, policy owners, ...) -----------
    CONTROL_UNAUTHENTICATED = "control.unauthenticated"
    CONTROL_FORBIDDEN = "control.forbidden"
    CONTROL_NOT_FOUND = "control.not_found"
    CONTROL_CONFLICT = "control.conflict"
    CONTROL_INVALID = "control.invalid"
    CONTROL_CONFIRMATION_REQUIRED = "control.confirmation_required"

    # -- policy bundles -----------------------------------------------------------
    BUNDLE_TRUNCATED = "bundle.truncated"
    BUNDLE_CORRUPT = "bundle.corrupt"
    BUNDLE_UNSAFE_PATH = "bundle.unsafe_path"
    BUNDLE_LINK = "bundle.link"
    BUNDLE_TOO_LARGE = "bundle.too_large"
    BUNDLE_DUPLICATE_ENTRY = "bundle.duplicate_entry"
    BUNDLE_MISSING_MANIFEST = "bundle.missing_manifest"
    BUNDLE_INVALID_MANIFEST = "bundle.invalid_manifest"
    BUNDLE_UNSIGNED = "bundle.unsigned"
    BUNDLE_BAD_SIGNATURE = "bundle.bad_signature"
    BUNDLE_UNKNOWN_KEY = "bundle.unknown_key"
    BUNDLE_WRONG_SCOPE = "bundle.wrong_scope"
    BUNDLE_FILE_MISMATCH = "bundle.file_mismatch"
    BUNDLE_EXTRA_FILE = "bundle.extra_file"
    BUNDLE_MISSING_FILE = "bundle.missing_file"
    BUNDLE_ROOTS_OVERLAP = "bundle.roots_overlap"
    BUNDLE_POLICY_INVALID = "bundle.policy_invalid"
    BUNDLE_SOURCE_UNAVAILABLE = "bundle.source_unavailable"
    BUNDLE_TENANT_MISMATCH = "bundle.tenant_mismatch"

    # -- rollout (promote / rollback of served bundles) -----------------------------
    ROLLOUT_UNKNOWN_TENANT = "rollout.unknown_tenant"
    ROLLOUT_UNKNOWN_VERSION = "rollout.unknown_version"
    ROLLOUT_INVALID = "rollout.invalid"

    # -- gateway configuration ----------------------------------------------------
    CONFIG_INVALID = "config.invalid"

    # -- policy test suites -----------------------------------------------------
    TEST_INVALID_SUITE = "test.invalid_suite"
    TEST_NO_SUITES = "test.no_suites"


class AegisError(Exception):
    """Base of every error Aegis raises on purpose. Always carries a code."""

    code: ErrorCode

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class CallError(AegisError):
    """The ToolCall is malformed. A malformed call is refused, never allowed."""

    def __init__(self, code: ErrorCode, message: str, path: str = "") -> None:
        super().__init__(code, message)
        self.path = path

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message, "path": self.path}


class HostPatternError(AegisError):
    """A host pattern, URL pattern or CIDR in a policy cannot be used."""


class PatternError(AegisError):
    """A regular expression is not valid RE2, or exceeds the size limit."""


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One compiler finding, located in its source file (1-based line and column)."""

    code: ErrorCode
    message: str
    severity: Severity = Severity.ERROR
    file: str = "<input>"
    line: int = 0
    column: int = 0
    rule_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "code": str(self.code),
            "severity": str(self.severity),
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "rule_id": self.rule_id,
        }

    def __str__(self) -> str:
        if self.line:
            where = f"{self.file}:{self.line}:{self.column}: "
        elif self.file != "<input>":
            where = f"{self.file}: "  # a whole-file problem (unreadable, missing)
        else:
            where = ""
        return f"{where}{self.severity} {self.code}: {self.message}"


class PolicyLoadError(AegisError):
    """A policy set does not compile. ``diagnostics`` holds every error at once."""

    def __init__(self, diagnostics: tuple[Diagnostic, ...]) -> None:
        errors = [d for d in diagnostics if d.severity is Severity.ERROR]
        first = errors[0] if errors else diagnostics[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first.code, f"{first}{more}")
        self.diagnostics = diagnostics
