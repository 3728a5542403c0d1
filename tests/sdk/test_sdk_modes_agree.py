"""In-process and HTTP give the same answer for every call in the examples' test suites.

DESIGN.md §2: "a behaviour fixed in the pipeline is fixed for all doors. Tests
prove the doors agree." Each case of each ``examples/*/*.test.yaml`` is asked
of LocalAegis and of AegisClient (through the stand-in decision API, on the
same policy and clock); outcome, code, rule ids, redactions, sanitized params,
approval and shadow must match, and malformed calls must be refused with the
same code by both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sdk_standin import EXAMPLES, StandInServer

from aegis.core.decision import Decision
from aegis.errors import ErrorCode
from aegis.pipeline import Pipeline
from aegis.policy import load_policy, policy_files
from aegis.policy import testing as suites
from aegis.policy.source import SourceDocument, read_source
from aegis.sdk import AegisClient, InvalidCall, LocalAegis


@dataclass(frozen=True)
class Case:
    suite: Path
    policies: tuple[Path, ...]
    now: datetime
    case: suites.TestCase


def _cases() -> list[Case]:
    found: list[Case] = []
    for file in sorted(EXAMPLES.glob("*/*.test.yaml")):
        parsed = read_source(file)
        assert isinstance(parsed, SourceDocument), parsed
        suite = suites.TestSuite.model_validate(parsed.data)
        if suite.policies is None:
            policies = tuple(p.resolve() for p in policy_files([file.parent]))
        else:
            policies = tuple((file.parent / p).resolve() for p in suite.policies)
        for case in suite.tests:
            now = case.now or suite.now or datetime(2026, 11, 23, 10, tzinfo=UTC)
            now = now if now.tzinfo else now.replace(tzinfo=UTC)
            found.append(Case(file, policies, now, case))
    return found


CASES = _cases()


def test_every_example_has_cases() -> None:
    suites = {c.suite.parent.name for c in CASES}
    assert len(suites) == len(list(EXAMPLES.glob("*/*.test.yaml"))) >= 8
    assert len(CASES) >= 50


def _comparable(decision: Decision) -> dict[str, Any]:
    body = decision.to_dict()
    # Ids are minted per decision; everything else must agree.
    body.pop("decision_id")
    body["approval_id"] = body["approval_id"] is not None
    return body


@pytest.fixture(scope="module")
def modes() -> Iterator[Any]:
    """One LocalAegis and one stand-in server per (policy set, clock), built on demand."""
    cache: dict[tuple[tuple[Path, ...], datetime], tuple[LocalAegis, AegisClient]] = {}
    servers: list[StandInServer] = []

    def get(case: Case) -> tuple[LocalAegis, AegisClient]:
        key = (case.policies, case.now)
        if key not in cache:
            policy = load_policy(list(case.policies))
            now = case.now
            local = LocalAegis(policy, clock=lambda: now)
            server = StandInServer(Pipeline.with_defaults(policy, clock=lambda: now)).start()
            servers.append(server)
            cache[key] = (local, AegisClient(server.url, token=server.token))
        return cache[key]

    yield get
    for local, client in cache.values():
        local.close()
        client.close()
    for server in servers:
        server.stop()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.suite.parent.name}:{c.case.name}" for c in CASES])
def test_local_and_http_agree(case: Case, modes: Any) -> None:
    local, client = modes(case)
    if case.case.expect_error is not None:
        codes = []
        for aegis in (local, client):
            with pytest.raises(InvalidCall) as caught:
                aegis.decide(case.case.call)
            codes.append(caught.value.code)
        assert codes == [ErrorCode(case.case.expect_error)] * 2
        return
    in_process = local.decide(case.case.call)
    over_http = client.decide(case.case.call)
    assert _comparable(over_http) == _comparable(in_process)
    # And both meet the suite's own expectation.
    assert case.case.expect is not None
    assert suites.check_decision(in_process, case.case.expect) == []
    assert suites.check_decision(over_http, case.case.expect) == []


def test_batch_agrees_with_single_calls(modes: Any) -> None:
    decidable = [c for c in CASES if c.case.expect_error is None]
    by_key: dict[tuple[tuple[Path, ...], datetime], list[Case]] = {}
    for c in decidable:
        by_key.setdefault((c.policies, c.now), []).append(c)
    for group in by_key.values():
        local, client = modes(group[0])
        calls = [c.case.call for c in group]
        in_process = local.decide_batch(calls)
        over_http = client.decide_batch(calls)
        assert [_comparable(d) for d in over_http] == [_comparable(d) for d in in_process]
