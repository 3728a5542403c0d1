"""POST /v1/decide over a real socket: the example policies' decisions, the request
context, and every way a body can fail to become a call."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aegis.core.call import ToolCall, parse_call
from aegis.doors.api import DOOR
from aegis.errors import ErrorCode
from aegis.http.server import HttpLimits
from aegis.pipeline import Pipeline, RequestContext
from aegis.pipeline.stages import Refusal
from aegis.policy import CompiledPolicy, decide
from aegis.policy import testing as policy_tests
from aegis.policy.source import read_source

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

PAYMENT = {
    "tenant": "acme",
    "agent_id": "finance-agent",
    "tool": "stripe.create_payment",
    "params": {"amount": 120, "currency": "USD"},
}


def example_cases() -> list[tuple[str, Any, datetime]]:
    """(name, case, now) of every case in examples/*/policy.test.yaml."""
    cases = []
    for file in policy_tests.suite_files([EXAMPLES]):
        suite = policy_tests.TestSuite.model_validate(read_source(file).data)
        for case in suite.tests:
            now = case.now or suite.now or datetime.now(UTC)
            cases.append((f"{file.parent.name}: {case.name}", case, now))
    return cases


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_example_policies_decide_over_http_as_the_engine_does(
    serve_api, examples_policy: CompiledPolicy
) -> None:
    clock = Clock()
    pipeline = Pipeline.with_defaults(examples_policy, clock=clock)
    cases = example_cases()
    assert len(cases) >= 50
    seen_outcomes: set[str] = set()
    async with serve_api(pipeline) as api:
        for name, case, now in cases:
            clock.now = now
            # The expectation holds for the engine with all examples loaded together...
            assert policy_tests.run_case(examples_policy, case, now).passed, name
            resp = await api.client.post("/v1/decide", json=case.call)
            body = resp.json()
            if case.expect_error is not None:
                assert resp.status_code == 400, name
                assert body["error"]["code"] == case.expect_error, name
                assert body["error"]["type"] == "CallError"
                continue
            # ...and the API answers exactly the engine's decision, deny included: 200.
            assert resp.status_code == 200, (name, body)
            expected = decide(examples_policy, parse_call(case.call), now).to_dict()
            for key in ("decision_id", "approval_id"):
                expected.pop(key)
            got = dict(body)
            decision_id = got.pop("decision_id")
            approval_id = got.pop("approval_id")
            assert got == expected, name
            assert resp.headers["x-aegis-decision-id"] == decision_id
            assert resp.headers["x-aegis-code"] == body["code"]
            assert resp.headers["x-aegis-policy-version"] == body["policy_version"]
            if body["outcome"] == "approval_needed":
                assert approval_id == f"apr_{decision_id}"
                assert resp.headers["x-aegis-approval-id"] == approval_id
            else:
                assert approval_id is None and "x-aegis-approval-id" not in resp.headers
            seen_outcomes.add(body["outcome"])
        assert (
            api.metric(
                "aegis_decisions_total", outcome="deny", tool="stripe.create_payment", door=DOOR
            )
            == 0
        )  # no evidence sink configured in this pipeline: nothing counted
    assert seen_outcomes == {"allow", "deny", "sanitize", "approval_needed"}


class RecordingIdentity:
    def __init__(self) -> None:
        self.contexts: list[RequestContext] = []

    async def authenticate(self, call: ToolCall, ctx: RequestContext) -> ToolCall | Refusal:
        self.contexts.append(ctx)
        return call


@pytest.mark.parametrize(
    ("authorization", "credentials"),
    [
        ("Bearer tok.en-1", "tok.en-1"),
        ("bearer   tok2", "tok2"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        (None, None),
    ],
)
async def test_bearer_token_and_address_reach_the_pipeline(
    serve_api, examples_policy: CompiledPolicy, authorization: str | None, credentials: str | None
) -> None:
    pipeline = Pipeline.with_defaults(examples_policy)
    identity = RecordingIdentity()
    pipeline.identity = identity
    headers = {"authorization": authorization} if authorization else {}
    async with serve_api(pipeline) as api:
        resp = await api.client.post("/v1/decide", json=PAYMENT, headers=headers)
    assert resp.status_code == 200
    (ctx,) = identity.contexts
    assert (ctx.door, ctx.credentials, ctx.remote_addr) == ("api", credentials, "127.0.0.1")


async def test_refused_identity_is_a_deny_answered_200(
    serve_api, examples_policy: CompiledPolicy
) -> None:
    class Refusing:
        async def authenticate(self, call: ToolCall, ctx: RequestContext) -> ToolCall | Refusal:
            return Refusal(ErrorCode.IDENTITY_INVALID, "token expired")

    pipeline = Pipeline.with_defaults(examples_policy)
    pipeline.identity = Refusing()
    async with serve_api(pipeline) as api:
        resp = await api.client.post("/v1/decide", json=PAYMENT)
    assert resp.status_code == 200
    assert (resp.json()["outcome"], resp.json()["code"]) == ("deny", "identity.invalid")
    assert resp.headers["x-aegis-code"] == "identity.invalid"


DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "path"),
    [
        (b"{", "application/json", 400, "request.invalid_json", None),
        (b"", "application/json", 400, "request.invalid_json", None),
        (b'{"tenant": "acme"} trailing', "application/json", 400, "request.invalid_json", None),
        (b'{"tenant": "\xff\xfe"}', "application/json", 400, "request.invalid_json", None),
        (b"\xef\xbb\xbf{}", "application/json", 400, "request.invalid_json", None),  # BOM
        (DEEP.encode(), "application/json", 400, "request.invalid_json", None),
        (
            f'{{"tenant":"a","agent_id":"b","tool":"c","params":{{"x":{DEEP}}}}}'.encode(),
            "application/json",
            400,
            "request.invalid_json",
            None,
        ),
        (
            b'{"tenant":"a","tenant":"b","agent_id":"b","tool":"c"}',
            "application/json",
            400,
            "request.invalid_json",
            None,
        ),
        (
            b'{"tenant":"a","agent_id":"b","tool":"c","params":{"n":NaN}}',
            "application/json",
            400,
            "request.invalid_json",
            None,
        ),
        (
            b'{"tenant":"a","agent_id":"b","tool":"c","params":{"n":Infinity}}',
            "application/json",
            400,
            "request.invalid_json",
            None,
        ),
        (
            b'{"tenant":"a","agent_id":"b","tool":"c","params":{"n":' + b"9" * 5000 + b"}}",
            "application/json",
            400,
            "request.invalid_json",
            None,
        ),
        (
            b'{"tenant":"a","agent_id":"b","tool":"c","params":{"n":1e999}}',
            "application/json",
            400,
            "call.invalid_number",
            "params.n",
        ),
        (
            b'{"tenant":"a","agent_id":"b","tool":"c","params":{"n":'
            + b"[" * 40
            + b"]" * 40
            + b"}}",
            "application/json",
            400,
            "call.too_deep",
            None,
        ),
        (b"[]", "application/json", 400, "call.not_an_object", ""),
        (b'{"agent_id":"b","tool":"c"}', "application/json", 400, "call.missing_field", "tenant"),
        (
            b'{"tenant":"a","agent_id":"b","tool":"c","extra":1}',
            "application/json",
            400,
            "call.unknown_field",
            "extra",
        ),
        (
            b'{"tenant":"a","agent_id":"b","tool":"c","params":"no"}',
            "application/json",
            400,
            "call.invalid_type",
            "params",
        ),
        (
            b'{"tenant":"a","agent_id":"b","tool":"c","params":{"s":"\\ud800"}}',
            "application/json",
            400,
            "call.invalid_value",
            "params.s",
        ),
        (b"{}", None, 415, "request.unsupported_media_type", None),
        (b"{}", "text/plain", 415, "request.unsupported_media_type", None),
        (b"{}", "application/x-www-form-urlencoded", 415, "request.unsupported_media_type", None),
        (b"{}", "application/json; charset=latin-1", 415, "request.unsupported_media_type", None),
    ],
    ids=[
        "truncated",
        "empty",
        "trailing-garbage",
        "invalid-utf8",
        "bom",
        "nested-5000",
        "nested-5000-in-params",
        "repeated-name",
        "nan",
        "infinity",
        "5000-digit-integer",
        "overflowing-float",
        "params-40-deep",
        "not-an-object",
        "missing-tenant",
        "unknown-field",
        "params-not-object",
        "lone-surrogate",
        "no-content-type",
        "text-plain",
        "form",
        "latin-1",
    ],
)
async def test_bad_bodies_are_refused_with_a_stable_code(
    serve_api,
    examples_policy: CompiledPolicy,
    body: bytes,
    content_type: str | None,
    status: int,
    code: str,
    path: str | None,
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    async with serve_api(Pipeline.with_defaults(examples_policy)) as api:
        resp = await api.client.post("/v1/decide", content=body, headers=headers)
        assert resp.status_code == status, resp.text
        error = resp.json()["error"]
        assert error["code"] == code
        assert error["type"] == ("CallError" if code.startswith("call.") else "RequestError")
        if path is not None:
            assert error["path"] == path
        assert "x-aegis-decision-id" not in resp.headers  # nothing was decided
        assert api.refused(code) == 1


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
async def test_json_media_type_spellings(
    serve_api, examples_policy: CompiledPolicy, content_type: str
) -> None:
    async with serve_api(Pipeline.with_defaults(examples_policy)) as api:
        resp = await api.client.post(
            "/v1/decide", content=json.dumps(PAYMENT), headers={"content-type": content_type}
        )
    assert resp.status_code == 200


async def test_content_encoding_and_repeated_content_type(
    serve_api, examples_policy: CompiledPolicy
) -> None:
    async with serve_api(Pipeline.with_defaults(examples_policy)) as api:
        gz = await api.client.post(
            "/v1/decide",
            content=b"{}",
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert (gz.status_code, gz.json()["error"]["code"]) == (
            415,
            "request.unsupported_media_type",
        )
        twice = await api.client.post(
            "/v1/decide",
            content=b"{}",
            headers=[("content-type", "application/json"), ("content-type", "text/plain")],
        )
        assert (twice.status_code, twice.json()["error"]["code"]) == (
            400,
            "request.invalid_header",
        )


async def test_oversize_body_and_wrong_method_and_path_are_counted(
    serve_api, examples_policy: CompiledPolicy
) -> None:
    async with serve_api(
        Pipeline.with_defaults(examples_policy), http_limits=HttpLimits(max_body_bytes=1000)
    ) as api:
        big = await api.client.post("/v1/decide", json={**PAYMENT, "params": {"x": "y" * 2000}})
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "request.too_large"
        wrong = await api.client.get("/v1/decide")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        missing = await api.client.post("/v1/decide/", json=PAYMENT)
        assert missing.status_code == 404
        assert api.refused("request.too_large") == 1
        assert api.refused("request.method_not_allowed") == 1
        assert api.refused("request.not_found") == 1


async def test_sanitize_returns_the_sanitized_params_and_never_the_secret(
    serve_api, examples_policy: CompiledPolicy
) -> None:
    cases = [c for c in example_cases() if c[1].expect and c[1].expect.outcome == "sanitize"]
    assert cases
    _, case, now = cases[0]
    clock = Clock()
    clock.now = now
    async with serve_api(Pipeline.with_defaults(examples_policy, clock=clock)) as api:
        resp = await api.client.post("/v1/decide", json=case.call)
    body = resp.json()
    assert resp.status_code == 200 and body["outcome"] == "sanitize"
    assert body["redactions"] and body["sanitized_params"] is not None
    for redaction in body["redactions"]:
        assert set(redaction) == {"path", "detector"}
