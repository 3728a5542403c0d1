"""`Detector`: one kind of secret, found by an RE2 pattern and confirmed by a validator.

A pattern proposes candidate spans; an optional validator (a checksum, a table, a
parse) confirms each one. Patterns are compiled only through
:func:`aegis.core.regex.compile_re2`, so every detector -- built-in or written by a
policy author -- runs in time linear in its input.

Scanning works on the UTF-8 bytes of a string: the ``re2`` wrapper re-encodes a
``str`` on every call, which would make a search loop quadratic on a 1 MB value.
Spans are widened to whole characters, so slicing the bytes never splits one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from aegis.core.regex import ByteRegex
from aegis.dlp.names import BUILTIN_DETECTOR_NAMES
from aegis.errors import ErrorCode, PatternError

#: A validator receives the candidate text and says whether it really is a secret.
Validator = Callable[[str], bool]
Span = tuple[int, int]

#: Validator rejections per scanned string after which rejected candidates are no
#: longer re-examined for a shorter or later secret inside them. Bounds the work an
#: adversarial value (a megabyte of near-miss card numbers) can cause.
MAX_REJECTS: Final = 512
#: Longest detector name, as for any policy identifier (aegis.policy.model.Identifier).
MAX_NAME_LENGTH: Final = 128
_NAME_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-/"
)


class DetectorNameError(PatternError, ValueError):
    """A custom detector's name is unusable. A PatternError so that a policy
    compiler reports it like a bad pattern; a ValueError for everyone else."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.POLICY_INVALID_VALUE, message)


@dataclass(frozen=True, slots=True)
class Detector:
    """A named secret detector. Equality is by name and pattern source.

    Build one with :meth:`custom` (a policy author's pattern) or take a built-in
    from :func:`aegis.dlp.builtin_detectors`; the underscored fields are internal.
    """

    name: str
    pattern: str = field(repr=False)
    _regex: ByteRegex = field(repr=False, compare=False)
    _validator: Validator | None = field(default=None, repr=False, compare=False)
    #: Substrings of which at least one must occur for a match to be possible; a
    #: cheap C-speed ``in`` test that skips the regex call for most values.
    _hints: tuple[str, ...] = field(default=(), repr=False, compare=False)
    #: After a rejected candidate, look for a shorter one from the same start and
    #: then resume one character later (True), or resume after it (False).
    _retry: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def custom(cls, name: str, pattern: str) -> Detector:
        """A user-defined detector; every match is a secret (no validator).

        Raises :class:`~aegis.errors.PatternError` when RE2 cannot run ``pattern``
        (backreferences, lookaround), when it is too long, or when it matches the
        empty string (it would redact nothing and is always a mistake). Raises
        :class:`DetectorNameError` (a PatternError and a ValueError) for a bad name
        or one that shadows a built-in detector: a name is what audit records and
        markers report, so it must be unambiguous.
        """
        check_name(name)
        if name in BUILTIN_DETECTOR_NAMES:
            raise DetectorNameError(f"detector name {name!r} is reserved for a built-in detector")
        regex = ByteRegex(pattern)
        if regex.regex.fullmatch("") is not None:
            raise PatternError(
                ErrorCode.POLICY_INVALID_REGEX,
                f"pattern of detector {name!r} matches the empty string",
            )
        return cls(name, pattern, regex)

    def find(self, text: str) -> list[Span]:
        """Validated, non-overlapping ``(start, end)`` character offsets, in order."""
        if not self._may_match(text):
            return []
        data = text.encode("utf-8")
        ascii_only = len(data) == len(text)
        spans = self._scan_utf8(data, ascii_only)
        return spans if ascii_only else _char_spans(data, spans)

    def _may_match(self, text: str) -> bool:
        for hint in self._hints:
            if hint in text:
                return True
        return not self._hints

    def _scan_utf8(self, data: bytes, ascii_only: bool) -> list[Span]:
        """Validated spans as byte offsets into ``data`` (UTF-8), in order."""
        search = self._regex.search
        validate = self._validator
        spans: list[Span] = []
        n = len(data)
        pos = 0
        rejects = 0
        while pos <= n:
            match = search(data, pos)
            if match is None:
                break
            start, end = match
            if not ascii_only:
                start, end = _widen(data, start, end)
            if start == end:  # an empty match redacts nothing; step past it
                pos = _next_char(data, end)
                continue
            if validate is None or validate(data[start:end].decode("utf-8", "replace")):
                spans.append((start, end))
                pos = end
                continue
            rejects += 1
            if not self._retry or rejects > MAX_REJECTS:
                pos = end
                continue
            shorter, rejects = self._shorter(data, start, end, rejects, ascii_only)
            if shorter:
                spans.append((start, shorter))
                pos = shorter
            else:
                pos = _next_char(data, start)
        return spans

    def _shorter(
        self, data: bytes, start: int, end: int, rejects: int, ascii_only: bool
    ) -> tuple[int, int]:
        """The end of the longest valid candidate at ``start`` shorter than ``end``, or 0.

        A greedy pattern can swallow a trailing group ("4111 1111 1111 1111 12") and
        fail the checksum although a valid secret is a prefix of the candidate.
        """
        validate = self._validator
        assert validate is not None
        endpos = end - 1
        while endpos > start and rejects <= MAX_REJECTS:
            match = self._regex.match(data, start, endpos)
            if match is None or match[1] <= start:
                break
            stop = match[1] if ascii_only else _widen(data, start, match[1])[1]
            if validate(data[start:stop].decode("utf-8", "replace")):
                return stop, rejects
            rejects += 1
            endpos = match[1] - 1
        return 0, rejects


def check_name(name: str) -> None:
    """Names follow the policy identifier syntax: they appear verbatim in
    ``[REDACTED:<name>]`` and in audit records, so no spaces and no brackets."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MAX_NAME_LENGTH
        or not name[0].isalnum()
        or not all(c in _NAME_CHARS for c in name)
    ):
        raise DetectorNameError(
            f"bad detector name {name!r}: use 1-{MAX_NAME_LENGTH} ASCII letters, digits "
            "and '_', '.', ':', '-', '/', starting with a letter or digit"
        )


def _is_continuation(byte: int) -> bool:
    return 0x80 <= byte < 0xC0


def _widen(data: bytes, start: int, end: int) -> Span:
    """Grow a byte span to whole UTF-8 characters (a pattern using ``\\C`` can split one)."""
    n = len(data)
    while start > 0 and _is_continuation(data[start]):
        start -= 1
    while end < n and _is_continuation(data[end]):
        end += 1
    return start, end


def _next_char(data: bytes, pos: int) -> int:
    pos += 1
    n = len(data)
    while pos < n and _is_continuation(data[pos]):
        pos += 1
    return pos


def _char_spans(data: bytes, spans: list[Span]) -> list[Span]:
    """Byte spans (on character boundaries, in order) to character offsets, in one pass."""
    out: list[Span] = []
    byte_pos = char_pos = 0
    for start, end in spans:
        char_pos += len(data[byte_pos:start].decode("utf-8"))
        first = char_pos
        char_pos += len(data[start:end].decode("utf-8"))
        out.append((first, char_pos))
        byte_pos = end
    return out
