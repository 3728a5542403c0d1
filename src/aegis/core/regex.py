"""Regular expressions with RE2 semantics, and nothing else.

Policies come from many authors and run on every call, so a pattern must run in
time linear in its input: RE2 guarantees that (https://github.com/google/re2/wiki/WhyRE2).
A pattern RE2 cannot run (backreferences, lookaround) is a load error, never a
silent fallback to a backtracking engine.
"""

from __future__ import annotations

from typing import Any, Final

import re2

from aegis.errors import ErrorCode, PatternError

#: Longest pattern accepted. Real allowlist/DLP patterns are far shorter; a
#: 10 MB "pattern" is an attack on the loader, refused before RE2 sees it.
MAX_PATTERN_LENGTH: Final = 4096
#: RE2's own memory budget per compiled pattern (RE2::Options::max_mem).
MAX_PATTERN_MEMORY: Final = 8 << 20

Regex = Any  # re2._Regexp has no published type; kept opaque on purpose


def compile_re2(pattern: str, *, ignore_case: bool = False) -> Regex:
    """Compile with RE2 or raise PatternError with a stable code."""
    if not isinstance(pattern, str):
        raise PatternError(ErrorCode.POLICY_INVALID_REGEX, "a pattern must be a string")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(
            ErrorCode.POLICY_REGEX_TOO_LONG,
            f"pattern is {len(pattern)} characters; the limit is {MAX_PATTERN_LENGTH}",
        )
    options = re2.Options()
    options.log_errors = False  # errors are reported to the caller, not stderr
    options.max_mem = MAX_PATTERN_MEMORY
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise PatternError(
            ErrorCode.POLICY_INVALID_REGEX, f"RE2 cannot run this pattern: {detail}"
        ) from None
