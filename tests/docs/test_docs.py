"""The documents under docs/ stay true to the code they describe.

* every complete policy in docs/policy-language.md compiles;
* docs/errors.md has a heading for every ErrorCode, and no heading for a code
  that does not exist;
* docs/cli.md documents every subcommand of ``aegis policy``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aegis.cli.policy import policy_group
from aegis.errors import ErrorCode
from aegis.policy import compile_text

DOCS = Path(__file__).resolve().parents[2] / "docs"

#: A fenced block: its info string (language) and its body.
_FENCE = re.compile(r"^```([A-Za-z0-9_-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_HEADING = re.compile(r"^### `([^`]+)`[ \t]*$", re.MULTILINE)
_CLI_HEADING = re.compile(r"^### aegis policy ([a-z][a-z-]*)[ \t]*$", re.MULTILINE)


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _policy_blocks() -> list[tuple[str, str, str]]:
    """(id, file name to compile as, text) of every complete policy in the reference."""
    text = _read("policy-language.md")
    found = []
    for match in _FENCE.finditer(text):
        lang, body = match.group(1), match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        if lang == "yaml" and body.startswith("apiVersion:"):
            found.append((f"yaml-line-{line}", f"policy-language.md:{line}.yaml", body))
        elif lang == "json" and '"apiVersion"' in body:
            found.append((f"json-line-{line}", f"policy-language.md:{line}.json", body))
    return found


POLICY_BLOCKS = _policy_blocks()


def test_the_reference_has_complete_policies() -> None:
    # Guards the extraction itself: a broken regex must not pass vacuously.
    assert len(POLICY_BLOCKS) >= 15


@pytest.mark.parametrize(
    ("file", "text"), [b[1:] for b in POLICY_BLOCKS], ids=[b[0] for b in POLICY_BLOCKS]
)
def test_policy_example_compiles(file: str, text: str) -> None:
    if file.endswith(".json"):
        assert json.loads(text)["apiVersion"] == "aegis.dev/v1"
    compiled = compile_text(text, file)  # raises PolicyLoadError with every diagnostic
    assert compiled.bundle_hash.startswith("sha256:")


def test_yaml_fragments_do_not_pose_as_policies() -> None:
    """A block that is a whole policy starts with apiVersion, so the test above sees it."""
    text = _read("policy-language.md")
    for match in _FENCE.finditer(text):
        lang, body = match.group(1), match.group(2)
        if lang == "yaml" and not body.startswith("apiVersion:"):
            assert not re.search(r"^apiVersion:", body, re.MULTILINE), body[:80]


def test_every_error_code_has_a_heading() -> None:
    headings = _CODE_HEADING.findall(_read("errors.md"))
    codes = {str(code) for code in ErrorCode}
    assert len(headings) == len(set(headings)), "a code is documented twice"
    missing = sorted(codes - set(headings))
    unknown = sorted(set(headings) - codes)
    assert not missing, f"undocumented codes: {missing}"
    assert not unknown, f"headings for codes that do not exist: {unknown}"


def test_every_policy_subcommand_is_documented() -> None:
    documented = set(_CLI_HEADING.findall(_read("cli.md")))
    commands = set(policy_group.commands)
    assert commands, "the policy group has no commands?"
    assert not commands - documented, f"undocumented: {sorted(commands - documented)}"
    assert not documented - commands, f"documented but absent: {sorted(documented - commands)}"
