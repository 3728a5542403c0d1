"""PublicSuffixList beyond the upstream test file: is_public_suffix, forms, loading."""

from __future__ import annotations

import pytest

from aegis.net import PublicSuffixList, load_public_suffix_list


@pytest.mark.parametrize(
    ("domain", "public"),
    [
        ("com", True),
        ("COM", True),
        ("com.", True),
        ("co.uk", True),
        ("uk", True),
        ("github.io", True),  # PRIVATE section
        ("kobe.jp", True),  # implicit root of *.kobe.jp
        ("c.kobe.jp", True),
        ("city.kobe.jp", False),  # exception rule
        ("example", True),  # default rule "*"
        ("公司.cn", True),
        ("xn--55qx5d.cn", True),
        ("example.com", False),
        ("user.github.io", False),
        ("127.0.0.1", False),
        ("[::1]", False),
        ("", False),
        (".com", False),
        ("a..com", False),
        ("a/b.com", False),
    ],
)
def test_is_public_suffix(psl: PublicSuffixList, domain: str, public: bool) -> None:
    assert psl.is_public_suffix(domain) is public


@pytest.mark.parametrize(
    ("domain", "registrable"),
    [
        ("www.example.co.uk", "example.co.uk"),
        ("a.b.user.github.io", "user.github.io"),
        ("WWW.食狮。中国", "食狮.中国"),  # ideographic full stop is a label separator
        ("www.食狮.xn--fiqs8s", "食狮.xn--fiqs8s"),  # each label keeps its own form
        ("ex%61mple.com", "example.com"),
        ("example.com.", "example.com"),
        ("10.0.0.1", None),
        ("0x7f.1", None),
        ("example.com..", None),
        ("", None),
    ],
)
def test_registrable_domain(psl: PublicSuffixList, domain: str, registrable: str | None) -> None:
    assert psl.registrable_domain(domain) == registrable


def test_custom_list() -> None:
    custom = PublicSuffixList("// a private list\ncom\n*.cloud.example\n!www.cloud.example\n")
    assert custom.is_public_suffix("cloud.example")
    assert custom.is_public_suffix("x.cloud.example")
    assert custom.registrable_domain("a.x.cloud.example") == "a.x.cloud.example"
    assert custom.registrable_domain("example.com") == "example.com"
    assert not custom.is_public_suffix("co.uk.com")


def test_loader_is_cached() -> None:
    assert load_public_suffix_list() is load_public_suffix_list()
