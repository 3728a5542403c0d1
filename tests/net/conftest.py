"""Fixtures for aegis.net: the shared PSL and the external test corpora."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from aegis.net import PublicSuffixList, load_public_suffix_list

#: /work/shared/corpora when the repository is /work/main: data written by others
#: (WPT, the PSL project), read in place rather than copied into this repository.
CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def psl() -> PublicSuffixList:
    return load_public_suffix_list()


@pytest.fixture(scope="session")
def corpus_file() -> Callable[[str], Path]:
    """A function returning the path of a corpus file, or skipping the test when
    it is absent (failing instead under CI=true, where a missing corpus must not
    silently turn a conformance suite green)."""

    def locate(relative: str) -> Path:
        path = CORPORA / relative
        if not path.is_file():
            message = f"external test corpus not found: {path} (expected ../shared/corpora/)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        return path

    return locate
