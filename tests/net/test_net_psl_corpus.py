"""PublicSuffixList.registrable_domain against the PSL project's own test file.

Each active line is ``checkPublicSuffix(input, expected);`` where either side
may be ``null``; commented-out lines (``//checkPublicSuffix(...)``) are not
checks. The expected value is the registrable domain in the input's form
(Unicode in, Unicode out; punycode in, punycode out).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from aegis.net import PublicSuffixList

_ARG = r"(null|'[^']*')"
_CHECK = re.compile(rf"checkPublicSuffix\({_ARG}, {_ARG}\);")


def _value(token: str) -> str | None:
    return None if token == "null" else token[1:-1]


def _checks(path: Path) -> list[tuple[str | None, str | None]]:
    checks = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line.startswith("checkPublicSuffix("):
            continue  # blank, or a comment (including commented-out checks)
        match = _CHECK.fullmatch(line)
        assert match, f"cannot read test line: {line!r}"
        checks.append((_value(match[1]), _value(match[2])))
    return checks


def test_checkpublicsuffix_corpus(
    corpus_file: Callable[[str], Path], psl: PublicSuffixList
) -> None:
    checks = _checks(corpus_file("psl/test_psl.txt"))
    mismatches = []
    for domain, expected in checks:
        got = None if domain is None else psl.registrable_domain(domain)
        if got != expected:
            mismatches.append(f"{domain!r}: expected {expected!r}, got {got!r}")
    print(f"PSL checks: {len(checks)}, disagreements: {len(mismatches)}")
    assert checks
    assert not mismatches, "\n".join(mismatches)
