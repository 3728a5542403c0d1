"""The exported Rego decides every conformance and example call as the native engine does."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis.core.call import ToolCall, parse_call
from aegis.errors import CallError, PolicyLoadError
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.compiler import compile_sources
from aegis.policy.engine import decide
from aegis.policy.reference import reference_evaluate
from aegis.policy.rego import RegoExport, export_rego, rego_input
from aegis.policy.source import parse_source
from aegis.testing.conformance import DEFAULT_NOW, compile_case, load_cases

regorus = pytest.importorskip("regorus")

REPO = Path(__file__).resolve().parents[2]
MIN_COMPARED = 150


def _rego_decide(export: RegoExport, policy: CompiledPolicy, call: ToolCall, now: datetime) -> Any:
    engine = regorus.Engine()
    engine.add_policy("policy.rego", export.text)
    engine.set_input_json(json.dumps(rego_input(policy, call, now)))
    result = engine.eval_query("data.aegis.decision")
    return result["result"][0]["expressions"][0]["value"]


def _calls() -> list[tuple[str, CompiledPolicy, Any, datetime]]:
    """(label, policy, raw call, now) for every conformance and example call."""
    out: list[tuple[str, CompiledPolicy, Any, datetime]] = []
    for case in load_cases(REPO / "tests" / "conformance"):
        if not case.spec.cases:
            continue
        try:
            policy = compile_case(case)
        except PolicyLoadError:
            continue
        for i, cc in enumerate(case.spec.cases):
            now = cc.now or case.spec.now or DEFAULT_NOW
            out.append((f"{case.name}[{i}]", policy, cc.call, now))
    for suite_path in sorted((REPO / "examples").glob("*/*.test.yaml")):
        suite = yaml.safe_load(suite_path.read_text(encoding="utf-8"))
        names = suite.get("policies")
        files = (
            [suite_path.parent / n for n in names]
            if names
            else sorted(
                p for p in suite_path.parent.glob("*.yaml") if not p.name.endswith(".test.yaml")
            )
        )
        policy = compile_sources(
            [parse_source(p.read_text(encoding="utf-8"), str(p)) for p in files]
        )
        default_now = suite.get("now") or DEFAULT_NOW
        for test in suite["tests"]:
            now = test.get("now") or default_now
            if isinstance(now, str):
                now = datetime.fromisoformat(now)
            label = f"{suite_path.parent.name}:{test['name']}"
            out.append((label, policy, test["call"], now))
    return out


def test_rego_export_agrees_with_the_engine() -> None:
    exports: dict[int, RegoExport] = {}
    compared = 0
    skipped: Counter[str] = Counter()
    disagreements: list[str] = []
    for label, policy, raw, when in _calls():
        now = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        try:
            call = parse_call(raw)
        except CallError:
            continue
        export = exports.get(id(policy))
        if export is None:
            export = exports[id(policy)] = export_rego(policy)
        native = decide(policy, call, now)
        shadow = native.shadow.outcome if native.shadow is not None else native.outcome
        # A call is skipped only when an unsupported (so excluded) rule matches it:
        # a rule that does not match cannot change the decision.
        matching = {t.rule_id for t in reference_evaluate(policy, call, now).traces if t.matched}
        involved = [u for u in export.unsupported if u.rule_id in matching]
        if involved:
            skipped[", ".join(sorted({u.construct for u in involved}))] += 1
            continue
        got = _rego_decide(export, policy, call, now)
        sanitizers = tuple(
            r
            for r in native.rule_ids
            if r in {x.id for x in policy.rules if x.effect == "sanitize"}
        )
        want = {
            "outcome": str(native.outcome),
            "rule_ids": list(native.rule_ids),
            "sanitizer_ids": sorted(sanitizers),
            "shadow_outcome": str(shadow),
        }
        got_cmp = {**got, "sanitizer_ids": sorted(got["sanitizer_ids"])}
        if got_cmp != want:
            disagreements.append(f"{label}: rego {got_cmp} != engine {want}")
        compared += 1
    print(f"rego export: compared {compared}, skipped {sum(skipped.values())}")
    for reason, n in skipped.most_common():
        print(f"  skipped {n}: policy has unsupported {reason}")
    assert not disagreements, "\n".join(disagreements[:20])
    assert compared >= MIN_COMPARED


def test_unsupported_constructs_are_reported() -> None:
    policy = compile_sources(
        [
            parse_source(
                yaml.safe_dump(
                    {
                        "apiVersion": "aegis.dev/v1",
                        "kind": "Policy",
                        "metadata": {"name": "t"},
                        "rules": [
                            {
                                "id": "hosts",
                                "effect": "deny",
                                "when": [{"param": "url", "host_in": ["example.com"]}],
                            },
                            {"id": "ok", "effect": "allow"},
                        ],
                    }
                ),
                "t.yaml",
            )
        ]
    )
    export = export_rego(policy)
    assert [(u.rule_id, u.construct) for u in export.unsupported] == [("hosts", "host_in")]
    assert "rule_1" in export.text
    assert '"hosts"' not in export.text
