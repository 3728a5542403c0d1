"""ext_authz as an HTTP authorization service: the Handler behind the shared HTTP server,
called the way Envoy's ``http_service`` calls it (httpx on 127.0.0.1 plays Envoy)."""

from __future__ import annotations

import pytest
from envoy_rig import FINANCE, MAPPING, SLACK, Req, json_req, make_rig, run, serve

from aegis.doors.envoy import build_authz_http_handler
from aegis.doors.envoy.gate import DOOR_AUTHZ_HTTP
from aegis.http.types import HttpRequest
from aegis.testing.pipelines import LimitedStage


def payment(amount: float) -> Req:
    return json_req(
        "POST", "/v1/payments", "api.stripe.com", FINANCE, {"amount": amount, "currency": "USD"}
    )


def test_every_outcome_over_http() -> None:
    async def main() -> None:
        rig = make_rig()
        async with serve("http", rig) as decide:
            allow = await decide(payment(120))
            deny = await decide(Req("GET", "/repos", "api.evil.example", FINANCE))
            approval = await decide(payment(9000))
            sanitize = await decide(
                json_req(
                    "POST",
                    "/api/chat.postMessage",
                    "slack.com",
                    SLACK,
                    {"channel": "#incidents", "text": "ssn 078-05-1120"},
                )
            )
            read = await decide(Req("GET", "/v1/balance?currency=usd", "api.stripe.com", FINANCE))
        assert allow.status == 200 and allow.body == b""
        assert allow.headers["x-aegis-code"] == "decision.allowed"
        assert deny.status == 403
        assert deny.json["error"]["rule_ids"] == ["egress-unknown-domain"]
        assert approval.status == 428
        assert approval.headers["x-aegis-approval-id"] == approval.json["error"]["approval_id"]
        assert sanitize.status == 403  # ext_authz cannot rewrite: refused by default
        assert "078-05-1120" not in sanitize.body.decode()
        assert read.status == 200
        lines = rig.events("decision")
        assert {line["door"] for line in lines} == {DOOR_AUTHZ_HTTP}
        assert len(lines) == 5

    run(main())


def test_limits_over_http_are_429_with_retry_after() -> None:
    async def main() -> None:
        async with serve("http", make_rig(limits=LimitedStage(2))) as decide:
            verdict = await decide(payment(120))
        assert verdict.status == 429
        assert verdict.headers["retry-after"] == "2"

    run(main())


def test_missing_identity_and_bad_body_over_http() -> None:
    async def main() -> None:
        rig = make_rig()
        async with serve("http", rig) as decide:
            anonymous = await decide(Req("GET", "/v1/balance", "api.stripe.com", {}))
            broken = await decide(
                Req(
                    "POST",
                    "/v1/payments",
                    "api.stripe.com",
                    {**FINANCE, "content-type": "application/json"},
                    b'{"amount": 5,}',
                )
            )
            partial = await decide(
                Req(
                    "POST",
                    "/v1/payments",
                    "api.stripe.com",
                    {
                        **FINANCE,
                        "content-type": "application/json",
                        "x-envoy-auth-partial-body": "true",
                    },
                    b'{"amount": 5}',
                )
            )
        assert anonymous.status == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert broken.status == 400
        assert broken.json["error"]["code"] == "request.invalid_json"
        assert partial.status == 413
        assert (
            rig.metric(
                "aegis_requests_refused_total", door=DOOR_AUTHZ_HTTP, code="request.invalid_json"
            )
            == 1
        )

    run(main())


def test_handler_directly_strips_the_prefix_and_refuses_other_paths() -> None:
    rig = make_rig()
    handler = build_authz_http_handler(rig.pipeline, MAPPING, path_prefix="/authz")
    request = HttpRequest(
        "GET", "/authz/v1/balance", "", (("host", "api.stripe.com"), *FINANCE.items())
    )
    assert run(handler(request)).status == 200
    outside = HttpRequest("GET", "/v1/balance", "", (("host", "api.stripe.com"), *FINANCE.items()))
    response = run(handler(outside))
    assert response.status == 404
    assert b"request.not_found" in response.body


def test_handler_answers_500_on_a_bug_so_envoy_fails_closed() -> None:
    rig = make_rig()
    handler = build_authz_http_handler(rig.pipeline, MAPPING, metrics=rig.metrics)

    async def explode(*_: object) -> None:
        raise RuntimeError("bug")

    rig.pipeline.decide = explode  # type: ignore[method-assign]
    response = run(
        handler(
            HttpRequest("GET", "/v1/balance", "", (("host", "api.stripe.com"), *FINANCE.items()))
        )
    )
    assert response.status == 500
    assert (
        rig.metric(
            "aegis_requests_refused_total", door=DOOR_AUTHZ_HTTP, code="pipeline.internal_error"
        )
        == 1
    )


@pytest.mark.parametrize("prefix", ["authz", "/authz/"])
def test_bad_prefix_is_a_configuration_error(prefix: str) -> None:
    with pytest.raises(ValueError, match="path_prefix"):
        build_authz_http_handler(make_rig().pipeline, MAPPING, path_prefix=prefix)
