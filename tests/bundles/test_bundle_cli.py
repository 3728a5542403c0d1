from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from aegis.bundles import load_bundle
from aegis.bundles.signing import PublicKey
from aegis.cli.main import cli
from aegis.identity.keys import SigningKey

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_build_sign_verify_examples(tmp_path: Path) -> None:
    runner = CliRunner()
    key = SigningKey.generate("ES256")
    (tmp_path / "k.pem").write_bytes(key.to_pem())
    (tmp_path / "pub.pem").write_bytes(PublicKey.of(key).to_pem())
    (tmp_path / "other.pem").write_bytes(PublicKey.of(SigningKey.generate()).to_pem())
    out = tmp_path / "b.tar.gz"
    env = {"SOURCE_DATE_EPOCH": "0"}
    args = ["bundle", "build", str(EXAMPLES / "egress"), "-o", str(out), "--root", "egress"]
    assert runner.invoke(cli, args, env=env).exit_code == 0
    first = out.read_bytes()
    assert runner.invoke(cli, args, env=env).exit_code == 0
    assert out.read_bytes() == first
    pub = ["--public-key", str(tmp_path / "pub.pem")]
    result = runner.invoke(cli, ["bundle", "verify", str(out), *pub, "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["code"] == "bundle.unsigned"
    sign = ["bundle", "sign", str(out), "--key", str(tmp_path / "k.pem"), "--scope", "write"]
    assert runner.invoke(cli, sign).exit_code == 0
    result = runner.invoke(cli, ["bundle", "verify", str(out), *pub, "--json", "--scope", "write"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["kid"] == key.kid and report["roots"] == ["egress"]
    result = runner.invoke(cli, ["bundle", "verify", str(out), *pub, "--scope", "read", "--json"])
    assert (result.exit_code, json.loads(result.output)["code"]) == (1, "bundle.wrong_scope")
    other = ["--public-key", str(tmp_path / "other.pem")]
    result = runner.invoke(cli, ["bundle", "verify", str(out), *other, "--json"])
    assert (result.exit_code, json.loads(result.output)["code"]) == (1, "bundle.unknown_key")


def test_input_errors_exit_3(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "bad.pem").write_text("nope")
    missing = str(tmp_path / "missing.tar.gz")
    result = runner.invoke(
        cli, ["bundle", "verify", missing, "--public-key", str(tmp_path / "bad.pem")]
    )
    assert result.exit_code == 3
    result = runner.invoke(cli, ["bundle", "sign", missing, "--key", str(tmp_path / "bad.pem")])
    assert result.exit_code == 3
    (tmp_path / "p.yaml").write_text("version: 1\nrules: [{}]\n")
    result = runner.invoke(
        cli, ["bundle", "build", str(tmp_path / "p.yaml"), "-o", str(tmp_path / "o.tar.gz")]
    )
    assert result.exit_code == 1


def test_build_a_tenant_bundle_checks_it_as_the_gateway_will(tmp_path: Path) -> None:
    """--tenant roots the bundle at tenants/<tenant> and refuses rules of other tenants
    at build time, with the code the gateway would refuse it with."""
    runner = CliRunner()
    out = tmp_path / "acme.tar.gz"
    # the egress example's document is acme's (metadata.tenant: acme)
    ok = runner.invoke(cli, ["bundle", "build", str(EXAMPLES / "egress"), "-o", str(out),
                             "--tenant", "acme"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert load_bundle(out).manifest.roots == ("tenants/acme",)
    wrong = runner.invoke(cli, ["bundle", "build", str(EXAMPLES / "egress"), "-o",
                                str(tmp_path / "x.tar.gz"), "--tenant", "globex"])  # fmt: skip
    assert wrong.exit_code == 1
    assert "bundle.tenant_mismatch" in wrong.output
    assert not (tmp_path / "x.tar.gz").exists()
    both = runner.invoke(cli, ["bundle", "build", str(EXAMPLES / "egress"), "-o", str(out),
                               "--tenant", "acme", "--root", "x"])  # fmt: skip
    assert both.exit_code == 2


def test_build_a_bundle_of_several_tenants(tmp_path: Path) -> None:
    runner = CliRunner()
    for tenant, example in (("acme", "egress"), ("acme2", "deploy")):
        folder = tmp_path / "src" / "tenants" / tenant
        folder.mkdir(parents=True)
        text = (EXAMPLES / example / "policy.yaml").read_text()
        (folder / "policy.yaml").write_text(text.replace("tenant: acme", f"tenant: {tenant}"))
    out = tmp_path / "all.tar.gz"
    ok = runner.invoke(cli, ["bundle", "build", str(tmp_path / "src"), "-o", str(out), "--tenants"])
    assert ok.exit_code == 0, ok.output
    assert load_bundle(out, subtree="tenants/acme2").manifest.roots == (
        "tenants/acme",
        "tenants/acme2",
    )
    assert all(
        "/acme2/" in rule.source.file
        for rule in load_bundle(out, subtree="tenants/acme2").compiled_policy.rules
    )
    mixed = runner.invoke(
        cli, ["bundle", "build", str(tmp_path / "src"), "-o", str(out), "--tenants", "--root", "x"]
    )
    assert mixed.exit_code == 2
