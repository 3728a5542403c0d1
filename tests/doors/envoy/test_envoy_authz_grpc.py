"""ext_authz over gRPC, with a grpc.aio client playing Envoy against the real server."""

from __future__ import annotations

import json
import random
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy_rig import (
    FINANCE,
    HOST,
    MAPPING,
    SLACK,
    Req,
    check_request,
    grpc_channel,
    json_req,
    make_rig,
    run,
    serve,
    verdict_from_check,
)
from google.rpc import code_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.doors.envoy import AuthzSanitize, MappedCall, build_authz_grpc_server
from aegis.doors.envoy.authz_grpc import AuthorizationService, check_response, request_from_check
from aegis.doors.envoy.gate import DOOR_AUTHZ_GRPC, EnvoyGate
from aegis.policy import decide
from aegis.testing.pipelines import LimitedStage

CHECK = "/envoy.service.auth.v3.Authorization/Check"


def payment(amount: float, currency: str = "USD") -> Req:
    return json_req(
        "POST", "/v1/payments", "api.stripe.com", FINANCE, {"amount": amount, "currency": currency}
    )


def test_allow_adds_decision_headers_upstream_and_to_the_client() -> None:
    async def main() -> None:
        rig = make_rig()
        async with serve("grpc", rig) as decide:
            verdict = await decide(payment(120))
        assert (verdict.status, verdict.rpc_code) == (200, code_pb2.OK)
        assert verdict.headers["x-aegis-code"] == "decision.allowed"
        decision_id = verdict.headers["x-aegis-decision-id"]
        assert verdict.client_headers == {"x-aegis-decision-id": decision_id}
        (line,) = rig.events("decision")
        assert line["decision_id"] == decision_id
        assert (line["door"], line["tool"], line["outcome"]) == (
            DOOR_AUTHZ_GRPC,
            "stripe.create_payment",
            "allow",
        )

    run(main())


def test_deny_is_permission_denied_with_403_and_the_json_body() -> None:
    async def main() -> None:
        async with serve("grpc", make_rig()) as decide:
            verdict = await decide(payment(10, "BTC"))
            egress = await decide(
                json_req("POST", "/upload", "example-exfil.xyz", FINANCE, {"ssn": "x"})
            )
        assert (verdict.status, verdict.rpc_code) == (403, code_pb2.PERMISSION_DENIED)
        assert verdict.headers["content-type"] == "application/json"
        error = verdict.json["error"]
        assert error["type"] == "PolicyViolation"
        assert (error["code"], error["outcome"]) == ("decision.default_deny", "deny")
        assert error["decision_id"] == verdict.headers["x-aegis-decision-id"]
        assert egress.status == 403
        assert egress.json["error"]["rule_ids"] == ["egress-unknown-domain"]

    run(main())


def test_approval_needed_is_428_with_the_approval_id() -> None:
    async def main() -> None:
        async with serve("grpc", make_rig()) as decide:
            verdict = await decide(payment(6000))
        assert (verdict.status, verdict.rpc_code) == (428, code_pb2.FAILED_PRECONDITION)
        approval_id = verdict.headers["x-aegis-approval-id"]
        assert approval_id.startswith("apr_")
        assert verdict.json["error"]["approval_id"] == approval_id

    run(main())


def test_limits_are_429_with_retry_after() -> None:
    async def main() -> None:
        async with serve("grpc", make_rig(limits=LimitedStage(12.5))) as decide:
            verdict = await decide(payment(120))
        assert (verdict.status, verdict.rpc_code) == (429, code_pb2.RESOURCE_EXHAUSTED)
        assert verdict.headers["retry-after"] == "13"
        assert verdict.json["error"]["retry_after"] == 12.5
        assert verdict.json["error"]["code"] == "decision.limit_exceeded"

    run(main())


def test_sanitize_that_must_rewrite_is_refused_by_default() -> None:
    async def main() -> None:
        rig = make_rig()
        body = {"channel": "#incidents", "text": "card 4111 1111 1111 1111"}
        async with serve("grpc", rig) as decide:
            refused = await decide(
                json_req("POST", "/api/chat.postMessage", "slack.com", SLACK, body)
            )
            clean = await decide(
                json_req(
                    "POST",
                    "/api/chat.postMessage",
                    "slack.com",
                    SLACK,
                    {"channel": "#eng-status", "text": "deploy 42 finished"},
                )
            )
        assert (refused.status, refused.rpc_code) == (403, code_pb2.PERMISSION_DENIED)
        assert refused.json["error"]["outcome"] == "sanitize"
        assert "ext_authz cannot rewrite" in refused.json["error"]["reason"]
        assert "4111" not in refused.body.decode()
        # Nothing to redact: the request goes through unchanged.
        assert clean.status == 200
        assert clean.headers["x-aegis-code"] == "decision.sanitized"
        assert (
            rig.metric(
                "aegis_requests_refused_total", door=DOOR_AUTHZ_GRPC, code="decision.sanitized"
            )
            == 1
        )
        (line,) = rig.events("envoy.sanitize_refused")
        assert line["decision_id"] == refused.headers["x-aegis-decision-id"]

    run(main())


def test_sanitize_headers_only_mode_lets_it_through_marked() -> None:
    async def main() -> None:
        body = {"channel": "#incidents", "text": "mail jane@example.com"}
        async with serve("grpc", make_rig(), sanitize=AuthzSanitize.HEADERS_ONLY) as decide:
            verdict = await decide(
                json_req("POST", "/api/chat.postMessage", "slack.com", SLACK, body)
            )
        assert verdict.status == 200
        assert verdict.headers["x-aegis-sanitize"] == "skipped"

    run(main())


def test_missing_identity_is_unauthenticated_401() -> None:
    async def main() -> None:
        rig = make_rig()
        async with serve("grpc", rig) as decide:
            verdict = await decide(Req("GET", "/v1/balance", "api.stripe.com", {}))
        assert (verdict.status, verdict.rpc_code) == (401, code_pb2.UNAUTHENTICATED)
        assert verdict.headers["www-authenticate"].startswith("Bearer")
        assert verdict.json["error"]["code"] == "identity.missing"
        assert (
            rig.metric(
                "aegis_requests_refused_total", door=DOOR_AUTHZ_GRPC, code="identity.missing"
            )
            == 1
        )
        (line,) = rig.events("request.refused")
        assert (line["code"], line["remote_addr"]) == ("identity.missing", "10.1.2.3")
        assert not rig.events("decision")  # no call existed, so no decision

    run(main())


@pytest.mark.parametrize(
    ("req", "status", "code"),
    [
        (
            Req(
                "POST",
                "/v1/payments",
                "api.stripe.com",
                {**FINANCE, "content-type": "application/json"},
                b'{"amount": 1,',
            ),
            400,
            "request.invalid_json",
        ),
        (
            Req(
                "POST",
                "/v1/payments",
                "api.stripe.com",
                {**FINANCE, "content-type": "application/json"},
                b'{"amount": "\xff"}',
            ),
            400,
            "request.invalid_json",
        ),
        (
            Req(
                "POST",
                "/v1/payments",
                "api.stripe.com",
                {**FINANCE, "content-type": "application/json"},
                b"[" * 5000,
            ),
            400,
            "request.invalid_json",
        ),
        (
            Req(
                "POST",
                "/v1/payments",
                "api.stripe.com",
                {**FINANCE, "content-type": "application/json"},
                json.dumps({"a": "x" * (1 << 20)}).encode(),
            ),
            413,
            "request.too_large",
        ),
        (
            Req(
                "POST",
                "/v1/payments",
                "api.stripe.com",
                {**FINANCE, "content-type": "text/plain"},
                b"amount=1",
            ),
            415,
            "request.unsupported_media_type",
        ),
        (
            Req(
                "GET",
                "/v1/balance",
                "api.stripe.com",
                {**FINANCE, "x-aegis-tenant": "acme\r\nx-aegis-agent-id: root"},
            ),
            400,
            "request.invalid_header",
        ),
        (
            Req("GET", "/v1/balance", "api.stripe.com@evil.example", FINANCE),
            400,
            "request.invalid_header",
        ),
        (Req("GET", "/v1/%2e%2e%2fbalance", "api.stripe.com", FINANCE), 400, "request.malformed"),
    ],
    ids=[
        "malformed-json",
        "invalid-utf8",
        "deep-nesting",
        "oversize-body",
        "not-json",
        "header-injection",
        "userinfo-host",
        "encoded-slash",
    ],
)
def test_bad_input_is_refused_never_allowed(req: Req, status: int, code: str) -> None:
    async def main() -> None:
        async with serve("grpc", make_rig()) as decide:
            verdict = await decide(req)
        assert verdict.status == status
        assert verdict.rpc_code in {code_pb2.INVALID_ARGUMENT, code_pb2.PERMISSION_DENIED}
        assert verdict.json["error"]["code"] == code

    run(main())


def test_merged_header_form_is_read_too() -> None:
    """Without encode_raw_headers Envoy sends the ``headers`` map, repeats comma-joined."""

    async def main() -> None:
        rig = make_rig()
        server = build_authz_grpc_server(rig.pipeline, MAPPING)
        port = await server.start(HOST, 0)
        try:
            async with grpc_channel(port) as channel:
                stub = external_auth_pb2_grpc.AuthorizationStub(channel)
                ok = await stub.Check(check_request(payment(120), raw_headers=False))
                twice = Req(
                    "GET",
                    "/v1/balance",
                    "api.stripe.com",
                    [*FINANCE.items(), ("x-aegis-tenant", "globex")],
                )
                merged = await stub.Check(check_request(twice, raw_headers=False))
        finally:
            await server.stop(0)
        assert ok.status.code == code_pb2.OK
        # "acme,globex" is not one tenant: refused, never decided as either.
        assert verdict_from_check(merged).status == 400

    run(main())


def test_client_supplied_aegis_headers_are_overwritten_not_appended() -> None:
    async def main() -> None:
        async with serve("grpc", make_rig()) as decide:
            spoofed = Req(
                "GET",
                "/v1/balance",
                "api.stripe.com",
                {**FINANCE, "x-aegis-decision-id": "forged", "x-aegis-code": "decision.allowed"},
            )
            verdict = await decide(spoofed)
        assert verdict.status == 200
        assert verdict.headers["x-aegis-decision-id"] != "forged"

    run(main())
    option = check_response_for_allow().ok_response.headers[0]
    assert option.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def check_response_for_allow() -> Any:
    from aegis.doors.envoy.answer import Answer
    from aegis.errors import ErrorCode

    return check_response(
        Answer(200, (("x-aegis-decision-id", "d1"),), b"", ErrorCode.DECISION_ALLOWED, "", "d1")
    )


# -- malformed protobuf and oversize messages -------------------------------------------------


async def _raw_check(channel: grpc.aio.Channel, payload: bytes) -> tuple[grpc.StatusCode, Any]:
    """Send bytes as the Check request body, with no serializer in the way."""
    method = channel.unary_unary(CHECK, request_serializer=None, response_deserializer=None)
    try:
        raw = await method(payload, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), None
    return grpc.StatusCode.OK, external_auth_pb2.CheckResponse.FromString(raw)


def _garbage() -> list[bytes]:
    rng = random.Random(1234)
    crafted = [
        b"\xff\xff\xff\xff",  # an invalid tag
        b"\x0a\x05abc",  # a length that runs past the end
        b"\x0a\xff\xff\xff\xff\x0f",  # a length larger than the message
        # attributes.request.http.body (a string) holding invalid UTF-8
        bytes.fromhex("0a0a")
        + bytes.fromhex("2208")
        + bytes.fromhex("1206")
        + b"\x5a\x04\xff\xfe\xfd\xfc",
        b"\x08\x01",  # a varint where a message is expected
    ]
    return crafted + [rng.randbytes(rng.randrange(1, 300)) for _ in range(60)]


def test_malformed_protobuf_bytes_get_an_error_never_ok() -> None:
    async def main() -> None:
        rig = make_rig()
        server = build_authz_grpc_server(rig.pipeline, MAPPING, metrics=rig.metrics)
        port = await server.start(HOST, 0)
        outcomes = []
        try:
            async with grpc_channel(port) as channel:
                for payload in _garbage():
                    outcomes.append(await _raw_check(channel, payload))
                # The server is still healthy afterwards.
                stub = external_auth_pb2_grpc.AuthorizationStub(channel)
                after = await stub.Check(check_request(payment(120)))
        finally:
            await server.stop(0)
        for code, response in outcomes:
            if code is grpc.StatusCode.OK:  # bytes that happened to parse
                assert response.status.code != code_pb2.OK
            else:
                assert code in {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
        assert sum(code is not grpc.StatusCode.OK for code, _ in outcomes) >= 5
        assert after.status.code == code_pb2.OK

    run(main())


def test_a_message_over_the_grpc_limit_is_resource_exhausted() -> None:
    async def main() -> None:
        rig = make_rig()
        server = build_authz_grpc_server(rig.pipeline, MAPPING)
        port = await server.start(HOST, 0)
        try:
            async with grpc_channel(port) as channel:
                huge = Req(
                    "POST",
                    "/v1/payments",
                    "api.stripe.com",
                    {**FINANCE, "content-type": "application/json"},
                    b" " * (2 << 20),
                )
                code, _ = await _raw_check(channel, check_request(huge).SerializeToString())
        finally:
            await server.stop(0)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED

    run(main())


def test_a_bug_in_the_door_is_an_error_status_never_ok() -> None:
    async def main() -> None:
        rig = make_rig()

        class Boom:
            def map(self, request: object) -> object:
                raise RuntimeError("bug")

        gate = EnvoyGate(
            rig.pipeline, MAPPING, door=DOOR_AUTHZ_GRPC, can_rewrite=False, metrics=rig.metrics
        )
        gate.mapper = Boom()  # type: ignore[assignment]
        service = AuthorizationService(gate)
        server = grpc.aio.server()
        service.register(server)
        port = server.add_insecure_port(f"{HOST}:0")
        await server.start()
        try:
            async with grpc_channel(port) as channel:
                stub = external_auth_pb2_grpc.AuthorizationStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Check(check_request(payment(120)))
        finally:
            await server.stop(0)
        assert caught.value.code() is grpc.StatusCode.INTERNAL
        assert (
            rig.metric(
                "aegis_requests_refused_total", door=DOOR_AUTHZ_GRPC, code="pipeline.internal_error"
            )
            == 1
        )

    run(main())


# -- CheckRequest fuzz -----------------------------------------------------------------------

_text = st.text(max_size=30)
_headers = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "x-aegis-tenant",
                "x-aegis-agent-id",
                "content-type",
                "content-length",
                "x-envoy-auth-partial-body",
                ":path",
                "authorization",
                "x-aegis-session",
            ]
        )
        | _text,
        _text,
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", ""]) | _text,
    path=st.sampled_from(["/v1/payments", "/v1/balance", "/"]) | _text,
    host=st.sampled_from(["api.stripe.com", "slack.com", ""]) | _text,
    scheme=st.sampled_from(["https", "http", "", "ftp"]),
    headers=_headers,
    raw_body=st.none() | st.binary(max_size=80),
    raw_form=st.booleans(),
)
def test_fuzz_check_request_fields(
    method: str,
    path: str,
    host: str,
    scheme: str,
    headers: list[tuple[str, str]],
    raw_body: bytes | None,
    raw_form: bool,
) -> None:
    """Any CheckRequest gets a well-formed CheckResponse; OK only for a call the
    policy allows, and a refusal never carries OK."""
    rig = _fuzz_rig()
    req = Req(method, path, host, [*FINANCE.items(), *headers], raw_body, scheme)
    check = check_request(req, raw_headers=raw_form)
    envoy_request = request_from_check(
        external_auth_pb2.CheckRequest.FromString(check.SerializeToString())
    )
    answer = run(rig.check(envoy_request))
    response = external_auth_pb2.CheckResponse.FromString(
        check_response(answer).SerializeToString()
    )
    mapped = rig.mapper.map(envoy_request)
    if response.status.code == code_pb2.OK:
        assert isinstance(mapped, MappedCall)
        policy = rig.pipeline.policy.current
        assert decide(policy, mapped.call, rig.pipeline.clock()).permits
    else:
        assert response.denied_response.status.code in {400, 401, 403, 413, 415, 428, 429}
        assert json.loads(response.denied_response.body)["error"]["code"]


_FUZZ: list[EnvoyGate] = []


def _fuzz_rig() -> EnvoyGate:
    if not _FUZZ:
        rig = make_rig()
        _FUZZ.append(EnvoyGate(rig.pipeline, MAPPING, door=DOOR_AUTHZ_GRPC, can_rewrite=False))
    return _FUZZ[0]


def test_traceparent_reaches_the_decision_span() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rig = make_rig(tracer=provider.get_tracer("aegis"))
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    async def main() -> None:
        async with serve("grpc", rig) as decide:
            req = payment(120)
            traced = Req(
                req.method,
                req.path,
                req.host,
                {**dict(req.headers), "traceparent": parent, "tracestate": "v=1"},
                req.body,
            )
            await decide(traced)

    run(main())
    (span,) = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert span.attributes["aegis.door"] == DOOR_AUTHZ_GRPC
