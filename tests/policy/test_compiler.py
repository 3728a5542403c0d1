"""The compiler reports every error at once, located, and builds what evaluation needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegis.core.call import ToolKind, parse_call
from aegis.errors import ErrorCode, PolicyLoadError, Severity
from aegis.policy import compile_text, load_policy
from aegis.policy.compiler import bundle_hash, compile_sources
from aegis.policy.source import SourceDocument, parse_source

MANY_ERRORS = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: broken}
defaults:
  fail_mode: {write: open}
rules:
  - id: r1
    effect: allow
  - id: r1
    effect: deny
    when:
      - param: x
        matches: '(?<=a)b'
      - destination: {host_in: ["*.co.uk"]}
      - time: {timezone: Nowhere/City}
  - id: r3
    effect: sanitize
    sanitize: {detectors: [nope]}
  - id: r4
    effect: approval_needed
"""


def test_all_resolve_errors_at_once_with_positions() -> None:
    with pytest.raises(PolicyLoadError) as info:
        compile_text(MANY_ERRORS, "broken.yaml")
    found = {(str(d.code), d.line, d.column) for d in info.value.diagnostics}
    assert found == {
        ("policy.write_fail_open", 5, 22),
        ("policy.duplicate_id", 9, 9),
        ("policy.invalid_regex", 13, 18),
        ("policy.public_suffix_wildcard", 14, 33),
        ("policy.invalid_timezone", 15, 26),
        ("policy.unknown_detector", 18, 28),
        ("policy.missing_obligation", 20, 13),
    }
    assert all(d.file == "broken.yaml" for d in info.value.diagnostics)
    # Diagnostics come sorted by position, the way an editor lists them.
    lines = [d.line for d in info.value.diagnostics]
    assert lines == sorted(lines)


def test_all_validation_errors_at_once() -> None:
    text = """\
apiVersion: aegis.dev/v2
kind: Policy
metadata: {name: v}
rules:
  - id: r1
    effect: maybe
    colour: red
  - effect: allow
    when:
      - param: amount
        gt: "5"
      - {nothing: 1}
"""
    with pytest.raises(PolicyLoadError) as info:
        compile_text(text, "v.yaml")
    found = {(str(d.code), d.line) for d in info.value.diagnostics}
    assert found == {
        ("policy.unsupported_version", 1),
        ("policy.invalid_value", 6),
        ("policy.unknown_field", 7),
        ("policy.missing_field", 8),
        ("policy.invalid_type", 11),
        ("policy.invalid_operator", 12),
    }


def test_errors_in_several_files_are_reported_together(tmp_path: Path) -> None:
    good = "apiVersion: aegis.dev/v1\nkind: Policy\nmetadata: {name: a}\nrules:\n  - {id: same, effect: allow}\n"
    (tmp_path / "a.yaml").write_text(good)
    (tmp_path / "b.yaml").write_text(good.replace("name: a", "name: b"))
    (tmp_path / "c.json").write_text(
        '{"apiVersion": "aegis.dev/v1", "kind": "Policy", "metadata": {}}'
    )
    (tmp_path / "d.yaml").write_text("a: [\n")
    (tmp_path / "ignored.test.yaml").write_text("not: a policy")
    with pytest.raises(PolicyLoadError) as info:
        load_policy([tmp_path])
    codes = sorted((Path(d.file).name, str(d.code)) for d in info.value.diagnostics)
    assert codes == [("c.json", "policy.missing_field"), ("d.yaml", "policy.yaml_syntax")]
    (tmp_path / "c.json").unlink()
    (tmp_path / "d.yaml").unlink()
    with pytest.raises(PolicyLoadError) as info:
        load_policy([tmp_path])
    (dup,) = info.value.diagnostics
    assert dup.code is ErrorCode.POLICY_DUPLICATE_ID
    assert "a.yaml:5" in dup.message and dup.file.endswith("b.yaml")


def test_no_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy([tmp_path])
    assert info.value.code is ErrorCode.POLICY_NO_FILES


def test_warnings_do_not_stop_the_load() -> None:
    text = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: w}
tools: [{name: pay, kind: write}]
agents: [{id: fin}]
rules:
  - id: block-all-pay
    match: {tools: [pay]}
    effect: deny
  - id: never
    match: {tools: [pay]}
    when: [{param: a, gt: 10}, {param: a, lt: 5}]
    effect: allow
  - id: everything
    effect: allow
  - id: typo
    match: {tools: [pya], agents: [fni]}
    effect: deny
"""
    policy = compile_text(text, "w.yaml")
    found = {(str(w.code), w.rule_id) for w in policy.warnings}
    assert found == {
        ("policy.rule_never_fires", "never"),
        ("policy.rule_unreachable", "never"),
        ("policy.always_allow", "everything"),
        ("policy.unknown_tool", "typo"),
        ("policy.unknown_agent", "typo"),
    }
    assert all(w.severity is Severity.WARNING for w in policy.warnings)


def test_declared_kind_wins_and_unknown_tools_are_writes() -> None:
    text = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: k}
defaults: {fail_mode: {read: open}}
tools:
  - {name: db.query, kind: read}
  - {name: "db.admin.*", kind: write, cost: 2}
"""
    policy = compile_text(text)
    call = parse_call({"tenant": "t", "agent_id": "a", "tool": "db.admin.drop", "kind": "read"})
    assert policy.kind_of(call) is ToolKind.WRITE
    assert policy.tool_info("db.admin.drop") is not None
    unknown = parse_call({"tenant": "t", "agent_id": "a", "tool": "shell.exec"})
    assert policy.kind_of(unknown) is ToolKind.WRITE
    read = parse_call({"tenant": "t", "agent_id": "a", "tool": "db.query", "kind": "write"})
    assert policy.kind_of(read) is ToolKind.READ
    assert str(policy.fail_mode_for(read)) == "open"
    assert str(policy.fail_mode_for(call)) == "closed"
    # A read claimed by the caller on an undeclared tool matches read rules but never fails open.
    claimed = parse_call({"tenant": "t", "agent_id": "a", "tool": "shell.exec", "kind": "read"})
    assert policy.kind_of(claimed) is ToolKind.READ
    assert str(policy.fail_mode_for(claimed)) == "closed"


def test_version_and_bundle_hash() -> None:
    base = "apiVersion: aegis.dev/v1\nkind: Policy\nmetadata: {name: v%s}\n"
    a = compile_text(base % " , version: '2026.11.1'", "a.yaml")
    assert a.version == "2026.11.1"
    b = compile_text(base % "", "a.yaml")
    assert b.bundle_hash.startswith("sha256:") and b.version == b.bundle_hash[7:19]
    # The hash covers file names and bytes: any change is a new identity.
    docs = [parse_source(base % "", "a.yaml"), parse_source(base % "", "b.yaml")]
    assert all(isinstance(d, SourceDocument) for d in docs)
    h1 = bundle_hash([d for d in docs if isinstance(d, SourceDocument)])
    h2 = bundle_hash([d for d in reversed(docs) if isinstance(d, SourceDocument)])
    assert h1 == h2
    assert compile_sources(docs).bundle_hash == h1
    assert compile_text(base % "", "b.yaml").bundle_hash != b.bundle_hash


def test_index_skips_other_tenants_rules() -> None:
    rules = "\n".join(
        f"  - {{id: r{i}, match: {{tenants: [t{i % 10}], tools: [tool{i % 7}]}}, effect: allow}}"
        for i in range(200)
    )
    text = f"apiVersion: aegis.dev/v1\nkind: Policy\nmetadata: {{name: idx}}\nrules:\n{rules}\n"
    policy = compile_text(text)
    from aegis.core.call import McpPhase

    cands = policy.candidates("t3", "tool3", McpPhase.CALL, ToolKind.WRITE)
    ids = [r.id for r in cands.allow]
    assert ids and all(int(i[1:]) % 10 == 3 and int(i[1:]) % 7 == 3 for i in ids)
    assert ids == sorted(ids, key=lambda i: int(i[1:]))
