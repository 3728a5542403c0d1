"""`aegis policy ...`: validate, test, explain, eval, diff and schema.

Exit codes (documented in docs/cli.md, stable for CI jobs):

    0  success: valid policy, every test passed, a decision was printed
    1  the check failed: compile errors (or warnings with --strict), failing tests;
       for diff, a side that does not compile, or differences with --exit-code
    2  usage error (bad flags or arguments; click's own code)
    3  an input could not be used: unreadable policy for test/eval/explain,
       a malformed call, an invalid test suite; for diff, an unreadable bundle,
       key or --calls file
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aegis.bundles import BundleError, BundleErrorCode, PublicKey, keyring, load_bundle
from aegis.core.call import parse_call
from aegis.errors import CallError, Diagnostic, ErrorCode, PolicyLoadError, Severity
from aegis.policy.compiler import load_policy
from aegis.policy.diff import (
    CallInputs,
    PolicyDiff,
    Side,
    calls_from_jsonl,
    calls_from_suites,
    diff_policies,
)
from aegis.policy.engine import decide
from aegis.policy.reference import reference_evaluate
from aegis.policy.schema import policy_json_schema
from aegis.policy.source import parse_source
from aegis.policy.testing import run_suites

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 3

_paths = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)
_json_flag = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _console(err: bool = False) -> Console:
    return Console(stderr=err, highlight=False, soft_wrap=True)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _print_diagnostics(diags: tuple[Diagnostic, ...] | list[Diagnostic], console: Console) -> None:
    for d in diags:
        style = "red" if d.severity is Severity.ERROR else "yellow"
        where = f"{d.file}:{d.line}:{d.column}: " if d.line else ""
        console.print(
            f"{where}[{style}]{d.severity}[/{style}] [bold]{d.code}[/bold] {escape(d.message)}",
            markup=True,
        )


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        now = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint="--now") from None
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _read_call(source: str) -> Any:
    """A call from a file or stdin: JSON, or YAML read by the policy loader's safe reader."""
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CallError(ErrorCode.CALL_INVALID_JSON, f"not UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (json.JSONDecodeError, ValueError):
        parsed = parse_source(text, "<call>")
        if isinstance(parsed, Diagnostic):
            raise CallError(ErrorCode.CALL_INVALID_JSON, f"not JSON or YAML: {parsed}") from None
        return parsed.data


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@click.group("policy")
def policy_group() -> None:
    """Author, check and exercise policies."""


@policy_group.command("validate")
@_paths
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@_json_flag
def validate_cmd(paths: tuple[Path, ...], strict: bool, as_json: bool) -> None:
    """Compile policy files or folders and report every error and warning."""
    try:
        compiled = load_policy(list(paths))
    except PolicyLoadError as exc:
        if as_json:
            _emit_json({"valid": False, "diagnostics": [d.to_dict() for d in exc.diagnostics]})
        else:
            _print_diagnostics(exc.diagnostics, _console(err=True))
            errors = sum(1 for d in exc.diagnostics if d.severity is Severity.ERROR)
            _console(err=True).print(f"[red]{errors} error(s)[/red]")
        sys.exit(EXIT_FAILED)
    warnings = compiled.warnings
    if as_json:
        _emit_json(
            {
                "valid": not (strict and warnings),
                "policy_version": compiled.version,
                "bundle_hash": compiled.bundle_hash,
                "rules": len(compiled.rules),
                "files": list(compiled.sources),
                "diagnostics": [d.to_dict() for d in warnings],
            }
        )
    else:
        _print_diagnostics(warnings, _console(err=True))
        verdict = (
            "[red]failed[/red] (warnings with --strict)"
            if strict and warnings
            else "[green]ok[/green]"
        )
        _console().print(
            f"{verdict} {len(compiled.rules)} rules in {len(compiled.sources)} file(s), "
            f"version {compiled.version}, {compiled.bundle_hash}"
            + (f", {len(warnings)} warning(s)" if warnings else "")
        )
    sys.exit(EXIT_FAILED if strict and warnings else EXIT_OK)


@policy_group.command("test")
@_paths
@click.option("--now", help="Default clock for cases without one (ISO 8601).")
@click.option("-v", "--verbose", is_flag=True, help="List passing cases too.")
@_json_flag
def test_cmd(paths: tuple[Path, ...], now: str | None, verbose: bool, as_json: bool) -> None:
    """Run *.test.yaml suites (calls and the decisions they must get)."""
    run = run_suites(list(paths), default_now=_parse_now(now) if now else None)
    if as_json:
        _emit_json(
            {
                "passed": run.passed,
                "failed": run.failed,
                "errors": [d.to_dict() for d in run.errors],
                "results": [r.to_dict() for r in run.results],
            }
        )
    else:
        out, err = _console(), _console(err=True)
        _print_diagnostics(run.errors, err)
        for r in run.results:
            if r.passed and verbose:
                out.print(f"[green]PASS[/green] {r.suite}: {r.name}")
            elif not r.passed:
                out.print(f"[red]FAIL[/red] {r.suite}: {r.name}")
                for problem in r.problems:
                    out.print(f"     {problem}", markup=False)
        out.print(f"{run.passed} passed, {run.failed} failed")
    if run.errors:
        sys.exit(EXIT_INPUT)
    sys.exit(EXIT_FAILED if run.failed else EXIT_OK)


def _load_for_call(policy: tuple[Path, ...], as_json: bool) -> Any:
    try:
        return load_policy(list(policy))
    except PolicyLoadError as exc:
        if as_json:
            _emit_json({"error": "policy", "diagnostics": [d.to_dict() for d in exc.diagnostics]})
        else:
            _print_diagnostics(exc.diagnostics, _console(err=True))
        sys.exit(EXIT_INPUT)


def _call_or_exit(source: str, as_json: bool) -> Any:
    try:
        return parse_call(_read_call(source))
    except CallError as exc:
        if as_json:
            _emit_json({"error": exc.to_dict()})
        else:
            _console(err=True).print(f"[red]invalid call[/red] {exc}", markup=True)
        sys.exit(EXIT_INPUT)
    except OSError as exc:
        _console(err=True).print(f"cannot read {source}: {exc.strerror}", markup=False)
        sys.exit(EXIT_INPUT)


_policy_opt = click.option(
    "-p",
    "--policy",
    "policy",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Policy file or folder (repeatable).",
)


@policy_group.command("eval")
@_policy_opt
@click.argument("call", default="-")
@click.option("--now", help="Clock for the decision (ISO 8601); default: now.")
@_json_flag
def eval_cmd(policy: tuple[Path, ...], call: str, now: str | None, as_json: bool) -> None:
    """Decide one call (JSON or YAML, from a file or '-' for stdin)."""
    compiled = _load_for_call(policy, as_json)
    tool_call = _call_or_exit(call, as_json)
    decision = decide(compiled, tool_call, _parse_now(now))
    if as_json:
        _emit_json(decision.to_dict())
        return
    colour = {"allow": "green", "sanitize": "cyan", "approval_needed": "yellow", "deny": "red"}[
        str(decision.outcome)
    ]
    c = _console()
    c.print(f"[bold {colour}]{decision.outcome}[/bold {colour}]  {decision.reason}")
    c.print(
        f"code {decision.code}  rules {list(decision.rule_ids)}  version {decision.policy_version}"
    )
    if decision.redactions:
        c.print("redacted " + ", ".join(f"{r.path} ({r.detector})" for r in decision.redactions))
    if decision.approval:
        a = decision.approval
        c.print(f"approval by {a.group} via {a.channel or '-'} within {a.ttl_seconds}s")
    if decision.shadow:
        c.print(f"shadow would be {decision.shadow.outcome} {list(decision.shadow.rule_ids)}")


@policy_group.command("explain")
@_policy_opt
@click.argument("call", default="-")
@click.option("--now", help="Clock for the decision (ISO 8601); default: now.")
@_json_flag
def explain_cmd(policy: tuple[Path, ...], call: str, now: str | None, as_json: bool) -> None:
    """Show every rule: whether it matched this call and, if not, why not."""
    compiled = _load_for_call(policy, as_json)
    tool_call = _call_or_exit(call, as_json)
    at = _parse_now(now)
    decision = decide(compiled, tool_call, at)
    ref = reference_evaluate(compiled, tool_call, at)
    if as_json:
        _emit_json(
            {
                "decision": decision.to_dict(),
                "rules": [
                    {
                        "rule_id": t.rule_id,
                        "effect": t.effect,
                        "mode": t.mode,
                        "matched": t.matched,
                        "why": t.why,
                        "file": t.file,
                        "line": t.line,
                    }
                    for t in ref.traces
                ],
            }
        )
        return
    table = Table(title=f"{decision.outcome}: {decision.reason}")
    for col in ("rule", "effect", "mode", "matched", "why", "where"):
        table.add_column(col)
    for t in ref.traces:
        table.add_row(
            t.rule_id,
            t.effect,
            t.mode,
            "[green]yes[/green]" if t.matched else "no",
            t.why,
            f"{t.file}:{t.line}",
        )
    _console().print(table)


def _is_bundle(path: Path) -> bool:
    """A bundle archive: named so, or any file that starts as gzip does."""
    if not path.is_file():
        return False
    if path.name.endswith((".tar.gz", ".tgz")):
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _side_failure(
    side: str,
    path: Path,
    as_json: bool,
    exit_code: int,
    *,
    diagnostics: tuple[Diagnostic, ...] = (),
    code: str | None = None,
    message: str = "",
) -> None:
    if as_json:
        _emit_json(
            {
                "error": "policy" if exit_code == EXIT_FAILED else "input",
                "side": side,
                "source": str(path),
                "code": code,
                "message": message,
                "diagnostics": [d.to_dict() for d in diagnostics],
            }
        )
    else:
        err = _console(err=True)
        err.print(f"[red]{side}[/red] {escape(str(path))}: {escape(message)}", markup=True)
        _print_diagnostics(diagnostics, err)
    sys.exit(exit_code)


def _load_side(side: str, path: Path, keys: dict[str, PublicKey] | None, as_json: bool) -> Side:
    """Compile one side: a bundle archive, or policy files like `validate` takes.

    A bundle whose policy does not compile fails like a folder that does not
    (exit 1, with the diagnostics); a bundle that cannot be read or trusted is an
    unusable input (exit 3).
    """
    if _is_bundle(path):
        try:
            loaded = load_bundle(path, keys=keys, require_signature=keys is not None)
        except BundleError as exc:
            failed = exc.bundle_code is BundleErrorCode.POLICY_INVALID
            _side_failure(
                side,
                path,
                as_json,
                EXIT_FAILED if failed else EXIT_INPUT,
                diagnostics=exc.diagnostics,
                code=str(exc.code),
                message=exc.message,
            )
            raise  # unreachable: _side_failure exits
        return Side(loaded.compiled_policy, str(path), loaded.manifest.revision)
    try:
        return Side(load_policy([path]), str(path))
    except PolicyLoadError as exc:
        errors = sum(1 for d in exc.diagnostics if d.severity is Severity.ERROR)
        _side_failure(
            side,
            path,
            as_json,
            EXIT_FAILED,
            diagnostics=exc.diagnostics,
            message=f"does not compile, {errors} error(s)",
        )
        raise  # unreachable: _side_failure exits


def _read_keys(paths: tuple[Path, ...], as_json: bool) -> dict[str, PublicKey] | None:
    if not paths:
        return None
    keys: list[PublicKey] = []
    for path in paths:
        try:
            keys.append(PublicKey.from_pem(path.read_bytes()))
        except (OSError, ValueError, TypeError) as exc:
            _side_failure("key", path, as_json, EXIT_INPUT, message=f"cannot use public key: {exc}")
    return keyring(keys)


def _gather_calls(
    sides: tuple[Path, Path], call_files: tuple[Path, ...], now: datetime, as_json: bool
) -> CallInputs:
    """Test-suite calls beside either side (deduplicated), then every --calls line."""
    inputs = CallInputs()
    for path in sides:
        if not _is_bundle(path):  # a bundle carries no test suites
            inputs.extend(calls_from_suites([path], now), dedupe=True)
    for file in call_files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            _side_failure("calls", file, as_json, EXIT_INPUT, message=str(exc.strerror))
        inputs.extend(calls_from_jsonl(data, str(file), now))
    return inputs


def _verdict_text(v: dict[str, Any]) -> str:
    text = f"{v['outcome']} [{', '.join(v['rule_ids'])}]"
    if v["redactions"]:
        text += " redacts " + ", ".join(f"{r['path']} ({r['detector']})" for r in v["redactions"])
    return text


def _print_diff(diff: PolicyDiff) -> None:
    out = _console()
    data = diff.to_dict()
    for side in ("a", "b"):
        s = data[side]
        revision = f", revision {s['revision']}" if s["revision"] else ""
        out.print(
            f"{side}: {s['source']}  version {s['version']}  {s['bundle_hash']}  "
            f"{s['rules']} rules{revision}",
            markup=False,
        )
    rules = data["rules"]
    out.print(
        f"rules: {len(rules['added'])} added, {len(rules['removed'])} removed, "
        f"{len(rules['changed'])} changed",
        markup=False,
    )
    for r in rules["added"]:
        out.print(
            f"[green]+ {escape(r['id'])}[/green]  {r['effect']} {r['mode']}  {escape(r['where'])}"
        )
    for r in rules["removed"]:
        out.print(
            f"[red]- {escape(r['id'])}[/red]  {r['effect']} {r['mode']}  {escape(r['where'])}"
        )
    for c in rules["changed"]:
        out.print(f"[yellow]~ {escape(c['id'])}[/yellow]  {', '.join(c['fields'])}")
    for name, values in data["defaults"].items():
        out.print(f"defaults: {name}: {values['a']} -> {values['b']}", markup=False)
    for kind, d in data["declarations"].items():
        parts = [f"+{k}" for k in d["added"]] + [f"-{k}" for k in d["removed"]]
        parts += [f"~{c['id']} ({', '.join(c['fields'])})" for c in d["changed"]]
        out.print(f"declarations: {kind}: {' '.join(parts)}", markup=False)
    calls = data["calls"]
    out.print(
        f"calls: {calls['evaluated']} evaluated, {len(calls['changed'])} change outcome, "
        f"{len(calls['unparsed'])} unparsed, {calls['skipped']} skipped",
        markup=False,
    )
    # Plain lines rather than a table: labels are long, and CI logs get grepped.
    for c in calls["changed"]:
        out.print(
            f"[yellow]![/yellow] {escape(c['label'])}  "
            f"({escape(c['tenant'])} / {escape(c['agent_id'])} / {escape(c['tool'])})"
        )
        out.print(f"    {_verdict_text(c['a'])}  ->  {_verdict_text(c['b'])}", markup=False)
    for u in calls["unparsed"]:
        out.print(f"unparsed {u['label']}: {u['code']} {u['message']}", markup=False)
    if not diff.differs:
        out.print("no differences in rules, defaults, declarations or calls")


@policy_group.command("diff")
@click.argument("a", type=click.Path(exists=True, path_type=Path))
@click.argument("b", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--calls",
    "call_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL of calls or an `aegis audit export` to replay (repeatable).",
)
@click.option("--now", help="Clock for calls without one (ISO 8601); default: now.")
@click.option(
    "--public-key",
    "key_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify bundle signatures with this PEM key (repeatable).",
)
@click.option("--exit-code", is_flag=True, help="Exit 1 when the policies differ.")
@_json_flag
def diff_cmd(
    *,
    a: Path,
    b: Path,
    call_files: tuple[Path, ...],
    now: str | None,
    key_paths: tuple[Path, ...],
    exit_code: bool,
    as_json: bool,
) -> None:
    """Show rule changes between two policies (folders, files or bundles) and the
    test-suite and recorded calls they decide differently."""
    at = _parse_now(now)
    keys = _read_keys(key_paths, as_json)
    side_a = _load_side("a", a, keys, as_json)
    side_b = _load_side("b", b, keys, as_json)
    diff = diff_policies(side_a, side_b, _gather_calls((a, b), call_files, at, as_json))
    if as_json:
        _emit_json(diff.to_dict())
    else:
        _print_diff(diff)
    sys.exit(EXIT_FAILED if exit_code and diff.differs else EXIT_OK)


@policy_group.command("schema")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to a file.")
def schema_cmd(output: Path | None) -> None:
    """Print the JSON Schema of the policy language (for editors)."""
    text = json.dumps(policy_json_schema(), indent=2, sort_keys=True) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
