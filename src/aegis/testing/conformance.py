"""Conformance cases as data: one YAML file per behaviour, replayed on every path.

A case file holds a policy (inline mapping, or raw text when positions matter),
then either calls with the decisions they must get, or the compile error or
warnings the policy must produce::

    description: gt is strict
    policy: {apiVersion: aegis.dev/v1, kind: Policy, metadata: {name: t}, rules: [...]}
    now: "2026-11-23T10:00:00Z"
    cases:
      - call: {tenant: t, agent_id: a, tool: x, params: {amount: 5}}
        expect: {outcome: allow, rule_ids: [r1]}
      - call: {agent_id: a, tool: x}
        expect_error: call.missing_field

    # or, for a policy that must not compile:
    policy_text: |
      apiVersion: aegis.dev/v1
      ...
    expect_error: {code: policy.invalid_regex, line: 9, column: 18}

    # or, for one that compiles with warnings (the exact set of codes):
    expect_warnings: [policy.rule_unreachable]

The native engine runs them in tests/conformance; the Rego export and each door
replay the same files (see the bundle and doors work).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aegis.core.call import ToolCall, parse_call
from aegis.core.decision import Decision
from aegis.errors import CallError, PolicyLoadError
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.compiler import compile_sources
from aegis.policy.engine import decide
from aegis.policy.source import parse_source
from aegis.policy.testing import Expectation, check_decision

DEFAULT_NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class _NoAliasDumper(yaml.SafeDumper):
    """Policies refuse YAML aliases, so shared objects are written out in full."""

    def ignore_aliases(self, data: Any) -> bool:  # noqa: ARG002 - PyYAML's signature
        return True


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectedError(_Model):
    code: str
    line: int | None = None
    column: int | None = None
    message_contains: str | None = None


class CallCase(_Model):
    call: Any  # usually a mapping; anything else exercises call.not_an_object
    now: datetime | None = None
    expect: Expectation | None = None
    expect_error: str | None = None


class ExtraFile(_Model):
    file: str
    text: str


class CaseFile(_Model):
    description: str
    policy: dict[str, Any] | None = None
    policy_text: str | None = None
    policy_format: str | None = Field(default=None, pattern="^(yaml|json)$")
    extra_files: list[ExtraFile] = Field(default_factory=list)
    now: datetime | None = None
    cases: list[CallCase] = Field(default_factory=list)
    expect_error: ExpectedError | None = None
    expect_warnings: list[str] | None = None

    @model_validator(mode="after")
    def _one_policy(self) -> CaseFile:
        if (self.policy is None) == (self.policy_text is None):
            raise ValueError("give exactly one of policy, policy_text")
        if self.expect_error is None and not self.cases and self.expect_warnings is None:
            raise ValueError("a case file needs cases, expect_error or expect_warnings")
        return self


@dataclass(frozen=True, slots=True)
class ConformanceCase:
    name: str
    path: Path
    spec: CaseFile

    def sources(self) -> list[tuple[str, str]]:
        fmt = self.spec.policy_format or "yaml"
        name = f"{self.name}.{fmt}"
        if self.spec.policy_text is not None:
            text = self.spec.policy_text
        elif fmt == "json":
            text = json.dumps(self.spec.policy, indent=2)
        else:
            text = yaml.dump(self.spec.policy, Dumper=_NoAliasDumper, sort_keys=False)
        return [(name, text)] + [(f.file, f.text) for f in self.spec.extra_files]


def load_cases(directory: Path) -> list[ConformanceCase]:
    cases = []
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        cases.append(ConformanceCase(path.stem, path, CaseFile.model_validate(data)))
    return cases


def compile_case(case: ConformanceCase) -> CompiledPolicy:
    return compile_sources([parse_source(text, file) for file, text in case.sources()])


Decider = Callable[[CompiledPolicy, ToolCall, datetime], Decision]


def run_conformance_case(case: ConformanceCase, decider: Decider = decide) -> list[str]:
    """Every difference between what the case expects and what happened."""
    spec = case.spec
    try:
        policy = compile_case(case)
    except PolicyLoadError as exc:
        if spec.expect_error is None:
            return [f"policy did not compile: {d}" for d in exc.diagnostics]
        want = spec.expect_error
        for d in exc.diagnostics:
            if str(d.code) != want.code:
                continue
            if want.line is not None and d.line != want.line:
                continue
            if want.column is not None and d.column != want.column:
                continue
            if want.message_contains is not None and want.message_contains not in d.message:
                continue
            return []
        got = "; ".join(str(d) for d in exc.diagnostics)
        return [f"want error {want.model_dump(exclude_none=True)}, got: {got}"]
    if spec.expect_error is not None:
        return [f"want error {spec.expect_error.code}, but the policy compiled"]
    problems = []
    if spec.expect_warnings is not None:
        got_codes = sorted({str(w.code) for w in policy.warnings})
        if got_codes != sorted(set(spec.expect_warnings)):
            detail = "; ".join(str(w) for w in policy.warnings)
            problems.append(
                f"warnings: got {got_codes}, want {sorted(spec.expect_warnings)} ({detail})"
            )
    for i, cc in enumerate(spec.cases):
        now = cc.now or spec.now or DEFAULT_NOW
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        try:
            call = parse_call(cc.call)
        except CallError as exc:
            if cc.expect_error != str(exc.code):
                problems.append(
                    f"case {i}: call refused with {exc}, want {cc.expect_error or cc.expect}"
                )
            continue
        if cc.expect_error is not None:
            problems.append(f"case {i}: want call error {cc.expect_error}, got a decision")
            continue
        if cc.expect is None:
            problems.append(f"case {i}: neither expect nor expect_error")
            continue
        decision = decider(policy, call, now)
        problems.extend(f"case {i}: {p}" for p in check_decision(decision, cc.expect))
    return problems
