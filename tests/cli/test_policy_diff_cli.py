"""`aegis policy diff A B`: output, JSON, exit codes, bundles and --calls files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from aegis.bundles import PublicKey, build_bundle, sign_bundle
from aegis.cli.main import cli
from aegis.identity.keys import SigningKey

ROOT = Path(__file__).resolve().parents[2]
PAYMENTS = ROOT / "examples" / "finance-payments"
NOW = ["--now", "2026-11-23T10:00:00Z"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def sides(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the payments example, and a copy with one rule narrowed."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(PAYMENTS, a)
    shutil.copytree(PAYMENTS, b)
    policy = b / "policy.yaml"
    policy.write_text(policy.read_text().replace("lte: 5000", "lte: 1000"))
    return a, b


def _diff(runner: CliRunner, *args: str) -> tuple[int, str]:
    result = runner.invoke(cli, ["policy", "diff", *NOW, *args])
    return result.exit_code, result.output


def test_identical_inputs_exit_0_even_with_exit_code(runner: CliRunner) -> None:
    code, out = _diff(runner, "--exit-code", str(PAYMENTS), str(PAYMENTS))
    assert code == 0, out
    assert "no differences" in out and "0 added, 0 removed, 0 changed" in out


def test_differences_exit_0_unless_exit_code(runner: CliRunner, sides: tuple[Path, Path]) -> None:
    a, b = sides
    code, out = _diff(runner, str(a), str(b))
    assert code == 0, out
    assert "~ payments-small  when" in out
    assert "exactly 5,000 is still allowed" in out
    assert "a 120 USD payment is allowed" not in out  # unaffected calls are not listed
    code, _ = _diff(runner, "--exit-code", str(a), str(b))
    assert code == 1


def test_json_structure(runner: CliRunner, sides: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sides
    calls = tmp_path / "calls.jsonl"
    pay = {"tenant": "acme", "agent_id": "finance-agent", "tool": "stripe.create_payment"}
    calls.write_text(
        json.dumps({**pay, "params": {"amount": 4000, "currency": "USD"}})
        + "\n{broken\n"
        + json.dumps({**pay, "params": {"amount": 40, "currency": "USD"}})
        + "\n"
    )
    code, out = _diff(runner, "--json", "--calls", str(calls), str(a), str(b))
    assert code == 0, out
    body = json.loads(out)
    assert set(body) == {"a", "b", "differs", "rules", "defaults", "declarations", "calls"}
    assert set(body["a"]) == {"source", "version", "bundle_hash", "revision", "rules"}
    assert body["a"]["bundle_hash"] != body["b"]["bundle_hash"]
    assert body["rules"] == {
        "added": [],
        "removed": [],
        "changed": [{"id": "payments-small", "fields": ["when"]}],
    }
    assert body["differs"] is True and body["defaults"] == {} and body["declarations"] == {}
    changed = {c["label"]: c for c in body["calls"]["changed"]}
    assert set(changed) == {"policy.test.yaml: exactly 5,000 is still allowed", f"{calls}:1"}
    assert changed[f"{calls}:1"]["a"] == {
        "outcome": "allow",
        "rule_ids": ["payments-small"],
        "redactions": [],
    }
    assert changed[f"{calls}:1"]["b"]["outcome"] == "deny"
    assert body["calls"]["evaluated"] == 11  # 9 suite calls + 2 parsed lines
    (unparsed,) = body["calls"]["unparsed"]
    assert (unparsed["label"], unparsed["code"]) == (f"{calls}:2", "call.invalid_json")


def test_unparsed_lines_are_shown_in_human_output(runner: CliRunner, tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    calls.write_text('{"tool": "x"}\n')
    code, out = _diff(runner, "--calls", str(calls), str(PAYMENTS), str(PAYMENTS))
    assert code == 0
    assert f"unparsed {calls}:1: call.missing_field" in out


def test_a_side_that_does_not_compile_exits_1(runner: CliRunner, sides: tuple[Path, Path]) -> None:
    a, b = sides
    (b / "policy.yaml").write_text(
        "apiVersion: aegis.dev/v1\nkind: Policy\nmetadata: {name: b}\nrules:\n  - {id: r, effect: nope}\n"
    )
    code, out = _diff(runner, "--json", str(a), str(b))
    assert code == 1
    body = json.loads(out)
    assert body["error"] == "policy" and body["side"] == "b"
    assert body["diagnostics"][0]["code"] == "policy.invalid_value"
    assert runner.invoke(cli, ["policy", "diff", *NOW, str(a), str(b)]).exit_code == 1


def test_a_bundle_against_its_folder(runner: CliRunner, tmp_path: Path) -> None:
    archive = tmp_path / "payments.tar.gz"
    archive.write_bytes(build_bundle([PAYMENTS], use_git=False, revision="rel-7"))
    code, out = _diff(runner, "--exit-code", "--json", str(archive), str(PAYMENTS))
    assert code == 0, out
    body = json.loads(out)
    assert body["a"]["revision"] == "rel-7" and body["differs"] is False
    assert body["calls"]["evaluated"] == 9  # the suites beside the folder side
    # A gzip file is a bundle whatever its name.
    renamed = tmp_path / "payments.bundle"
    shutil.copy(archive, renamed)
    assert _diff(runner, "--exit-code", str(renamed), str(PAYMENTS))[0] == 0


def test_bundle_signatures_are_checked_with_public_key(runner: CliRunner, tmp_path: Path) -> None:
    key = SigningKey.generate("ES256")
    pub = tmp_path / "pub.pem"
    pub.write_bytes(PublicKey.of(key).to_pem())
    unsigned = build_bundle([PAYMENTS], use_git=False)
    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(unsigned)
    signed = tmp_path / "signed.tar.gz"
    signed.write_bytes(sign_bundle(unsigned, key))
    code, out = _diff(runner, "--public-key", str(pub), str(signed), str(PAYMENTS))
    assert code == 0, out
    code, out = _diff(runner, "--json", "--public-key", str(pub), str(plain), str(PAYMENTS))
    assert code == 3
    body = json.loads(out)
    assert (body["error"], body["side"], body["code"]) == ("input", "a", "bundle.unsigned")


def test_an_unreadable_bundle_exits_3(runner: CliRunner, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b not really gzip")
    code, _ = _diff(runner, str(PAYMENTS), str(junk))
    assert code == 3


def test_usage_errors_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    assert _diff(runner, str(PAYMENTS))[0] == 2
    assert _diff(runner, str(PAYMENTS), str(tmp_path / "missing"))[0] == 2
    result = runner.invoke(cli, ["policy", "diff", "--now", "later", str(PAYMENTS), str(PAYMENTS)])
    assert result.exit_code == 2
