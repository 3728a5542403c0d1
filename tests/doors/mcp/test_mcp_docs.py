"""docs/doors/mcp.md stays true: its configuration loads, its policy compiles,
and its error-code table names the codes the door uses."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import aegis.doors.mcp as door
from aegis.doors.mcp import load_config
from aegis.policy import compile_text

DOC = (Path(__file__).resolve().parents[3] / "docs" / "doors" / "mcp.md").read_text(
    encoding="utf-8"
)
_FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in _FENCE.findall(DOC) if kind == lang]


def test_the_configuration_example_loads(tmp_path: Path) -> None:
    (config_text,) = [b for b in _blocks("yaml") if b.startswith("server:")]
    config = load_config(
        yaml.safe_load(config_text), env={"AEGIS_AGENT_TOKEN": "t"}, base_dir=tmp_path
    )
    assert [u.name for u in config.upstreams] == ["files", "crm"]
    assert config.upstreams[1].tool_prefix == "crm_"


def test_the_policy_example_compiles() -> None:
    (policy,) = [b for b in _blocks("yaml") if b.startswith("apiVersion:")]
    compiled = compile_text(policy, "mcp.md.yaml")
    assert {r.id for r in compiled.rules} == {"hide-admin", "list-the-rest", "reads"}


def test_the_error_table_lists_every_code() -> None:
    for code in (
        door.POLICY_DENIED,
        door.APPROVAL_NEEDED,
        door.LIMITED,
        door.TOOL_DEFINITION_CHANGED,
        door.UPSTREAM_FAILED,
        door.IDENTITY_REFUSED,
    ):
        assert f"| {code} |" in DOC, code
