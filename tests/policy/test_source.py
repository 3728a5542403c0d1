"""The parse stage refuses hostile policy files quickly and with located, stable errors."""

from __future__ import annotations

import tracemalloc

import pytest

from aegis.errors import Diagnostic, ErrorCode
from aegis.policy.source import MAX_DEPTH, MAX_FILE_BYTES, SourceDocument, parse_source

BILLION_LAUGHS = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def error(text: str, file: str = "p.yaml") -> Diagnostic:
    result = parse_source(text, file)
    assert isinstance(result, Diagnostic), result
    return result


def test_yaml_alias_bomb_is_refused_without_expanding() -> None:
    tracemalloc.start()
    try:
        d = error(BILLION_LAUGHS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.code is ErrorCode.POLICY_YAML_ALIAS
    assert (d.line, d.column) == (2, 4)
    assert peak < 5 << 20  # nothing was expanded


def test_merge_keys_and_aliases_are_refused() -> None:
    assert error("a: {x: 1}\nb:\n  <<: {y: 2}\n").code is ErrorCode.POLICY_YAML_ALIAS
    assert error("a: *missing\n").code in (
        ErrorCode.POLICY_YAML_ALIAS,
        ErrorCode.POLICY_YAML_SYNTAX,
    )


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_deep_nesting_is_refused_before_recursion_fails(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    d = error(opener * 10_000 + closer * 10_000)
    assert d.code is ErrorCode.POLICY_TOO_DEEP
    assert error("[" * 10_000 + "]" * 10_000, "p.json").code is ErrorCode.POLICY_TOO_DEEP
    ok = parse_source("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1), "p.yaml")
    assert isinstance(ok, SourceDocument)


def test_oversized_file_is_refused_before_parsing() -> None:
    d = error("#" * (MAX_FILE_BYTES + 1))
    assert d.code is ErrorCode.POLICY_FILE_TOO_LARGE


def test_tags_are_refused() -> None:
    d = error("a: !!python/object/apply:os.system ['id']\n")
    assert d.code is ErrorCode.POLICY_YAML_TAG
    assert error("a: !!binary aGVsbG8=\n").code is ErrorCode.POLICY_YAML_TAG
    assert error("a: !custom x\n").code is ErrorCode.POLICY_YAML_TAG


def test_yaml_12_core_schema_no_norway_problem() -> None:
    doc = parse_source("country: NO\nflag: yes\nt: true\nn: null\noct: 0o17\nf: 1e3\n", "p.yaml")
    assert isinstance(doc, SourceDocument)
    assert doc.data == {
        "country": "NO",
        "flag": "yes",
        "t": True,
        "n": None,
        "oct": 15,
        "f": 1000.0,
    }


def test_duplicate_keys_are_errors_in_yaml_and_json() -> None:
    d = error("a: 1\nb: 2\na: 3\n")
    assert (d.code, d.line, d.column) == (ErrorCode.POLICY_DUPLICATE_KEY, 3, 1)
    assert error('{"a": 1, "a": 2}', "p.json").code is ErrorCode.POLICY_DUPLICATE_KEY


def test_syntax_errors_are_located() -> None:
    d = error("a: [1, 2\nb: 3\n")
    assert d.code is ErrorCode.POLICY_YAML_SYNTAX
    assert d.line >= 2
    j = error('{\n  "a": 1,\n  "b": \n}', "p.json")
    assert (j.code, j.line) == (ErrorCode.POLICY_JSON_SYNTAX, 4)


def test_one_document_per_file() -> None:
    assert error("a: 1\n---\nb: 2\n").code is ErrorCode.POLICY_MULTIPLE_DOCUMENTS
    assert error("").code is ErrorCode.POLICY_EMPTY
    assert error("# only a comment\n").code is ErrorCode.POLICY_EMPTY


def test_json_positions_are_known() -> None:
    doc = parse_source('{\n  "rules": [\n    {"id": "r1"}\n  ]\n}', "p.json")
    assert isinstance(doc, SourceDocument)
    assert doc.locate(("rules", 0, "id")) == (3, 12)
