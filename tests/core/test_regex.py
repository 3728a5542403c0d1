"""RE2 compilation and the fast yes/no test agree with RE2's public search."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.core.regex import MAX_PATTERN_LENGTH, ByteRegex, compile_re2, compile_test
from aegis.errors import ErrorCode, PatternError

PATTERNS = [
    r"^prod-[a-z]+$",
    r"\d{3}-\d{2}",
    r"é+",
    r"^$",
    r"(?i)admin",
    r"a|b|^c",
    r"\bword\b",
    r".",
]


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=200)
@given(text=st.text(alphabet="abcdprod-0123456789éÉ \nwordADMIN", max_size=30))
def test_fast_test_agrees_with_search(pattern: str, text: str) -> None:
    assert compile_test(pattern)(text) == (compile_re2(pattern).search(text) is not None)


def test_errors_have_stable_codes() -> None:
    with pytest.raises(PatternError) as info:
        compile_test(r"(a)\1")
    assert info.value.code is ErrorCode.POLICY_INVALID_REGEX
    with pytest.raises(PatternError) as info:
        compile_re2("a" * (MAX_PATTERN_LENGTH + 1))
    assert info.value.code is ErrorCode.POLICY_REGEX_TOO_LONG


def test_lone_surrogates_do_not_crash() -> None:
    assert compile_test("a")("\ud800a") is True


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=100)
@given(
    text=st.text(alphabet="abcdprod-0123456789éÉ \nwordADMIN", max_size=30), pos=st.integers(0, 5)
)
def test_byte_regex_agrees_with_the_public_api(pattern: str, text: str, pos: int) -> None:
    data = text.encode()
    pos = min(pos, len(data))
    fast = ByteRegex(pattern)
    slow = compile_re2(pattern)
    found = slow.search(data, pos)
    assert fast.search(data, pos) == (None if found is None else (found.start(), found.end()))
    anchored = slow.match(data, pos)
    assert fast.match(data, pos) == (
        None if anchored is None else (anchored.start(), anchored.end())
    )
