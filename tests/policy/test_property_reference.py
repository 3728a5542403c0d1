"""The indexed engine and the linear reference evaluator must agree on everything.

Hypothesis generates policies from a small vocabulary (so rules collide often:
same tools, overlapping globs, every effect and mode) and calls that hit and
miss them. Any disagreement fails the test *and* is written to
tests/policy/regressions/ as a case file, replayed forever after by
test_regressions_still_agree.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aegis.core.call import parse_call
from aegis.policy import compile_text, decide
from aegis.policy.reference import reference_evaluate

REGRESSIONS = Path(__file__).parent / "regressions"
NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)

TENANTS = ["t1", "t2"]
AGENTS = ["a1", "a2", "a3"]
LABELS = ["ops", "fin"]
TOOLS = ["x.read", "x.write", "y.call", "z"]
TOOL_PATTERNS = [*TOOLS, "x.*", "*", "y.?all"]
VALUES: list[Any] = [0, 1, 1.0, 5000, 5000.5, -3, "a", "staging", "production", True, None, [], {}]
HOSTS = ["api.example.com", "*.example.com", "10.0.0.1"]
DESTS = [
    "https://api.example.com/x",
    "https://a.b.example.com",
    "https://example.com",
    "http://evil.test@api.example.com",
    "https://api.example.com@evil.test",
    "http://0x0a.0.0.1/",
    "not a url",
]


def leaf_condition() -> st.SearchStrategy[dict[str, Any]]:
    param = st.sampled_from(["amount", "env", "name", "nested.v", "items[0]"])
    scalar = st.sampled_from(VALUES)
    num = st.sampled_from([0, 1, 100, 5000, 5000.5])
    return st.one_of(
        st.builds(lambda p, v: {"param": p, "eq": v}, param, scalar),
        st.builds(lambda p, v: {"param": p, "ne": v}, param, scalar),
        st.builds(lambda p, vs: {"param": p, "in": vs}, param, st.lists(scalar, max_size=3)),
        st.builds(
            lambda p, vs: {"param": p, "not_in": vs},
            param,
            st.lists(scalar, min_size=1, max_size=3),
        ),
        st.builds(lambda p, v: {"param": p, "gt": v}, param, num),
        st.builds(lambda p, v, w: {"param": p, "gte": v, "lte": w}, param, num, num),
        st.builds(lambda p, v: {"param": p, "max_length": v}, param, st.integers(0, 3)),
        st.builds(lambda p, b: {"param": p, "exists": b}, param, st.booleans()),
        st.builds(
            lambda p, rx: {"param": p, "matches": rx}, param, st.sampled_from(["^prod", "a", "^$"])
        ),
        st.builds(lambda p: {"param": p, "same_as": "tenant"}, param),
        st.builds(
            lambda hs: {"destination": {"host_in": hs}},
            st.lists(st.sampled_from(HOSTS), min_size=1),
        ),
        st.builds(
            lambda hs: {"destination": {"host_not_in": hs}},
            st.lists(st.sampled_from(HOSTS), min_size=1),
        ),
        st.just({"destination": {"ip_in": ["10.0.0.0/8"]}}),
        st.just({"destination": {"exists": False}}),
        st.builds(
            lambda ps: {"chain": {"parent_in": ps}}, st.lists(st.sampled_from(AGENTS), min_size=1)
        ),
        st.builds(lambda d: {"chain": {"depth_lte": d}}, st.integers(0, 2)),
        st.builds(lambda b: {"chain": {"follows_spawn_graph": b}}, st.booleans()),
        st.builds(lambda c: {"cost": {"gt": c}}, st.sampled_from([0, 0.5, 10])),
        st.just({"time": {"start": "09:00", "end": "17:00", "days": ["mon", "tue"]}}),
        st.just({"time": {"start": "22:00", "end": "11:00", "timezone": "Europe/Paris"}}),
    )


conditions = st.recursive(
    leaf_condition(),
    lambda inner: st.one_of(
        st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=4,
)


@st.composite
def rules(draw: st.DrawFn, index: int) -> dict[str, Any]:
    effect = draw(st.sampled_from(["allow", "deny", "sanitize", "approval_needed"]))
    match: dict[str, Any] = {
        "tools": draw(st.lists(st.sampled_from(TOOL_PATTERNS), min_size=1, max_size=2))
    }
    if draw(st.booleans()):
        match["tenants"] = draw(st.lists(st.sampled_from(TENANTS), min_size=1, max_size=2))
    if draw(st.integers(0, 3)) == 0:
        match["agents"] = draw(st.lists(st.sampled_from([*AGENTS, "a*"]), min_size=1, max_size=2))
    if draw(st.integers(0, 4)) == 0:
        match["labels"] = draw(st.lists(st.sampled_from(LABELS), min_size=1, max_size=2))
    if draw(st.integers(0, 4)) == 0:
        match["kind"] = draw(st.sampled_from(["read", "write"]))
    if draw(st.integers(0, 5)) == 0:
        match["phase"] = draw(st.sampled_from(["list", "call"]))
    rule: dict[str, Any] = {
        "id": f"r{index}",
        "match": match,
        "when": draw(st.lists(conditions, max_size=3)),
        "effect": effect,
    }
    if draw(st.integers(0, 3)) == 0:
        rule["mode"] = "shadow"
    if effect == "sanitize":
        rule["sanitize"] = draw(
            st.sampled_from(
                [{"fields": ["name"]}, {"detectors": ["email"]}, {"fields": ["items[*]"]}]
            )
        )
    if effect == "approval_needed":
        rule["approval"] = {"group": "g", "ttl": "5m"}
    return rule


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 8))
    doc: dict[str, Any] = {
        "apiVersion": "aegis.dev/v1",
        "kind": "Policy",
        "metadata": {"name": "generated"},
        "agents": [
            {"id": "a1", "may_spawn": ["a2"]},
            {"id": "a2", "may_spawn": ["a3"]},
            {"id": "a3"},
        ],
        "rules": [draw(rules(i)) for i in range(n)],
    }
    if draw(st.booleans()):
        doc["tools"] = [{"name": "x.read", "kind": "read"}, {"name": "y.*", "kind": "write"}]
    if draw(st.integers(0, 3)) == 0:
        doc["defaults"] = {"outcome": "allow"}
    return doc


@st.composite
def calls(draw: st.DrawFn) -> dict[str, Any]:
    params = {
        k: draw(st.sampled_from(VALUES))
        for k in draw(st.lists(st.sampled_from(["amount", "env", "name"]), unique=True))
    }
    if draw(st.booleans()):
        params["nested"] = {"v": draw(st.sampled_from(VALUES))}
    if draw(st.booleans()):
        params["items"] = draw(st.lists(st.sampled_from(VALUES), max_size=2))
    if draw(st.booleans()):
        params["name"] = draw(st.sampled_from(["t1", "jane@example.com", "x"]))
    call: dict[str, Any] = {
        "tenant": draw(st.sampled_from(TENANTS)),
        "agent_id": draw(st.sampled_from(AGENTS)),
        "tool": draw(st.sampled_from([*TOOLS, "unknown"])),
        "params": params,
        "kind": draw(st.sampled_from([None, "read", "write"])),
        "phase": draw(st.sampled_from(["call", "list"])),
        "parent_chain": draw(st.lists(st.sampled_from(AGENTS), max_size=2)),
        "agent_labels": draw(st.lists(st.sampled_from(LABELS), max_size=2)),
    }
    if draw(st.booleans()):
        call["destination"] = draw(st.sampled_from(DESTS))
    if draw(st.booleans()):
        call["cost_estimate"] = draw(st.sampled_from([0, 0.25, 11]))
    return call


def disagreement(
    doc: dict[str, Any], raw_call: dict[str, Any], now: datetime, *, record: bool = False
) -> str | None:
    policy = compile_text(json.dumps(doc), "generated.json")
    call = parse_call(raw_call)
    d = decide(policy, call, now)
    ref = reference_evaluate(policy, call, now)
    ref_ids = ref.rule_ids
    if str(ref.outcome) == "approval_needed":
        ref_ids = ref_ids + ref.sanitizer_ids
    engine_shadow = d.shadow.outcome if d.shadow else d.outcome
    got = (str(d.outcome), list(d.rule_ids), str(engine_shadow))
    if record:  # --hypothesis-show-statistics shows the mix of outcomes is real
        event(f"outcome={d.outcome}")
        if d.shadow:
            event("shadow differs")
    want = (str(ref.outcome), list(ref_ids), str(ref.shadow_outcome))
    if got != want:
        return f"engine {got} != reference {want}"
    return None


def keep_regression(doc: dict[str, Any], raw_call: dict[str, Any], why: str) -> Path:
    body = {"why": why, "policy": doc, "call": raw_call, "now": NOW.isoformat()}
    text = yaml.safe_dump(body, sort_keys=False)
    path = REGRESSIONS / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    REGRESSIONS.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(doc=policies(), raw_calls=st.lists(calls(), min_size=1, max_size=5))
def test_engine_agrees_with_reference(doc: dict[str, Any], raw_calls: list[dict[str, Any]]) -> None:
    for raw_call in raw_calls:
        why = disagreement(doc, raw_call, NOW, record=True)
        if why is not None:
            path = keep_regression(doc, raw_call, why)
            raise AssertionError(f"{why}; kept as {path}")


def test_regressions_still_agree() -> None:
    for path in sorted(REGRESSIONS.glob("*.yaml")):
        case = yaml.safe_load(path.read_text(encoding="utf-8"))
        now = datetime.fromisoformat(case["now"])
        assert disagreement(case["policy"], case["call"], now) is None, path.name
