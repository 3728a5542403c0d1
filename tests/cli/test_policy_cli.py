"""`aegis policy ...` as a CI job and a person use it: output, JSON and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aegis.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PAYMENTS = EXAMPLES / "finance-payments"
BIG_PAYMENT = json.dumps(
    {
        "tenant": "acme",
        "agent_id": "finance-agent",
        "tool": "stripe.create_payment",
        "params": {"amount": 9000, "currency": "USD"},
    }
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_validate_ok_and_json(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["policy", "validate", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    result = runner.invoke(cli, ["policy", "validate", "--json", str(EXAMPLES)])
    body = json.loads(result.output)
    assert (
        body["valid"] is True and body["rules"] >= 25 and body["bundle_hash"].startswith("sha256:")
    )


def test_validate_errors_exit_1_with_locations(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: aegis.dev/v1\nkind: Policy\nmetadata: {name: b}\nrules:\n  - {id: r, effect: nope}\n"
    )
    result = runner.invoke(cli, ["policy", "validate", "--json", str(bad)])
    assert result.exit_code == 1
    (diag,) = json.loads(result.output)["diagnostics"]
    assert (diag["code"], diag["line"], diag["severity"]) == ("policy.invalid_value", 5, "error")


def test_validate_strict_fails_on_warnings(runner: CliRunner, tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text(
        "apiVersion: aegis.dev/v1\nkind: Policy\nmetadata: {name: w}\nrules:\n  - {id: all, effect: allow}\n"
    )
    assert runner.invoke(cli, ["policy", "validate", str(p)]).exit_code == 0
    strict = runner.invoke(cli, ["policy", "validate", "--strict", str(p)])
    assert strict.exit_code == 1
    assert "policy.always_allow" in strict.output


def test_test_command_passes_examples_and_reports_failures(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(cli, ["policy", "test", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert " passed, 0 failed" in result.output
    (tmp_path / "p.yaml").write_text((PAYMENTS / "policy.yaml").read_text())
    (tmp_path / "p.test.yaml").write_text(
        "tests:\n  - name: wrong on purpose\n"
        f"    call: {BIG_PAYMENT}\n"
        "    expect: {outcome: allow}\n"
    )
    failed = runner.invoke(cli, ["policy", "test", "--json", str(tmp_path)])
    assert failed.exit_code == 1
    body = json.loads(failed.output)
    assert body["failed"] == 1
    assert "outcome: got approval_needed, want allow" in body["results"][0]["problems"][0]


def test_test_command_invalid_suite_exits_3(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text((PAYMENTS / "policy.yaml").read_text())
    (tmp_path / "p.test.yaml").write_text("tests: []\n")
    result = runner.invoke(cli, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 3
    assert "test.invalid_suite" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(cli, ["policy", "test", str(empty)]).exit_code == 3


def test_eval_from_stdin(runner: CliRunner) -> None:
    result = runner.invoke(
        cli, ["policy", "eval", "--json", "-p", str(PAYMENTS), "-"], input=BIG_PAYMENT
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["outcome"] == "approval_needed"
    assert body["approval"]["group"] == "payments-desk"
    human = runner.invoke(cli, ["policy", "eval", "-p", str(PAYMENTS)], input=BIG_PAYMENT)
    assert "approval_needed" in human.output and "payments-desk" in human.output


def test_eval_malformed_call_exits_3(runner: CliRunner) -> None:
    result = runner.invoke(
        cli, ["policy", "eval", "--json", "-p", str(PAYMENTS), "-"], input='{"tool": 1}'
    )
    assert result.exit_code == 3
    assert json.loads(result.output)["error"]["code"] == "call.missing_field"
    garbage = runner.invoke(cli, ["policy", "eval", "-p", str(PAYMENTS), "-"], input="{{{not json")
    assert garbage.exit_code == 3


def test_explain_lists_every_rule_with_why(runner: CliRunner) -> None:
    result = runner.invoke(
        cli, ["policy", "explain", "--json", "-p", str(PAYMENTS), "-"], input=BIG_PAYMENT
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    by_id = {r["rule_id"]: r for r in body["rules"]}
    assert by_id["payments-large-approval"]["matched"] is True
    assert by_id["payments-small"]["matched"] is False
    assert "9000" in by_id["payments-small"]["why"] and "5000" in by_id["payments-small"]["why"]
    assert by_id["payments-balance-read"]["why"].startswith("tool")


def test_schema_matches_the_committed_file(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["policy", "schema"])
    committed = (ROOT / "schema" / "policy.v1.json").read_text()
    assert result.output == committed, "run: aegis policy schema -o schema/policy.v1.json"
    schema = json.loads(result.output)
    assert "apiVersion" in schema["properties"] and schema["additionalProperties"] is False


def test_installed_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aegis", "policy", "test", str(EXAMPLES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "0 failed" in proc.stdout


def test_eval_json_reports_an_uncompilable_policy_as_json(
    runner: CliRunner, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: aegis.dev/v1\nkind: Policy\nmetadata: {name: b}\nrules: [{id: r, effect: allow, when: [{param: x, matches: '(?=x)'}]}]\n"
    )
    result = runner.invoke(
        cli, ["policy", "eval", "--json", "-p", str(bad), "-"], input=BIG_PAYMENT
    )
    assert result.exit_code == 3
    body = json.loads(result.output)
    assert body["diagnostics"][0]["code"] == "policy.invalid_regex"


def test_call_input_must_be_utf8_json_or_safe_yaml(runner: CliRunner) -> None:
    raw = runner.invoke(
        cli, ["policy", "eval", "--json", "-p", str(PAYMENTS), "-"], input=b"\xff\xfe"
    )
    assert raw.exit_code == 3
    assert json.loads(raw.output)["error"]["code"] == "call.invalid_json"
    as_yaml = "tenant: acme\nagent_id: finance-agent\ntool: stripe.create_payment\nparams: {amount: 10, currency: USD}\n"
    ok = runner.invoke(cli, ["policy", "eval", "--json", "-p", str(PAYMENTS), "-"], input=as_yaml)
    assert json.loads(ok.output)["outcome"] == "allow"
    bomb = "a: &a [1, 2]\nb: *a\n"
    refused = runner.invoke(cli, ["policy", "eval", "--json", "-p", str(PAYMENTS), "-"], input=bomb)
    assert refused.exit_code == 3
    assert json.loads(refused.output)["error"]["code"] == "call.invalid_json"


def test_bundle_hash_does_not_depend_on_the_working_directory(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = json.loads(runner.invoke(cli, ["policy", "validate", "--json", str(EXAMPLES)]).output)
    monkeypatch.chdir(EXAMPLES)
    second = json.loads(runner.invoke(cli, ["policy", "validate", "--json", "."]).output)
    assert first["bundle_hash"] == second["bundle_hash"]
    assert first["policy_version"] == second["policy_version"]
