"""The public surface of aegis.sdk is what is meant, and docs/sdk.md stays true to it."""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path

import pytest

import aegis.sdk
import aegis.sdk.langchain
from aegis.sdk import errors

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "sdk.md").read_text(encoding="utf-8")
_FENCE = re.compile(r"^```([A-Za-z0-9_-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

PUBLIC = {
    # the four ways to reach the core
    "LocalAegis",
    "AsyncLocalAegis",
    "AegisClient",
    "AsyncAegisClient",
    "SyncAegis",
    "AsyncAegis",
    "AnyAegis",
    # guarding tools
    "guard",
    "aegis_context",
    "current_context",
    "CallerContext",
    "CallSpec",
    # errors and decisions
    "AegisSDKError",
    "PolicyViolation",
    "ApprovalRequired",
    "RateLimited",
    "AegisUnavailable",
    "AegisTimeout",
    "ProtocolError",
    "AegisRequestError",
    "InvalidCall",
    "raise_for_decision",
    "violation_for",
    "decision_from_dict",
    "FailOpenEvent",
}


def test_all_is_what_is_meant() -> None:
    assert set(aegis.sdk.__all__) == PUBLIC
    assert len(aegis.sdk.__all__) == len(PUBLIC)
    for name in aegis.sdk.__all__:
        assert getattr(aegis.sdk, name) is not None
    assert set(aegis.sdk.langchain.__all__) == {
        "GuardedTool",
        "OnViolation",
        "guard_tool",
        "guard_tools",
    }


def _tree(text: str) -> list[tuple[str, str]]:
    """(branch drawing, class name) of each line of an exception tree."""
    found = []
    for line in textwrap.dedent(text).splitlines():
        m = re.match(r"^([│├└─ ]*)([A-Z]\w+)", line)
        if m:
            found.append((m.group(1), m.group(2)))
    return found


def test_docs_tree_matches_the_errors_module() -> None:
    blocks = [body for lang, body in _FENCE.findall(DOC) if lang == "" and "AegisSDKError" in body]
    assert len(blocks) == 1
    module_tree = (errors.__doc__ or "").split("::", 1)[1].split("\n\n", 2)[1]
    assert _tree(blocks[0]) == _tree(module_tree)
    assert len(_tree(blocks[0])) == 12


PY_BLOCKS = [body for lang, body in _FENCE.findall(DOC) if lang == "python"]


def test_every_python_block_compiles() -> None:
    assert len(PY_BLOCKS) >= 6
    for body in PY_BLOCKS:
        compile(body, "docs/sdk.md", "exec")


RUNNABLE = [b for b in PY_BLOCKS if "AegisClient(" not in b]


@pytest.mark.parametrize("body", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_in_process_examples_print_what_they_say(
    body: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks without a server run as written, from the repository root; every
    # `print(...)  # text` must print that text.
    monkeypatch.chdir(ROOT)
    expected = [m.group(1) for m in re.finditer(r"print\(.*\)\s+# (.+)$", body, re.MULTILINE)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(body, "docs/sdk.md", "exec"), {"__name__": "docs_sdk"})
    assert out.getvalue().splitlines() == expected
