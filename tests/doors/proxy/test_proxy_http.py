"""Absolute-form requests through the proxy: decisions, forwarding, sanitize, framing."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from proxyrig import (
    AUTH,
    LOCAL,
    Client,
    HttpUpstream,
    Rig,
    Seen,
    basic,
    fixed,
    get,
    make_rig,
    post,
    run,
)

from aegis.doors.proxy import ProxyConfig, UninspectedBody
from aegis.testing.pipelines import LimitedStage


async def _rig_with_upstream(**kwargs: object) -> tuple[Rig, HttpUpstream]:
    upstream = await HttpUpstream().start()
    rig = await make_rig(**kwargs)  # type: ignore[arg-type]
    for host in ("api.stripe.com", "api.github.com", "eu1.salesforce.com", "dlp.example"):
        rig.dialer.route(host, None, upstream.port)
    rig.dialer.route("127.0.0.1", None, upstream.port)
    return rig, upstream


def test_allowed_get_is_forwarded_in_origin_form() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        resp = await rig.once(
            get(
                "http://api.stripe.com/v1/charges?limit=3",
                headers="Accept: application/json\r\nConnection: keep-alive, X-Hop\r\n"
                "X-Hop: drop-me\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
                "Proxy-Connection: keep-alive\r\nAuthorization: Bearer sk_live_upstream\r\n",
            )
        )
        assert resp.status == 200
        assert resp.header("x-aegis-code") == "decision.allowed"
        assert resp.header("x-aegis-decision-id")
        assert resp.header("via") == "1.1 aegis"
        (seen,) = upstream.seen
        assert seen.method == "GET"
        assert seen.target == "/v1/charges?limit=3"  # origin-form (RFC 9112 §3.2.1)
        # RFC 9112 §3.2.2: Host is the target's authority, not what the client sent.
        assert seen.header("host") == "api.stripe.com"
        assert seen.header("via") == "1.1 aegis"
        # The agent's credentials for the tool are forwarded; the proxy's are not.
        assert seen.header("authorization") == "Bearer sk_live_upstream"
        names = seen.header_names()
        for hop in ("proxy-authorization", "connection", "x-hop", "keep-alive", "te"):
            assert hop not in names, hop
        assert "proxy-connection" not in names
        assert rig.dialer.dialled == [("api.stripe.com", 80)]
        await rig.stop()

    run(scenario())


def test_the_policy_sees_method_path_query_headers_but_not_credentials() -> None:
    async def scenario() -> None:
        rig, _ = await _rig_with_upstream()
        calls = []
        decide = rig.pipeline.decide

        async def spy(call, ctx):  # type: ignore[no-untyped-def]
            calls.append((call, ctx))
            return await decide(call, ctx)

        rig.pipeline.decide = spy  # type: ignore[method-assign]
        body = json.dumps({"amount": 1200, "currency": "eur"}).encode()
        resp = await rig.once(
            post(
                "http://api.stripe.com/v1/charges?idempotency=1",
                body,
                headers="Authorization: Bearer sk\r\nCookie: s=1\r\nX-Trace: 7\r\n",
            )
        )
        assert resp.status == 200
        ((call, ctx),) = calls
        assert (call.tenant, call.agent_id, call.tool, str(call.kind)) == (
            "acme",
            "agent-1",
            "http.request",
            "write",
        )
        assert call.destination == "http://api.stripe.com/v1/charges?idempotency=1"
        assert call.params["method"] == "POST"
        assert call.params["path"] == "/v1/charges"
        assert call.params["query"] == "idempotency=1"
        assert call.params["body"] == {"amount": 1200, "currency": "eur"}
        headers = call.params["headers"]
        assert headers["x-trace"] == "7"
        assert headers["content-type"] == "application/json"
        for secret in ("authorization", "cookie", "proxy-authorization", "host"):
            assert secret not in headers
        assert (ctx.door, ctx.credentials, ctx.remote_addr) == ("proxy", "tok", LOCAL)
        await rig.stop()

    run(scenario())


def test_get_and_head_are_the_read_tool_and_a_get_with_a_body_is_a_write() -> None:
    async def scenario() -> None:
        rig, _ = await _rig_with_upstream()
        calls = []
        decide = rig.pipeline.decide

        async def spy(call, ctx):  # type: ignore[no-untyped-def]
            calls.append(call)
            return await decide(call, ctx)

        rig.pipeline.decide = spy  # type: ignore[method-assign]
        client = await rig.client()
        await client.request(get("http://api.stripe.com/a"))
        await client.request(get("http://api.stripe.com/a", method="HEAD"), head_request=True)
        await client.request(
            b"GET http://api.stripe.com/a HTTP/1.1\r\nProxy-Authorization: "
            + AUTH.encode()
            + b"\r\nContent-Length: 2\r\n\r\nhi"
        )
        await client.request(get("http://api.stripe.com/a", method="DELETE"))
        client.close()
        assert [(c.tool, str(c.kind)) for c in calls] == [
            ("http.get", "read"),
            ("http.get", "read"),
            ("http.request", "write"),
            ("http.request", "write"),
        ]
        await rig.stop()

    run(scenario())


def test_denied_request_is_answered_403_and_nothing_goes_upstream() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        resp = await rig.once(post("http://example-exfil.xyz/upload", b'{"ssn":"078-05-1120"}'))
        assert resp.status == 403
        assert resp.header("content-type") == "application/json"
        error = resp.json()["error"]
        assert error["type"] == "PolicyViolation"
        assert error["code"] == "decision.denied_by_rule"
        assert error["rule_ids"] == ["egress-unknown-domain"]
        assert resp.header("x-aegis-decision-id") == error["decision_id"]
        assert upstream.seen == [] and rig.dialer.dialled == []
        await rig.stop()

    run(scenario())


def test_a_denied_path_on_an_allowed_host() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        resp = await rig.once(get("http://api.github.com/admin/users"))
        assert (resp.status, resp.json()["error"]["rule_ids"]) == (403, ["no-admin-paths"])
        # Dot segments are resolved before the policy sees the path (WHATWG), and
        # the upstream receives that same path: no "/x/../admin" detour.
        resp = await rig.once(get("http://api.github.com/x/../admin/users"))
        assert resp.status == 403
        assert upstream.seen == []
        await rig.stop()

    run(scenario())


def test_connection_stays_open_after_a_deny_and_upstream_is_reused() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        client = await rig.client()
        assert (await client.request(get("http://api.stripe.com/1"))).status == 200
        assert (await client.request(get("http://evil.example/"))).status == 403
        assert (await client.request(get("http://api.stripe.com/2"))).status == 200
        client.close()
        assert [s.target for s in upstream.seen] == ["/1", "/2"]
        assert upstream.connections == 1  # one upstream connection, kept alive
        await rig.stop()

    run(scenario())


@pytest.mark.parametrize(
    ("url", "dialled"),
    [
        # Userinfo: the real host is after the "@" (WHATWG, RFC 3986 alike).
        ("http://api.stripe.com@evil.test/", None),
        ("http://api.stripe.com:443@evil.test/", None),
        # A lookalike suffix is not a subdomain; a Cyrillic homograph is another name.
        ("http://evilsalesforce.com/", None),
        ("http://api.githu%D0%AC.com/", None),
        # Decimal and hex spellings of 10.0.0.1 are 10.0.0.1: not on the list.
        ("http://167772161/", None),
        ("http://0xa.0.0.1/", None),
        # Percent-encoding and a trailing dot name the same, allowed, host.
        ("http://api%2Estripe.com/", ("api.stripe.com", 80)),
        ("http://API.Stripe.COM./", ("api.stripe.com.", 80)),
        ("http://2130706433:8080/", ("127.0.0.1", 8080)),
        ("http://0x7f.1/", ("127.0.0.1", 80)),
    ],
)
def test_hosts_are_decided_and_dialled_as_parsed(url: str, dialled: tuple[str, int] | None) -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        rig.dialer.route("api.stripe.com.", None, upstream.port)
        resp = await rig.once(get(url))
        if dialled is None:
            assert resp.status == 403, resp.body
            assert resp.json()["error"]["rule_ids"] == ["egress-unknown-domain"]
            assert rig.dialer.dialled == [] and upstream.seen == []
        else:
            assert resp.status == 200, resp.body
            assert rig.dialer.dialled == [dialled]
            (seen,) = upstream.seen
            expected_host = dialled[0] if dialled[1] == 80 else f"{dialled[0]}:{dialled[1]}"
            assert seen.header("host") == expected_host
        await rig.stop()

    run(scenario())


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("/v1/charges", "request.malformed"),  # origin-form is for origin servers
        ("*", "request.malformed"),
        ("https://api.stripe.com/", "request.destination_refused"),  # TLS goes via CONNECT
        ("ftp://api.stripe.com/", "request.destination_refused"),
        ("http:///api.stripe.com/", "request.destination_refused"),  # empty authority
        # llhttp's URL parser already refuses a backslash in the authority.
        ("http://api.stripe.com\\@evil.test/", "request.malformed"),
        ("http://api.stripe.com:99999/", "request.destination_refused"),
        ("http://api.stripe.com:0/", "request.destination_refused"),
    ],
)
def test_unusable_targets_are_400(target: str, code: str) -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        resp = await rig.once(get(target))
        assert resp.status == 400
        assert resp.json()["error"] == {
            "type": "RequestError",
            "code": code,
            "reason": resp.json()["error"]["reason"],
        }
        assert upstream.seen == [] and rig.dialer.dialled == []
        assert rig.metric("aegis_requests_refused_total", door="proxy", code=code) == 1
        await rig.stop()

    run(scenario())


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-slash:tok").decode(),
        "Basic " + base64.b64encode(b"acme/agent").decode(),  # no ":" at all
        "Basic " + base64.b64encode(b"/agent:tok").decode(),
        "Basic " + base64.b64encode(b"acme/:tok").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe/x:y").decode(),
        "Digest username=x",
        "Bearer abc.def",  # Bearer needs bearer_identity
    ],
)
def test_missing_or_garbled_identity_is_407(auth: str | None) -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        resp = await rig.once(get("http://api.stripe.com/", auth=auth))
        assert resp.status == 407
        assert resp.code == "identity.missing"
        assert resp.header_all("proxy-authenticate") == ['Basic realm="aegis", charset="UTF-8"']
        assert upstream.seen == []
        await rig.stop()

    run(scenario())


def test_two_proxy_authorization_fields_are_refused() -> None:
    async def scenario() -> None:
        rig, _ = await _rig_with_upstream()
        resp = await rig.once(
            get("http://api.stripe.com/", headers=f"Proxy-Authorization: {basic('other')}\r\n")
        )
        assert (resp.status, resp.code) == (407, "identity.missing")
        await rig.stop()

    run(scenario())


def test_bearer_with_a_configured_identity() -> None:
    async def scenario() -> None:
        config = ProxyConfig(bearer_identity=("acme", "svc-bot"))
        rig, _upstream = await _rig_with_upstream(config=config)
        calls = []
        decide = rig.pipeline.decide

        async def spy(call, ctx):  # type: ignore[no-untyped-def]
            calls.append((call, ctx))
            return await decide(call, ctx)

        rig.pipeline.decide = spy  # type: ignore[method-assign]
        resp = await rig.once(get("http://api.stripe.com/", auth="Bearer eyJhbGc.x_y-z~"))
        assert resp.status == 200
        ((call, ctx),) = calls
        assert (call.tenant, call.agent_id, ctx.credentials) == (
            "acme",
            "svc-bot",
            "eyJhbGc.x_y-z~",
        )
        resp = await rig.once(get("http://api.stripe.com/", auth=None))
        assert resp.header_all("proxy-authenticate") == [
            'Basic realm="aegis", charset="UTF-8"',
            'Bearer realm="aegis"',
        ]
        await rig.stop()

    run(scenario())


def test_approval_needed_is_428_with_the_ticket() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        rig.dialer.route("approve.example", None, upstream.port)
        resp = await rig.once(post("http://approve.example/charge", b'{"amount": 90000}'))
        assert resp.status == 428
        approval_id = resp.header("x-aegis-approval-id")
        assert approval_id and approval_id == resp.json()["error"]["approval_id"]
        assert resp.code == "decision.approval_required"
        assert upstream.seen == []
        await rig.stop()

    run(scenario())


def test_limits_are_429_with_retry_after() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream(limits=LimitedStage(retry_after=2.5))
        resp = await rig.once(get("http://api.stripe.com/"))
        assert resp.status == 429
        assert resp.header("retry-after") == "3"
        assert resp.code == "decision.limit_exceeded"
        assert upstream.seen == []
        await rig.stop()

    run(scenario())


def test_sanitize_rewrites_the_json_body_and_its_length() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        body = json.dumps(
            {"note": "mail bob@corp.example now", "ssn": "078-05-1120", "n": 7}, indent=2
        ).encode()
        resp = await rig.once(
            post(
                "http://dlp.example/ingest",
                body,
                headers="X-Secret: hunter2\r\nX-Other: fine\r\nAuthorization: Bearer keep\r\n",
            )
        )
        assert resp.status == 200
        assert resp.header("x-aegis-code") == "decision.sanitized"
        (seen,) = upstream.seen
        forwarded = json.loads(seen.body)
        assert forwarded == {
            "note": "mail [REDACTED:email] now",
            "ssn": "[REDACTED:us_ssn]",
            "n": 7,
        }
        assert seen.header("content-length") == str(len(seen.body))
        assert seen.header("x-secret") == "[REDACTED]"
        assert seen.header("x-other") == "fine"
        assert seen.header("authorization") == "Bearer keep"  # private: never shown, kept
        assert b"bob@corp.example" not in seen.raw_head + seen.body
        assert b"078-05-1120" not in seen.raw_head + seen.body
        await rig.stop()

    run(scenario())


def test_sanitize_rewrites_a_text_body_and_the_query() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        resp = await rig.once(
            post(
                "http://dlp.example/form?to=alice@corp.example&x=1",
                b"ssn=078-05-1120&ok=1",
                content_type="text/plain; charset=utf-8",
            )
        )
        assert resp.status == 200
        (seen,) = upstream.seen
        assert seen.body == b"ssn=[REDACTED:us_ssn]&ok=1"
        assert seen.header("content-length") == str(len(seen.body))
        assert seen.target == "/form?to=%5BREDACTED:email%5D&x=1"
        await rig.stop()

    run(scenario())


def test_chunked_request_body_is_reframed_with_content_length() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        raw = (
            b"POST http://api.stripe.com/v1 HTTP/1.1\r\nProxy-Authorization: "
            + AUTH.encode()
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'5\r\n{"a":\r\n3;ext=1\r\n 1}\r\n0\r\nX-Trailer: t\r\n\r\n'
        )
        resp = await rig.once(raw)
        assert resp.status == 200
        (seen,) = upstream.seen
        assert seen.body == b'{"a": 1}'
        assert seen.header("content-length") == "8"
        assert "transfer-encoding" not in seen.header_names()
        await rig.stop()

    run(scenario())


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "request.invalid_json"),
        (b'{"amount": 1, "amount": 1000}', "application/json", 400, "request.invalid_json"),
        (b'{"x": NaN}', "application/vnd.api+json", 400, "request.invalid_json"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "request.invalid_json"),
        (b'{"n": 123456789012345678901234567890}', "application/json", 400, "call.invalid_number"),
        (b"\xff\xfe\x00binary", "application/octet-stream", 415, "request.unsupported_media_type"),
    ],
)
def test_bodies_the_policy_cannot_read_are_refused(
    body: bytes, content_type: str, status: int, code: str
) -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        client = await rig.client()
        resp = await client.request(post("http://api.stripe.com/", body, content_type=content_type))
        assert (resp.status, resp.code) == (status, code)
        # The body was read to its end: the connection can go on.
        assert (await client.request(get("http://api.stripe.com/next"))).status == 200
        client.close()
        assert [s.target for s in upstream.seen] == ["/next"]
        await rig.stop()

    run(scenario())


def test_content_coded_bodies_are_not_inspectable() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        resp = await rig.once(
            post("http://api.stripe.com/", b'{"a":1}', headers="Content-Encoding: gzip\r\n")
        )
        assert (resp.status, resp.code) == (415, "request.unsupported_media_type")
        assert upstream.seen == []
        await rig.stop()

    run(scenario())


def test_body_over_the_inspection_limit_is_413_before_it_is_read() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream(config=ProxyConfig(inspect_body_limit=1000))
        client = await rig.client()
        await client.send(
            b"POST http://api.stripe.com/ HTTP/1.1\r\nProxy-Authorization: "
            + AUTH.encode()
            + b"\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        )
        resp = await client.response()
        assert (resp.status, resp.code) == (413, "request.too_large")
        assert resp.header("connection") == "close"
        assert await client.closed()
        assert upstream.seen == []
        await rig.stop()

    run(scenario())


def test_chunked_body_over_the_limit_is_413() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream(config=ProxyConfig(inspect_body_limit=100))
        client = await rig.client()
        chunk = b"64\r\n" + b"x" * 100 + b"\r\n"
        await client.send(
            b"POST http://api.stripe.com/ HTTP/1.1\r\nProxy-Authorization: "
            + AUTH.encode()
            + b"\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * 3
        )
        resp = await client.response()
        assert (resp.status, resp.code) == (413, "request.too_large")
        assert await client.closed()
        assert upstream.seen == []
        await rig.stop()

    run(scenario())


def test_forward_mode_streams_oversize_bodies_undecided_on_content() -> None:
    async def scenario() -> None:
        config = ProxyConfig(inspect_body_limit=100, uninspected_body=UninspectedBody.FORWARD)
        rig, upstream = await _rig_with_upstream(config=config)
        calls = []
        decide = rig.pipeline.decide

        async def spy(call, ctx):  # type: ignore[no-untyped-def]
            calls.append(call)
            return await decide(call, ctx)

        rig.pipeline.decide = spy  # type: ignore[method-assign]
        client = await rig.client()
        big = b"y" * 5000
        resp = await client.request(
            post("http://api.stripe.com/up", big, content_type="text/plain")
        )
        assert resp.status == 200
        chunked = (
            b"POST http://api.stripe.com/up2 HTTP/1.1\r\nProxy-Authorization: "
            + AUTH.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"64\r\n" + b"z" * 100 + b"\r\n") * 3
            + b"0\r\n\r\n"
        )
        assert (await client.request(chunked)).status == 200
        client.close()
        assert [s.body for s in upstream.seen] == [big, b"z" * 300]
        assert upstream.seen[0].header("content-length") == "5000"
        assert upstream.seen[1].header("transfer-encoding") == "chunked"
        assert all("body" not in c.params for c in calls)
        # A sanitize decision cannot be carried out on a body nobody inspected.
        resp = await rig.once(post("http://dlp.example/", big, content_type="text/plain"))
        assert (resp.status, resp.code) == (413, "request.too_large")
        assert len(upstream.seen) == 2
        await rig.stop()

    run(scenario())


def test_expect_100_continue_is_answered_by_the_proxy() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        client = await rig.client()
        await client.send(
            b"POST http://api.stripe.com/e HTTP/1.1\r\nProxy-Authorization: "
            + AUTH.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = await client.reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await client.send(b"{}")
        resp = await client.response()
        assert resp.status == 200
        assert "expect" not in upstream.seen[0].header_names()
        resp = await client.request(
            get("http://api.stripe.com/", headers="Expect: something-else\r\n")
        )
        assert (resp.status, resp.code) == (417, "request.invalid_header")
        client.close()
        await rig.stop()

    run(scenario())


def test_unreachable_upstream_is_502() -> None:
    async def scenario() -> None:
        rig = await make_rig()
        resp = await rig.once(get("http://api.stripe.com/"))  # no route: connection refused
        assert (resp.status, resp.code) == (502, "request.upstream_failed")
        assert (
            rig.metric("aegis_requests_refused_total", door="proxy", code="request.upstream_failed")
            == 1
        )
        (event,) = rig.events("proxy.upstream_failed")
        assert event["upstream"] == "api.stripe.com:80"
        await rig.stop()

    run(scenario())


def test_upstream_closing_a_kept_connection_is_retried_for_idempotent_requests() -> None:
    async def scenario() -> None:
        async def once_then_close(seen: Seen, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()  # keep-alive announced, then closed: a stale pooled connection

        upstream = await HttpUpstream(once_then_close).start()
        rig = await make_rig()
        rig.dialer.route("api.stripe.com", None, upstream.port)
        client = await rig.client()
        assert (await client.request(get("http://api.stripe.com/1"))).status == 200
        await asyncio.sleep(0.05)
        assert (await client.request(get("http://api.stripe.com/2"))).status == 200
        client.close()
        assert [s.target for s in upstream.seen] == ["/1", "/2"]
        await rig.stop()

    run(scenario())


def test_response_framings_are_relayed() -> None:
    async def scenario() -> None:
        async def respond(seen: Seen, writer: asyncio.StreamWriter) -> None:
            kind = seen.target.strip("/")
            if kind == "chunked":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
                    b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"
                )
            elif kind == "close":
                writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-the-end")
                await writer.drain()
                writer.close()
                return
            elif kind == "204":
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif kind == "304":
                writer.write(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n")
            elif kind == "early":
                writer.write(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                    b"HTTP/1.1 100 Continue\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"
                )
            elif kind == "head":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            await writer.drain()

        upstream = await HttpUpstream(respond).start()
        rig = await make_rig()
        rig.dialer.route("api.stripe.com", None, upstream.port)
        client = await rig.client()
        resp = await client.request(get("http://api.stripe.com/chunked"))
        assert (resp.status, resp.body) == (200, b"abcde")
        assert resp.header("transfer-encoding") == "chunked"
        assert resp.header("trailer") is None
        resp = await client.request(get("http://api.stripe.com/204"))
        assert (resp.status, resp.body, resp.header("content-length")) == (204, b"", None)
        resp = await client.request(get("http://api.stripe.com/304"))
        assert (resp.status, resp.header("content-length")) == (304, "99")
        await client.send(get("http://api.stripe.com/early"))
        raw = await client.reader.readuntil(b"\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 103 Early Hints\r\n") and b"link: </s.css>" in raw
        resp = await client.response()  # the 100 was the proxy's to drop
        assert (resp.status, resp.body) == (200, b"z")
        resp = await client.request(
            get("http://api.stripe.com/head", method="HEAD"), head_request=True
        )
        assert (resp.status, resp.header("content-length")) == (200, "1234")
        # Close-delimited content goes to an HTTP/1.1 client re-chunked: the
        # client connection survives the upstream's close.
        resp = await client.request(get("http://api.stripe.com/close"))
        assert (resp.status, resp.body) == (200, b"until-the-end")
        assert resp.header("transfer-encoding") == "chunked"
        assert (await client.request(get("http://api.stripe.com/chunked"))).body == b"abcde"
        client.close()
        # An HTTP/1.0 client gets it close-delimited.
        client = await rig.client()
        await client.send(
            b"GET http://api.stripe.com/close HTTP/1.0\r\nProxy-Authorization: "
            + AUTH.encode()
            + b"\r\n\r\n"
        )
        resp = await client.response()
        assert resp.body == b"until-the-end" and resp.header("transfer-encoding") is None
        assert await client.closed()
        await rig.stop()

    run(scenario())


def test_response_is_streamed_before_the_upstream_finishes() -> None:
    """The first bytes reach the client while the upstream is still sending: the
    upstream waits for the test to confirm receipt before sending the rest."""

    async def scenario() -> None:
        received_first = asyncio.Event()
        order: list[str] = []
        piece = b"a" * 16384

        async def slow(seen: Seen, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(piece) * 20))
            writer.write(piece)
            await writer.drain()
            order.append("upstream sent first piece")
            await asyncio.wait_for(received_first.wait(), 5)
            for _ in range(19):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.001)
            order.append("upstream finished")

        upstream = await HttpUpstream(slow).start()
        rig = await make_rig()
        rig.dialer.route("api.stripe.com", None, upstream.port)
        client = await rig.client()
        await client.send(get("http://api.stripe.com/big"))
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert b"200" in head.split(b"\r\n")[0]
        first = await client.reader.read(1024)
        assert first and set(first) == {ord("a")}
        order.append("client got first bytes")
        received_first.set()
        rest = len(first)
        while rest < len(piece) * 20:
            rest += len(await client.reader.read(65536))
        order.append("client got everything")
        # The client held body bytes while the upstream was still blocked in the
        # middle of the body: nothing waited for the whole response.
        assert order[:2] == ["upstream sent first piece", "client got first bytes"]
        assert "client got everything" in order
        client.close()
        await rig.stop()

    run(scenario())


def test_upstream_dying_mid_response_truncates_the_client_connection() -> None:
    async def scenario() -> None:
        async def dies(seen: Seen, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await writer.drain()
            writer.close()

        upstream = await HttpUpstream(dies).start()
        rig = await make_rig()
        rig.dialer.route("api.stripe.com", None, upstream.port)
        client = await rig.client()
        await client.send(get("http://api.stripe.com/"))
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert b"content-length: 100" in head
        body = b""
        while chunk := await client.reader.read(1000):
            body += chunk
        assert body == b"partial"  # and then EOF: the client knows it was cut short
        assert rig.events("proxy.response_aborted")
        await rig.stop()

    run(scenario())


def test_invalid_upstream_response_is_502() -> None:
    async def scenario() -> None:
        async def garbage(seen: Seen, writer: asyncio.StreamWriter) -> None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            await writer.drain()

        upstream = await HttpUpstream(garbage).start()
        rig = await make_rig()
        rig.dialer.route("api.stripe.com", None, upstream.port)
        resp = await rig.once(get("http://api.stripe.com/"))
        assert (resp.status, resp.code) == (502, "request.upstream_failed")
        await rig.stop()

    run(scenario())


def test_traceparent_is_carried_into_the_call() -> None:
    async def scenario() -> None:
        rig, _ = await _rig_with_upstream()
        calls = []
        decide = rig.pipeline.decide

        async def spy(call, ctx):  # type: ignore[no-untyped-def]
            calls.append(call)
            return await decide(call, ctx)

        rig.pipeline.decide = spy  # type: ignore[method-assign]
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        await rig.once(get("http://api.stripe.com/", headers=f"traceparent: {tp}\r\n"))
        assert calls[0].trace.traceparent == tp
        await rig.stop()

    run(scenario())


def test_upstream_status_and_headers_pass_through() -> None:
    async def scenario() -> None:
        upstream = await HttpUpstream(
            fixed(
                404,
                b"nope",
                [("X-Upstream", "1"), ("Proxy-Authenticate", "Basic"), ("Via", "1.1 origin")],
            )
        ).start()
        rig = await make_rig()
        rig.dialer.route("api.stripe.com", None, upstream.port)
        resp = await rig.once(get("http://api.stripe.com/"))
        assert (resp.status, resp.body) == (404, b"nope")
        assert resp.header("x-upstream") == "1"
        assert resp.header("proxy-authenticate") is None  # concerns the upstream's hop only
        assert resp.header("via") == "1.1 origin, 1.1 aegis"
        await rig.stop()

    run(scenario())


def test_client_keeps_its_connection_with_http_10_keep_alive() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        client: Client = await rig.client()
        req = (
            b"GET http://api.stripe.com/x HTTP/1.0\r\nConnection: keep-alive\r\n"
            b"Proxy-Authorization: " + AUTH.encode() + b"\r\n\r\n"
        )
        assert (await client.request(req)).status == 200
        assert (await client.request(req)).status == 200
        client.close()
        assert len(upstream.seen) == 2
        await rig.stop()

    run(scenario())


def test_upgrade_is_not_switched_and_the_connection_ends_after_the_answer() -> None:
    """The proxy does not switch protocols on plain HTTP (use CONNECT): Upgrade and
    Connection are hop-by-hop and dropped, and the connection closes afterwards."""

    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        client = await rig.client()
        resp = await client.request(
            get(
                "http://api.stripe.com/ws",
                headers="Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n",
            )
            + b"\x81\x05hello"
        )
        assert resp.status == 200
        assert resp.header("connection") == "close"
        assert await client.closed()
        (seen,) = upstream.seen
        assert "upgrade" not in seen.header_names() and "connection" not in seen.header_names()
        await rig.stop()

    run(scenario())


def test_an_unasked_protocol_switch_is_502() -> None:
    async def scenario() -> None:
        async def switches(seen: Seen, writer: asyncio.StreamWriter) -> None:
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
            )
            await writer.drain()

        upstream = await HttpUpstream(switches).start()
        rig = await make_rig()
        rig.dialer.route("api.stripe.com", None, upstream.port)
        resp = await rig.once(get("http://api.stripe.com/"))
        assert (resp.status, resp.code) == (502, "request.upstream_failed")
        await rig.stop()

    run(scenario())


def test_an_empty_chunked_json_body_is_no_body() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig_with_upstream()
        raw = (
            b"POST http://api.stripe.com/e HTTP/1.1\r\nProxy-Authorization: "
            + AUTH.encode()
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        assert (await rig.once(raw)).status == 200
        (seen,) = upstream.seen
        assert (seen.body, seen.header("content-length")) == (b"", "0")
        await rig.stop()

    run(scenario())
