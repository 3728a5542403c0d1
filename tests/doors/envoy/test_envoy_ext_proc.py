"""ext_proc: a grpc.aio client playing Envoy's side of the Process stream."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from envoy_rig import (
    FINANCE,
    HOST,
    SLACK,
    Req,
    RpcError,
    exchange,
    ext_proc_body,
    ext_proc_headers,
    grpc_channel,
    json_req,
    make_rig,
    run,
    serve,
    verdict_from_ext_proc,
)

from aegis.doors.envoy import MappingConfig, build_ext_proc_server
from aegis.doors.envoy.gate import DOOR_EXT_PROC
from aegis.policy import compile_text
from aegis.telemetry import JsonLog
from aegis.testing.pipelines import LimitedStage

PROCESS = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"


def slack(text: str, **extra: Any) -> Req:
    body = {"channel": "#incidents", "text": text, **extra}
    return json_req("POST", "/api/chat.postMessage", "slack.com", SLACK, body)


def test_sanitize_rewrites_the_body_with_the_examples_redactions() -> None:
    async def main() -> None:
        rig = make_rig()
        text = "customer jane.doe@example.com paid with 4111 1111 1111 1111"
        async with serve("ext_proc", rig) as decide:
            verdict = await decide(slack(text, blocks=[{"text": "key AKIAIOSFODNN7EXAMPLE"}]))
        assert verdict.status == 200 and verdict.rewritten
        upstream = json.loads(verdict.body)
        assert upstream == {
            "channel": "#incidents",
            "text": "customer [REDACTED:email] paid with [REDACTED:credit_card]",
            "blocks": [{"text": "key [REDACTED:aws_access_key]"}],
        }
        # BUFFERED + SEND: Envoy keeps content-length; the processor must fix it.
        assert verdict.headers["content-length"] == str(len(verdict.body))
        assert verdict.headers["x-aegis-code"] == "decision.sanitized"
        (line,) = rig.events("decision")
        assert line["decision_id"] == verdict.headers["x-aegis-decision-id"]
        assert {(r["path"], r["detector"]) for r in line["redactions"]} == {
            ("text", "email"),
            ("text", "credit_card"),
            ("blocks[0].text", "aws_access_key"),
        }
        assert "jane.doe" not in rig.log.getvalue()  # where and why, never what

    run(main())


def test_sanitize_with_nothing_to_redact_passes_the_body_unchanged() -> None:
    async def main() -> None:
        async with serve("ext_proc", make_rig()) as decide:
            verdict = await decide(slack("deploy 42 finished"))
        assert verdict.status == 200
        assert not verdict.rewritten
        assert "content-length" not in verdict.headers

    run(main())


def test_every_other_outcome_over_ext_proc() -> None:
    async def main() -> None:
        def payment(amount: float) -> Req:
            return json_req(
                "POST",
                "/v1/payments",
                "api.stripe.com",
                FINANCE,
                {"amount": amount, "currency": "USD"},
            )

        rig = make_rig()
        async with serve("ext_proc", rig) as decide:
            allow = await decide(payment(120))
            read = await decide(Req("GET", "/v1/balance", "api.stripe.com", FINANCE))
            deny = await decide(
                json_req(
                    "POST",
                    "/api/chat.postMessage",
                    "slack.com",
                    SLACK,
                    {"channel": "#random", "text": "hi"},
                )
            )
            approval = await decide(payment(5000.01))
            anonymous = await decide(Req("GET", "/v1/balance", "api.stripe.com", {}))
        async with serve("ext_proc", make_rig(limits=LimitedStage(1))) as decide:
            limited = await decide(payment(120))
        assert allow.status == 200 and allow.headers["x-aegis-code"] == "decision.allowed"
        assert read.status == 200  # decided at request_headers (no body)
        assert deny.status == 403
        assert deny.json["error"]["rule_ids"] == ["slack-channel-allowlist"]
        assert deny.headers["content-type"] == "application/json"
        assert approval.status == 428 and approval.headers["x-aegis-approval-id"]
        assert anonymous.status == 401
        assert limited.status == 429 and limited.headers["retry-after"] == "1"

    run(main())


def test_immediate_response_fields() -> None:
    async def main() -> None:
        rig = make_rig()
        server = build_ext_proc_server(rig.pipeline, rig.mapping)
        port = await server.start(HOST, 0)
        try:
            async with grpc_channel(port) as channel:
                stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)
                req = Req("DELETE", "/x", "api.evil.example", FINANCE)
                (response,) = await exchange(stub, [ext_proc_headers(req)])
        finally:
            await server.stop(0)
        reply = response.immediate_response
        assert reply.status.code == 403
        assert reply.details == "aegis_decision_denied_by_rule"
        assert json.loads(reply.body)["error"]["outcome"] == "deny"

    run(main())


QUERY_POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: q, tenant: acme}
tools:
  - {name: "http:GET api.example.com/search", kind: read}
  - {name: users.get, kind: read}
rules:
  - id: search-redact
    match: {tools: ["http:GET api.example.com/search"]}
    effect: sanitize
    sanitize: {detectors: [email], scan: [q]}
  - id: users-redact
    match: {tools: [users.get]}
    effect: sanitize
    sanitize: {detectors: [email], scan: [user]}
"""
QUERY_MAPPING = MappingConfig.from_dict(
    {"routes": [{"path": "/users/{user}", "tool": "users.get", "path_params": True}]}
)
AGENT = {"x-aegis-tenant": "acme", "x-aegis-agent-id": "a1"}


def test_a_redacted_query_parameter_rewrites_the_path() -> None:
    async def main() -> None:
        rig = make_rig(compile_text(QUERY_POLICY), mapping=QUERY_MAPPING)
        async with serve("ext_proc", rig) as decide:
            verdict = await decide(
                Req("GET", "/search?q=jane%40example.com&page=2", "api.example.com", AGENT)
            )
            path_var = await decide(Req("GET", "/users/jane@example.com", "api.example.com", AGENT))
        assert verdict.status == 200
        assert verdict.headers[":path"] == "/search?q=%5BREDACTED%3Aemail%5D&page=2"
        # A redaction inside a path variable would change which resource is called.
        assert path_var.status == 403
        assert "path variable" in path_var.json["error"]["reason"]

    run(main())


def test_after_an_allow_trailers_and_response_phases_pass_through() -> None:
    async def main() -> None:
        rig = make_rig()
        server = build_ext_proc_server(rig.pipeline, rig.mapping)
        port = await server.start(HOST, 0)
        req = json_req(
            "POST", "/v1/payments", "api.stripe.com", FINANCE, {"amount": 1, "currency": "EUR"}
        )
        messages = [
            ext_proc_headers(req),
            ext_proc_body(req.body or b""),
            ep.ProcessingRequest(request_trailers=ep.HttpTrailers()),
            ep.ProcessingRequest(response_headers=ep.HttpHeaders()),
            ep.ProcessingRequest(response_body=ep.HttpBody(body=b"ok", end_of_stream=True)),
            ep.ProcessingRequest(response_trailers=ep.HttpTrailers()),
        ]
        try:
            async with grpc_channel(port) as channel:
                stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)
                responses = await exchange(stub, messages)
        finally:
            await server.stop(0)
        kinds = [r.WhichOneof("response") for r in responses]
        assert kinds == [
            "request_headers",
            "request_body",
            "request_trailers",
            "response_headers",
            "response_body",
            "response_trailers",
        ]
        assert verdict_from_ext_proc(responses[:2]).status == 200
        assert not responses[3].response_headers.HasField("response")

    run(main())


def test_buffered_body_with_trailers_following_is_decided_at_the_body() -> None:
    async def main() -> None:
        rig = make_rig()
        server = build_ext_proc_server(rig.pipeline, rig.mapping)
        port = await server.start(HOST, 0)
        req = json_req(
            "POST", "/v1/payments", "api.stripe.com", FINANCE, {"amount": 9, "currency": "GBP"}
        )
        first = ext_proc_headers(req)
        first.protocol_config.request_body_mode = 2  # BUFFERED
        try:
            async with grpc_channel(port) as channel:
                stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)
                responses = await exchange(
                    stub,
                    [
                        first,
                        ext_proc_body(req.body or b"", end_of_stream=False),
                        ep.ProcessingRequest(request_trailers=ep.HttpTrailers()),
                    ],
                )
        finally:
            await server.stop(0)
        assert verdict_from_ext_proc(responses[:2]).headers["x-aegis-code"] == "decision.allowed"
        assert responses[2].WhichOneof("response") == "request_trailers"

    run(main())


def test_source_address_attribute_reaches_the_context() -> None:
    async def main() -> None:
        rig = make_rig()
        server = build_ext_proc_server(rig.pipeline, rig.mapping, log=None)
        port = await server.start(HOST, 0)
        message = ext_proc_headers(Req("GET", "/v1/balance", "api.stripe.com", {}))
        message.attributes["envoy.filters.http.ext_proc"].fields[
            "source.address"
        ].string_value = "10.9.8.7:5555"
        try:
            async with grpc_channel(port) as channel:
                stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)
                (response,) = await exchange(stub, [message])
        finally:
            await server.stop(0)
        assert response.immediate_response.status.code == 401

    run(main())
    from aegis.doors.envoy.ext_proc import request_from_headers

    message = ext_proc_headers(Req("GET", "/", "h", {}))
    for raw, expected in [("10.9.8.7:5555", "10.9.8.7"), ("[::1]:80", "::1"), ("::1", "::1")]:
        message.attributes["f"].fields["source.address"].string_value = raw
        assert request_from_headers(message).source_address == expected


# -- protocol errors: out of order, misconfigured, garbage --------------------------------

_GOOD = json_req(
    "POST", "/v1/payments", "api.stripe.com", FINANCE, {"amount": 1, "currency": "USD"}
)


def _streamed() -> list[Any]:
    first = ext_proc_headers(_GOOD)
    first.protocol_config.request_body_mode = 1  # STREAMED
    return [first]


def _observed() -> list[Any]:
    first = ext_proc_headers(_GOOD)
    first.observability_mode = True
    return [first]


PROTOCOL_ERRORS = {
    "body-before-headers": [ext_proc_body(b"{}")],
    "trailers-first": [ep.ProcessingRequest(request_trailers=ep.HttpTrailers())],
    "response-before-decision": [
        ext_proc_headers(_GOOD),
        ep.ProcessingRequest(response_headers=ep.HttpHeaders()),
    ],
    "headers-twice": [ext_proc_headers(_GOOD), ext_proc_headers(_GOOD)],
    "chunk-without-end-of-stream": [
        ext_proc_headers(_GOOD),
        ext_proc_body(b'{"amount"', end_of_stream=False),
    ],
    "second-request-after-allow": [
        ext_proc_headers(Req("GET", "/v1/balance", "api.stripe.com", FINANCE)),
        ext_proc_headers(_GOOD),
    ],
    "body-after-allow-at-headers": [
        ext_proc_headers(Req("GET", "/v1/balance", "api.stripe.com", FINANCE)),
        ext_proc_body(b"{}"),
    ],
    "streamed-mode": _streamed(),
    "observability-mode": _observed(),
    "empty-message": [ep.ProcessingRequest()],
}


@pytest.mark.parametrize("name", list(PROTOCOL_ERRORS))
def test_out_of_order_messages_end_the_stream_with_an_error(name: str) -> None:
    async def main() -> None:
        rig = make_rig()
        server = build_ext_proc_server(
            rig.pipeline, rig.mapping, metrics=rig.metrics, log=JsonLog(rig.log)
        )
        port = await server.start(HOST, 0)
        try:
            async with grpc_channel(port) as channel:
                stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)
                with pytest.raises(RpcError) as caught:
                    await exchange(stub, PROTOCOL_ERRORS[name])
        finally:
            await server.stop(0)
        # An error status, never a clean close: a clean close lets the request through.
        assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
        assert (
            rig.metric("aegis_requests_refused_total", door=DOOR_EXT_PROC, code="request.malformed")
            == 1
        )
        assert len(rig.events("envoy.protocol_error")) == 1

    run(main())


def test_a_message_after_an_immediate_response_is_an_error() -> None:
    async def main() -> None:
        rig = make_rig()
        server = build_ext_proc_server(rig.pipeline, rig.mapping)
        port = await server.start(HOST, 0)
        try:
            async with grpc_channel(port) as channel:
                stub = external_processor_pb2_grpc.ExternalProcessorStub(channel)
                call = stub.Process(timeout=5)
                await call.write(ext_proc_headers(Req("GET", "/", "api.evil.example", FINANCE)))
                first = await call.read()
                await call.write(ext_proc_body(b"{}"))
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call.read()
        finally:
            await server.stop(0)
        assert first.immediate_response.status.code == 403
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION

    run(main())


def test_garbage_bytes_on_the_stream_are_an_error() -> None:
    async def main() -> None:
        rig = make_rig()
        server = build_ext_proc_server(rig.pipeline, rig.mapping)
        port = await server.start(HOST, 0)
        codes = []
        try:
            async with grpc_channel(port) as channel:
                method = channel.stream_stream(
                    PROCESS, request_serializer=None, response_deserializer=None
                )
                for payload in [b"\xff\xff\xff", b"\x12\x05ab", b"\x12\xff\xff\xff\x7f"]:
                    call = method(timeout=5)
                    await call.write(payload)
                    await call.done_writing()
                    try:
                        async for _ in call:
                            pass
                    except grpc.aio.AioRpcError as exc:
                        codes.append(exc.code())
                    else:
                        codes.append(await call.code())
        finally:
            await server.stop(0)
        # The stream ends in an error (gRPC reports the failed deserialisation as
        # UNKNOWN), which Envoy fails closed on; never a clean OK close.
        assert codes and grpc.StatusCode.OK not in codes

    run(main())


ARRAY_POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: notes, tenant: acme}
tools:
  - {name: notes.add, kind: write}
rules:
  - id: notes-redact
    match: {tools: [notes.add]}
    effect: sanitize
    sanitize: {detectors: [email], scan: ["body[*]"]}
"""


def test_a_json_array_body_is_rewritten_whole() -> None:
    mapping = MappingConfig.from_dict({"routes": [{"path": "/notes", "tool": "notes.add"}]})

    async def main() -> None:
        rig = make_rig(compile_text(ARRAY_POLICY), mapping=mapping)
        async with serve("ext_proc", rig) as decide:
            verdict = await decide(
                json_req("POST", "/notes", "notes.example", AGENT, ["call bob@example.com", "ok"])
            )
        assert verdict.status == 200 and verdict.rewritten
        assert json.loads(verdict.body) == ["call [REDACTED:email]", "ok"]
        assert verdict.headers["content-length"] == str(len(verdict.body))

    run(main())
