"""Hostile policy files are refused with a stable code, in bounded time and memory.

No timing assertions (the machine is shared): a regression here shows up as a
test that never finishes, which CI's time limit turns into a failure.
"""

from __future__ import annotations

import tracemalloc

import pytest

from aegis.core.call import parse_call
from aegis.errors import ErrorCode, PolicyLoadError
from aegis.policy import compile_text, decide

HEAD = "apiVersion: aegis.dev/v1\nkind: Policy\nmetadata: {name: hostile}\nrules:\n"


def codes(text: str) -> set[str]:
    with pytest.raises(PolicyLoadError) as info:
        compile_text(text, "hostile.yaml")
    return {str(d.code) for d in info.value.diagnostics}


def test_huge_regex_is_refused_before_compiling() -> None:
    tracemalloc.start()
    try:
        found = codes(
            HEAD
            + "  - {id: r, effect: deny, when: [{param: x, matches: '"
            + "a" * 3_000_000
            + "'}]}\n"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == {"policy.regex_too_long"}
    assert peak < 200 << 20


def test_ten_megabyte_file_is_refused_unread() -> None:
    assert codes(HEAD + "# " + "x" * (10 << 20) + "\n") == {"policy.file_too_large"}


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)", r"(?<!a)b", r"a++", r"(?P<n>a)(?P=n)"])
def test_patterns_re2_cannot_run_are_load_errors(pattern: str) -> None:
    assert codes(
        HEAD + f"  - {{id: r, effect: deny, when: [{{param: x, matches: '{pattern}'}}]}}\n"
    ) == {"policy.invalid_regex"}


def test_catastrophic_backtracking_patterns_run_in_linear_time() -> None:
    """(a+)+$ takes 2^n steps on a backtracking engine; RE2 answers at once."""
    policy = compile_text(
        HEAD
        + "  - {id: evil, effect: deny, when: [{param: x, matches: '^(a+)+$'}]}\n"
        + "  - {id: rest, effect: allow}\n"
    )
    call = parse_call(
        {"tenant": "t", "agent_id": "a", "tool": "t", "params": {"x": "a" * 100_000 + "!"}}
    )
    from datetime import UTC, datetime

    assert decide(policy, call, datetime.now(UTC)).outcome == "allow"


def test_many_errors_in_a_large_file_are_all_reported() -> None:
    rules = "".join(
        f"  - {{id: r{i}, effect: deny, when: [{{param: x, matches: '(?=x)'}}]}}\n"
        for i in range(2000)
    )
    with pytest.raises(PolicyLoadError) as info:
        compile_text(HEAD + rules, "many.yaml")
    assert len(info.value.diagnostics) == 2000
    assert {d.code for d in info.value.diagnostics} == {ErrorCode.POLICY_INVALID_REGEX}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("rules: [", "policy.yaml_syntax"),
        (HEAD + "  - {id: r, effect: allow, surprise: 1}\n", "policy.unknown_field"),
        (HEAD + "  - {id: 5, effect: allow}\n", "policy.invalid_type"),
        (HEAD + "  - {id: r, effect: allow, when: {param: x}}\n", "policy.invalid_type"),
        ("[1, 2]\n", "policy.invalid_type"),
        ("- a\n- b\n", "policy.invalid_type"),
        (
            HEAD + "  - {id: r, effect: deny, when: [{param: x, eq: .nan}]}\n",
            "policy.invalid_value",
        ),
    ],
)
def test_wrong_shapes_are_refused_with_stable_codes(text: str, code: str) -> None:
    assert code in codes(text)
