"""Regular expressions with RE2 semantics, and nothing else.

Policies come from many authors and run on every call, so a pattern must run in
time linear in its input: RE2 guarantees that (https://github.com/google/re2/wiki/WhyRE2).
A pattern RE2 cannot run (backreferences, lookaround) is a load error, never a
silent fallback to a backtracking engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def compile_test(pattern: str) -> Callable[[str], bool]:
    """A yes/no "does ``pattern`` match somewhere in the text" test, for hot paths.

    google-re2's Python ``search`` builds a generator, a match object and an
    offset map per call (~2.5 us here); a policy condition only needs RE2's
    yes/no answer, which ``RE2::Match`` gives in a fifth of that. The wrapper's
    compiled object exposes it; if a future release stops doing so, the public
    ``search`` is used instead (tests/core/test_regex.py checks both agree).
    """
    compiled = compile_re2(pattern)
    raw = getattr(compiled, "_regexp", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    match = getattr(raw, "Match", None)
    if match is None or anchor is None:
        search = compiled.search
        return lambda text: search(text) is not None

    def test(text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        return bool(match(anchor, data, 0, len(data))[0][0] != -1)

    return test


class ByteRegex:
    """RE2 over UTF-8 bytes returning plain (start, end) spans: the DLP scanner's view.

    Same reasoning as :func:`compile_test`: RE2's own ``Match`` answers with
    spans directly, where the wrapper's ``search`` allocates a generator and a
    match object per call. Falls back to the public API if that ever goes away.
    """

    __slots__ = ("_anchored", "_match", "_unanchored", "regex")

    def __init__(self, pattern: str) -> None:
        self.regex = compile_re2(pattern)
        anchors = getattr(re2, "_Anchor", None)
        self._match = getattr(getattr(self.regex, "_regexp", None), "Match", None)
        self._unanchored = getattr(anchors, "UNANCHORED", None)
        self._anchored = getattr(anchors, "ANCHOR_START", None)
        if self._unanchored is None or self._anchored is None:
            self._match = None

    def search(
        self, data: bytes, pos: int = 0, endpos: int | None = None
    ) -> tuple[int, int] | None:
        """The first match at or after ``pos``, as byte offsets."""
        end = len(data) if endpos is None else endpos
        if self._match is None:
            found = self.regex.search(data, pos, end)
            return None if found is None else (found.start(), found.end())
        span = self._match(self._unanchored, data, pos, end)[0]
        return None if span[0] == -1 else (span[0], span[1])

    def match(self, data: bytes, pos: int = 0, endpos: int | None = None) -> tuple[int, int] | None:
        """A match starting exactly at ``pos``."""
        end = len(data) if endpos is None else endpos
        if self._match is None:
            found = self.regex.match(data, pos, end)
            return None if found is None else (found.start(), found.end())
        span = self._match(self._anchored, data, pos, end)[0]
        return None if span[0] == -1 else (span[0], span[1])


class PatternSet:
    """Which of several RE2 patterns match somewhere in a text, in one pass (RE2::Set).

    The DLP redactor asks this before running any detector: detectors whose
    pattern matches nowhere are skipped outright, and most strings match none.
    """

    __slots__ = ("_set",)

    def __init__(self, patterns: Sequence[str]) -> None:
        options = re2.Options()
        options.log_errors = False
        options.max_mem = MAX_PATTERN_MEMORY * max(1, len(patterns))
        built = re2.Set.SearchSet(options)
        for pattern in patterns:
            compile_re2(pattern)  # same validation and errors as every other pattern
            built.Add(pattern)
        try:
            built.Compile()  # the wrapper returns None; a failure raises
        except Exception as exc:  # re2 reports a set it cannot build by raising
            raise PatternError(ErrorCode.POLICY_INVALID_REGEX, f"cannot combine: {exc}") from None
        self._set = built

    def matching(self, data: bytes | str) -> list[int]:
        """Indices (in the order given) of the patterns that match somewhere."""
        found = self._set.Match(data)
        return found if found else []
