"""Param paths: the syntax policies use to address values, and its rendering."""

from __future__ import annotations

import pytest

from aegis.core.paths import MISSING, PathSyntaxError, expand, lookup, parse_path, render


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("amount", ("amount",)),
        ("customer.email", ("customer", "email")),
        ("items[0].sku", ("items", 0, "sku")),
        ("messages[*].text", ("messages", "*", "text")),
        ('headers["x-api.key"]', ("headers", "x-api.key")),
        ("a.*.b", ("a", "*", "b")),
    ],
)
def test_parse_and_render(text: str, segments: tuple[object, ...]) -> None:
    path = parse_path(text)
    assert path.segments == segments
    assert parse_path(render(path.segments)).segments == segments


@pytest.mark.parametrize("text", ["", ".a", "a.", "a..b", "a[", "a[x]", "a b", "a[0]b", "é"])
def test_bad_paths(text: str) -> None:
    with pytest.raises(PathSyntaxError):
        parse_path(text)


def test_lookup() -> None:
    params = {"a": {"b": [10, {"c": None}]}, "0": "zero"}
    assert lookup(params, ("a", "b", 0)) == 10
    assert lookup(params, ("a", "b", 1, "c")) is None
    assert lookup(params, ("a", "b", 2)) is MISSING
    assert lookup(params, ("a", "x")) is MISSING
    assert lookup(params, ("a", "b", 0, "deeper")) is MISSING
    assert lookup(params, (0,)) == "zero"


def test_expand_wildcards() -> None:
    params = {"m": [{"t": "x"}, {"t": "y"}, {"u": 1}]}
    assert list(expand(params, ("m", "*", "t"))) == [(("m", 0, "t"), "x"), (("m", 1, "t"), "y")]
