"""Request smuggling, header injection and oversize input: refused, closed, never forwarded.

Each case is a byte string a client sends. Many carry a second, "smuggled"
request after the first; the assertion is always the same: a 4xx with a stable
code, the connection closed (RFC 9112 §11.2: after a framing error the next
request's start is unknowable), and not one byte sent upstream.
"""

from __future__ import annotations

import asyncio

import pytest
from proxyrig import AUTH, HttpUpstream, Rig, get, make_rig, run

from aegis.doors.proxy import ProxyConfig

A = AUTH.encode()
SMUGGLED = b"GET http://api.stripe.com/admin HTTP/1.1\r\nProxy-Authorization: " + A + b"\r\n\r\n"


def _post(headers: bytes, body: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (
        b"POST http://api.stripe.com/v1 HTTP/"
        + version
        + b"\r\nProxy-Authorization: "
        + A
        + b"\r\n"
        + headers
        + b"\r\n"
        + body
    )


CASES: dict[str, tuple[bytes, int, str]] = {
    # -- RFC 9112 §6.3: one message, one framing ----------------------------------------
    "cl-te": (
        _post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
        400,
        "request.ambiguous_length",
    ),
    "te-cl": (
        _post(b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", b"0\r\n\r\n" + SMUGGLED),
        400,
        "request.ambiguous_length",
    ),
    "duplicate-cl-same": (
        _post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"),
        400,
        "request.ambiguous_length",
    ),
    "duplicate-cl-different": (
        _post(b"Content-Length: 3\r\nContent-Length: 40\r\n", b"abc" + SMUGGLED),
        400,
        "request.ambiguous_length",
    ),
    "cl-list": (_post(b"Content-Length: 3, 3\r\n", b"abc"), 400, "request.ambiguous_length"),
    "cl-negative": (_post(b"Content-Length: -1\r\n"), 400, "request.ambiguous_length"),
    "cl-plus": (_post(b"Content-Length: +3\r\n", b"abc"), 400, "request.ambiguous_length"),
    "cl-hex": (_post(b"Content-Length: 0x3\r\n", b"abc"), 400, "request.ambiguous_length"),
    "cl-huge": (
        _post(b"Content-Length: 99999999999999999999999\r\n"),
        400,
        "request.ambiguous_length",
    ),
    "te-gzip-chunked": (
        _post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
        400,
        "request.ambiguous_length",
    ),
    "te-chunked-identity": (
        _post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
        400,
        "request.ambiguous_length",
    ),
    "te-twice": (
        _post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        400,
        "request.ambiguous_length",
    ),
    "te-xchunked": (
        _post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
        400,
        "request.ambiguous_length",
    ),
    "te-in-http-1.0": (
        _post(b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", version=b"1.0"),
        400,
        "request.ambiguous_length",
    ),
    "te-space-before-colon": (
        _post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
        400,
        "request.invalid_header",
    ),
    "chunk-size-not-hex": (
        _post(b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),
        400,
        "request.ambiguous_length",
    ),
    "chunk-size-overflow": (
        _post(b"Transfer-Encoding: chunked\r\n", b"fffffffffffffffffff\r\nabc\r\n"),
        400,
        "request.ambiguous_length",
    ),
    "chunk-size-space": (
        _post(b"Transfer-Encoding: chunked\r\n", b"3 \r\nabc\r\n0\r\n\r\n"),
        400,
        "request.ambiguous_length",
    ),
    "chunk-without-crlf": (
        _post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabcX0\r\n\r\n"),
        400,
        "request.ambiguous_length",
    ),
    # -- RFC 9112 §5: field syntax -------------------------------------------------------
    "obs-fold": (
        b"GET http://api.stripe.com/ HTTP/1.1\r\nProxy-Authorization: "
        + A
        + b"\r\nX-A: a\r\n b\r\n\r\n",
        400,
        "request.invalid_header",
    ),
    "bare-cr-in-value": (
        get("http://api.stripe.com/", headers="X-A: a\rInjected: yes\r\n"),
        400,
        "request.invalid_header",
    ),
    "nul-in-value": (
        get("http://api.stripe.com/", headers="X-A: a\x00b\r\n"),
        400,
        "request.invalid_header",
    ),
    "space-in-name": (
        get("http://api.stripe.com/", headers="X A: b\r\n"),
        400,
        "request.invalid_header",
    ),
    "empty-name": (get("http://api.stripe.com/", headers=": b\r\n"), 400, "request.invalid_header"),
    "two-hosts": (
        get("http://api.stripe.com/", headers="Host: evil.test\r\n"),
        400,
        "request.invalid_header",
    ),
    # -- the request line ----------------------------------------------------------------
    "bare-lf": (
        b"GET http://api.stripe.com/ HTTP/1.1\nProxy-Authorization: " + A + b"\n\n",
        400,
        "request.malformed",
    ),
    "control-in-target": (
        b"GET http://api.stripe.com/\x01 HTTP/1.1\r\n\r\n",
        400,
        "request.malformed",
    ),
    # llhttp reads "GET url CRLF" as an HTTP/0.9 request line: refused as such.
    "crlf-in-target": (
        b"GET http://api.stripe.com/\r\nX-Injected: 1 HTTP/1.1\r\n\r\n",
        505,
        "request.malformed",
    ),
    "space-in-target": (
        b"GET http://api.stripe.com/a b HTTP/1.1\r\n\r\n",
        400,
        "request.malformed",
    ),
    "non-ascii-host": (
        b"GET http://\xd0\xb0pi.stripe.com/ HTTP/1.1\r\n\r\n",
        400,
        "request.malformed",
    ),
    "unknown-method": (b"FROB http://api.stripe.com/ HTTP/1.1\r\n\r\n", 400, "request.malformed"),
    "http-2.0": (
        b"GET http://api.stripe.com/ HTTP/2.0\r\nProxy-Authorization: " + A + b"\r\n\r\n",
        505,
        "request.malformed",
    ),
    "http-0.9": (b"GET /\r\n\r\n", 505, "request.malformed"),
    "h2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "request.malformed"),
    "tls-client-hello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "request.malformed"),
    # -- sizes -----------------------------------------------------------------------------
    "huge-header": (
        get("http://api.stripe.com/", headers="X-Big: " + "a" * 70_000 + "\r\n"),
        431,
        "request.too_large",
    ),
    "many-headers": (
        get("http://api.stripe.com/", headers="".join(f"X-{i}: v\r\n" for i in range(101))),
        431,
        "request.too_large",
    ),
    "long-target": (
        get("http://api.stripe.com/" + "a" * 9000),
        414,
        "request.too_large",
    ),
}


async def _rig() -> tuple[Rig, HttpUpstream]:
    upstream = await HttpUpstream().start()
    rig = await make_rig()
    rig.dialer.route("api.stripe.com", None, upstream.port)
    return rig, upstream


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_framing_is_refused_and_closed(name: str) -> None:
    data, status, code = CASES[name]

    async def scenario() -> None:
        rig, upstream = await _rig()
        client = await rig.client()
        await client.send(data)
        resp = await client.response()
        assert (resp.status, resp.code) == (status, code), resp.body
        assert resp.header("connection") == "close"
        assert await client.closed()
        assert upstream.seen == [] and rig.dialer.dialled == []
        assert rig.metric("aegis_requests_refused_total", door="proxy", code=code) == 1
        await rig.stop()

    run(scenario())


def test_a_bad_request_after_a_good_one_ends_the_connection() -> None:
    async def scenario() -> None:
        rig, upstream = await _rig()
        client = await rig.client()
        good = get("http://api.stripe.com/ok")
        bad = _post(b"Content-Length: 1\r\nContent-Length: 2\r\n", b"ab")
        await client.send(good + bad + SMUGGLED)
        assert (await client.response()).status == 200
        resp = await client.response()
        assert (resp.status, resp.code) == (400, "request.ambiguous_length")
        assert await client.closed()
        assert [s.target for s in upstream.seen] == ["/ok"]
        await rig.stop()

    run(scenario())


def test_encoded_crlf_in_the_target_stays_encoded() -> None:
    """%0d%0a in a path is data, not a line break: forwarded as received, never decoded."""

    async def scenario() -> None:
        rig, upstream = await _rig()
        resp = await rig.once(get("http://api.stripe.com/a%0d%0aX-Injected:%20yes?q=%0A"))
        assert resp.status == 200
        (seen,) = upstream.seen
        assert seen.target == "/a%0d%0aX-Injected:%20yes?q=%0A"
        assert "x-injected" not in seen.header_names()
        assert b"\r\nX-Injected" not in seen.raw_head
        await rig.stop()

    run(scenario())


def test_connection_listed_fields_cannot_strip_what_the_proxy_sets() -> None:
    """Naming Host or Content-Length in Connection removes the client's copies; the
    proxy sets both itself, so the upstream still gets one Host and true framing."""

    async def scenario() -> None:
        rig, upstream = await _rig()
        resp = await rig.once(
            _post(
                b"Connection: Host, Content-Length, Via\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 5\r\n",
                b"hello",
            )
        )
        assert resp.status == 200
        (seen,) = upstream.seen
        assert seen.header("host") == "api.stripe.com"
        assert seen.header("content-length") == "5" and seen.body == b"hello"
        assert seen.header("via") == "1.1 aegis"
        await rig.stop()

    run(scenario())


def test_trailer_flood_is_bounded() -> None:
    """Trailer fields arrive forever and complete nothing: refused once more than
    about one read plus ``max_head_bytes`` went by without content."""

    async def scenario() -> None:
        config = ProxyConfig(max_head_bytes=4096, buffer_size=8192)
        upstream = await HttpUpstream().start()
        rig = await make_rig(config=config)
        rig.dialer.route("api.stripe.com", None, upstream.port)
        client = await rig.client()
        await client.send(
            _post(b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n", b"1\r\na\r\n0\r\n")
        )
        answer = asyncio.create_task(client.response())
        sent = 0
        trailer = b"X-T: " + b"t" * 995 + b"\r\n"
        while not answer.done() and sent < 1_000_000:
            try:
                await client.send(trailer)
            except ConnectionError:
                break
            sent += len(trailer)
            await asyncio.sleep(0.001)
        resp = await answer
        assert (resp.status, resp.code) == (400, "request.malformed")
        # One read that made progress, the limit, and what was in flight meanwhile.
        assert sent < config.buffer_size + config.max_head_bytes + 64 * 1024
        assert upstream.seen == []
        await rig.stop()

    run(scenario())
