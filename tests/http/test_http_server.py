"""The HTTP/1.1 server over real sockets on 127.0.0.1: framing, limits, smuggling,
timeouts, ordering and graceful stop. Raw bytes where the protocol is the point,
httpx where a well-behaved client is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import httpx
import pytest

from aegis.errors import ErrorCode
from aegis.http.router import Route, Router
from aegis.http.server import HttpLimits, HttpServer, error_response
from aegis.http.types import HttpRequest, HttpResponse, json_response

pytestmark = pytest.mark.anyio

GET_POST = frozenset({"GET", "POST"})
SEEN: list[str] = []  # paths the handlers were called with, to prove what never ran


async def echo(req: HttpRequest) -> HttpResponse:
    SEEN.append(req.path)
    return json_response(
        200,
        {
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "body": req.body.decode("latin-1"),
            "remote": req.remote_addr,
            "headers": [list(h) for h in req.headers],
        },
    )


async def slow(req: HttpRequest) -> HttpResponse:
    seconds = float(parse_qs(req.query).get("s", ["0.2"])[0])
    await asyncio.sleep(seconds)
    return json_response(200, {"slept": seconds, "path": req.path, "query": req.query})


async def boom(req: HttpRequest) -> HttpResponse:
    raise RuntimeError("handler exploded")


async def inject(req: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (("x-echo", "a\r\nset-cookie: stolen=1"),), b"{}")


async def big(req: HttpRequest) -> HttpResponse:
    return HttpResponse(200, (("content-type", "application/octet-stream"),), b"x" * (1 << 20))


def app() -> Router:
    return Router(
        [
            Route("/echo", echo, GET_POST),
            Route("/slow", slow, GET_POST),
            Route("/boom", boom, GET_POST),
            Route("/inject", inject),
            Route("/big", big),
        ]
    )


def request(
    path: str = "/echo",
    method: str = "GET",
    body: bytes = b"",
    headers: tuple[str, ...] = (),
    *,
    length: bool = True,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *headers]
    if length and (body or method == "POST"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
async def served(serve) -> AsyncIterator:  # type: ignore[no-untyped-def]
    async with serve(app()) as s:
        yield s


# -- keep-alive, pipelining, bodies ---------------------------------------------------


async def test_keep_alive_reuses_one_connection(served) -> None:
    async with httpx.AsyncClient(base_url=served.url, trust_env=False) as client:
        for i in range(5):
            resp = await client.post("/echo", content=f"n={i}".encode())
            assert resp.status_code == 200
            assert resp.json()["body"] == f"n={i}"
            assert resp.headers["date"].endswith("GMT")
            assert "connection" not in resp.headers
    assert served.server.stats.connections_accepted == 1
    assert served.server.stats.requests == 5


async def test_request_fields_reach_the_handler(served) -> None:
    conn = await served.connect()
    await conn.send(request("/echo?a=1&b=%20", headers=("X-Thing: Value  ", "x-thing: two")))
    resp = await conn.response()
    assert resp is not None
    got = resp.json()
    assert (got["method"], got["path"], got["query"]) == ("GET", "/echo", "a=1&b=%20")
    assert got["remote"] == "127.0.0.1"
    # Lower-case names, order and repeats kept, OWS trimmed (RFC 9110 §5.5).
    assert ["x-thing", "Value"] in got["headers"] and ["x-thing", "two"] in got["headers"]
    await conn.close()


async def test_pipelined_requests_are_answered_in_order(served) -> None:
    conn = await served.connect()
    # The first is the slowest: order must still be request order (RFC 9112 §9.3.2).
    await conn.send(
        request("/slow?s=0.3")
        + request("/slow?s=0.01")
        + request("/echo", "POST", b"third")
        + request("/slow?s=0")
    )
    answers = [await conn.response() for _ in range(4)]
    assert [a.status for a in answers if a] == [200, 200, 200, 200]
    assert [a.json().get("query", a.json().get("body")) for a in answers if a] == [
        "s=0.3",
        "s=0.01",
        "",
        "s=0",
    ]
    assert answers[2] is not None and answers[2].json()["body"] == "third"
    await conn.close()


async def test_deep_pipelines_pause_reading_and_still_answer_everything(serve) -> None:
    async with serve(app(), HttpLimits(max_pipelined=2)) as served:
        conn = await served.connect()
        await conn.send(b"".join(request("/echo", "POST", f"{i}".encode()) for i in range(60)))
        bodies = []
        for _ in range(60):
            resp = await conn.response()
            assert resp is not None and resp.status == 200
            bodies.append(resp.json()["body"])
        assert bodies == [str(i) for i in range(60)]
        await conn.close()


async def test_chunked_request_body(served) -> None:
    conn = await served.connect()
    body = b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n"
    await conn.send(request("/echo", "POST", body, ("Transfer-Encoding: chunked",), length=False))
    resp = await conn.response()
    assert resp is not None and resp.status == 200
    assert resp.json()["body"] == "hello world"
    # Still usable afterwards.
    await conn.send(request("/echo", "POST", b"next"))
    resp = await conn.response()
    assert resp is not None and resp.json()["body"] == "next"
    await conn.close()


async def test_chunked_body_from_httpx(served) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for piece in (b"ab", b"cd", b"ef"):
            yield piece

    async with httpx.AsyncClient(base_url=served.url, trust_env=False) as client:
        resp = await client.post("/echo", content=parts())
    assert resp.status_code == 200
    assert resp.json()["body"] == "abcdef"


async def test_http_1_0_closes_unless_keep_alive_is_asked(served) -> None:
    conn = await served.connect()
    await conn.send(b"GET /echo HTTP/1.0\r\n\r\n")
    resp = await conn.response()
    assert resp is not None and resp.status == 200
    assert resp.header("connection") == "close"
    assert await conn.closed()

    conn = await served.connect()
    await conn.send(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
    for _ in range(2):
        resp = await conn.response()
        assert resp is not None and resp.header("connection") == "keep-alive"
    await conn.close()


async def test_connection_close_is_honoured(served) -> None:
    conn = await served.connect()
    await conn.send(request(headers=("Connection: close",)) + request())
    resp = await conn.response()
    assert resp is not None and resp.status == 200 and resp.header("connection") == "close"
    assert await conn.closed()  # the second request is not answered


async def test_absolute_form_target_is_routed_by_its_path(served) -> None:
    conn = await served.connect()
    await conn.send(b"GET http://test/echo?q=1 HTTP/1.1\r\nHost: test\r\n\r\n")
    resp = await conn.response()
    assert resp is not None and resp.status == 200
    assert (resp.json()["path"], resp.json()["query"]) == ("/echo", "q=1")
    await conn.close()


async def test_head_has_the_get_headers_and_no_body(served) -> None:
    conn = await served.connect()
    await conn.send(request("/slow?s=0", method="HEAD") + request("/slow?s=0"))
    head = await conn.response(head=True)
    assert head is not None and head.status == 200
    got = await conn.response()
    assert got is not None
    assert head.header("content-length") == str(len(got.body))
    await conn.close()


async def test_expect_100_continue(served) -> None:
    conn = await served.connect()
    await conn.send(request("/echo", "POST", b"", ("Expect: 100-continue",), length=False)[:-2])
    await conn.send(b"Content-Length: 4\r\n\r\n")
    interim = await conn.response()
    assert interim is not None and interim.status == 100
    await conn.send(b"body")
    resp = await conn.response()
    assert resp is not None and resp.status == 200 and resp.json()["body"] == "body"
    await conn.close()


async def test_expect_100_continue_with_a_body_too_large_is_refused_unread(serve) -> None:
    async with serve(app(), HttpLimits(max_body_bytes=10)) as served:
        conn = await served.connect()
        await conn.send(request("/echo", "POST", b"", ("Expect: 100-continue",), length=False)[:-4])
        await conn.send(b"\r\nContent-Length: 11\r\n\r\n")
        resp = await conn.response()
        assert resp is not None and resp.status == 413 and resp.code == "request.too_large"
        assert await conn.closed()


async def test_unknown_expectation_is_417(served) -> None:
    conn = await served.connect()
    await conn.send(request(headers=("Expect: teapot",)))
    resp = await conn.response()
    assert resp is not None and resp.status == 417 and resp.code == "request.invalid_header"
    assert await conn.closed()


# -- routing and handler failures --------------------------------------------------


async def test_not_found_and_method_not_allowed(served) -> None:
    async with httpx.AsyncClient(base_url=served.url, trust_env=False) as client:
        missing = await client.get("/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "request.not_found"
        wrong = await client.delete("/echo")
        assert wrong.status_code == 405
        assert wrong.json()["error"]["code"] == "request.method_not_allowed"
        assert wrong.headers["allow"] == "GET, HEAD, POST"


async def test_a_raising_handler_is_a_logged_500_and_the_connection_lives(served) -> None:
    conn = await served.connect()
    await conn.send(request("/boom") + request())
    resp = await conn.response()
    assert resp is not None and resp.status == 500
    assert resp.json()["error"] == {
        "type": "InternalError",
        "code": "pipeline.internal_error",
        "message": "internal error",
    }
    assert "exploded" not in resp.body.decode()  # no internals leak to the client
    after = await conn.response()
    assert after is not None and after.status == 200
    (line,) = [entry for entry in served.log_lines() if entry["event"] == "http.handler_error"]
    assert line["level"] == "error" and "handler exploded" in line["error"]
    assert line["path"] == "/boom" and "RuntimeError" in line["traceback"]
    assert served.server.stats.handler_errors == 1
    await conn.close()


async def test_response_header_injection_is_never_written(served) -> None:
    conn = await served.connect()
    await conn.send(request("/inject"))
    resp = await conn.response()
    assert resp is not None and resp.status == 500
    assert resp.header("set-cookie") is None and resp.header("x-echo") is None
    await conn.close()


async def test_handler_returning_a_non_response_is_a_500(serve) -> None:
    async def wrong(req: HttpRequest) -> HttpResponse:
        return "not a response"  # type: ignore[return-value]

    async with (
        serve(wrong) as served,
        httpx.AsyncClient(base_url=served.url, trust_env=False) as client,
    ):
        assert (await client.get("/")).status_code == 500


async def test_framing_headers_belong_to_the_server(serve) -> None:
    async def lying(req: HttpRequest) -> HttpResponse:
        return HttpResponse(
            200,
            (("Content-Length", "999"), ("transfer-encoding", "chunked"), ("x-ok", "1")),
            b"abc",
        )

    async with serve(lying) as served:
        conn = await served.connect()
        await conn.send(request("/"))
        resp = await conn.response()
        assert resp is not None and resp.body == b"abc"
        assert resp.header("content-length") == "3" and resp.header("transfer-encoding") is None
        await conn.close()


# -- limits -------------------------------------------------------------------------

SMALL = HttpLimits(max_body_bytes=100, max_header_bytes=600, max_headers=10, max_url_bytes=200)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (request("/echo", "POST", b"x" * 101), 413),
        (
            request(
                "/echo",
                "POST",
                b"40\r\n" + b"x" * 64 + b"\r\n40\r\n" + b"x" * 64 + b"\r\n0\r\n\r\n",
                ("Transfer-Encoding: chunked",),
                length=False,
            ),
            413,
        ),
        (request("/echo?" + "q" * 300), 414),
        (request(headers=tuple(f"X-{i}: v" for i in range(11))), 431),
        (request(headers=("X-Big: " + "v" * 700,)), 431),
    ],
    ids=["content-length", "chunked", "url", "header-count", "header-bytes"],
)
async def test_limits(serve, raw: bytes, status: int) -> None:
    async with serve(app(), SMALL) as served:
        SEEN.clear()
        conn = await served.connect()
        await conn.send(raw)
        resp = await conn.response()
        assert resp is not None and resp.status == status
        assert resp.code == "request.too_large"
        assert resp.header("connection") == "close"
        assert await conn.closed()
        assert served.refusals == [ErrorCode.REQUEST_TOO_LARGE]
        assert SEEN == []


async def test_body_at_the_limit_is_accepted(serve) -> None:
    async with serve(app(), SMALL) as served:
        conn = await served.connect()
        await conn.send(request("/echo", "POST", b"x" * 100))
        resp = await conn.response()
        assert resp is not None and resp.status == 200
        await conn.close()


async def test_a_header_that_never_ends_is_cut_off(serve) -> None:
    async with serve(app(), SMALL) as served:
        conn = await served.connect()
        await conn.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        for _ in range(20):  # 20 * 100 bytes, no CRLF: httptools would buffer it all
            await conn.send(b"v" * 100)
            await asyncio.sleep(0)
        resp = await conn.response()
        assert resp is not None and resp.status == 431
        assert await conn.closed()


async def test_connections_beyond_the_limit_are_closed(serve) -> None:
    async with serve(app(), HttpLimits(max_connections=2)) as served:
        held = [await served.connect() for _ in range(2)]
        for conn in held:
            await conn.send(request())
            assert (await conn.response()) is not None
        extra = await served.connect()
        assert await extra.closed()
        assert served.server.stats.connections_refused == 1
        await held[0].send(request())  # the held ones still work
        assert (await held[0].response()) is not None
        for conn in held:
            await conn.close()


# -- smuggling and malformed framing (RFC 9112 §6.3) --------------------------------

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
            400,
            "request.ambiguous_length",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 4\r\n\r\n0\r\n\r\n" + SMUGGLED,
            400,
            "request.ambiguous_length",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n"
            b"abcd" + SMUGGLED,
            400,
            "request.ambiguous_length",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n"
            b"abcd" + SMUGGLED,
            400,
            "request.ambiguous_length",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4, 4\r\n\r\nabcd",
            400,
            "request.ambiguous_length",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +4\r\n\r\nabcd",
            400,
            "request.ambiguous_length",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "request.ambiguous_length",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
            400,
            "request.ambiguous_length",
        ),
        (
            b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
            400,
            "request.ambiguous_length",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
            "request.malformed",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            400,
            "request.malformed",
        ),
    ],
    ids=[
        "cl-then-te",
        "te-then-cl",
        "conflicting-cl",
        "repeated-identical-cl",
        "cl-list",
        "cl-sign",
        "chunked-twice",
        "te-not-chunked",
        "te-in-http-1.0",
        "unsupported-coding",
        "space-before-colon",
    ],
)
async def test_ambiguous_framing_is_refused_and_closed(
    served, raw: bytes, status: int, code: str
) -> None:
    SEEN.clear()
    conn = await served.connect()
    await conn.send(raw)
    resp = await conn.response()
    assert resp is not None and (resp.status, resp.code) == (status, code)
    assert resp.header("connection") == "close"
    assert await conn.closed()
    assert "/smuggled" not in SEEN and "/echo" not in SEEN


@pytest.mark.parametrize(
    "chunks",
    [
        b"zz\r\nhi\r\n0\r\n\r\n",
        b"-2\r\nhi\r\n0\r\n\r\n",
        b"ffffffffffffffffff\r\nhi\r\n0\r\n\r\n",
        b"2\r\nhiX0\r\n\r\n",
        b"2 \r\nhi\r\n0\r\n\r\n",
        b"0x2\r\nhi\r\n0\r\n\r\n",
        b"2\nhi\r\n0\r\n\r\n",
    ],
    ids=["not-hex", "negative", "overflow", "no-crlf-after-data", "space", "0x", "bare-lf"],
)
async def test_bad_chunking_is_refused_and_closed(served, chunks: bytes) -> None:
    SEEN.clear()
    conn = await served.connect()
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    await conn.send(head + chunks + SMUGGLED)
    resp = await conn.response()
    assert resp is not None and resp.status == 400
    assert resp.code == "request.malformed"
    assert await conn.closed()
    assert SEEN == []


async def test_a_refusal_after_pipelined_requests_comes_after_their_answers(served) -> None:
    conn = await served.connect()
    bad = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    await conn.send(request("/slow?s=0.2") + request("/echo") + bad + request("/echo"))
    statuses = []
    while (resp := await conn.response()) is not None:
        statuses.append(resp.status)
    assert statuses == [200, 200, 400]


@pytest.mark.parametrize(
    "header",
    [b"X-A: a\rX-B: b", b"X-A: a\nX-B: b", b"X-A: a\x00b", b"X-A: a\x01b", b"X-A: a\r\n b"],
    ids=["cr", "lf", "nul", "ctl", "obs-fold"],
)
async def test_header_injection_is_refused(served, header: bytes) -> None:
    SEEN.clear()
    conn = await served.connect()
    await conn.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n" + header + b"\r\n\r\n")
    resp = await conn.response()
    assert resp is not None and resp.status == 400
    assert resp.code in {"request.invalid_header", "request.malformed"}
    assert await conn.closed()
    assert SEEN == []


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /echo HTTP/1.1\r\n\r\n", 400),  # no Host (RFC 9112 §3.2)
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"BREW /echo HTTP/1.1\r\nHost: a\r\n\r\n", 501),
        (b"GET /echo HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET /echo\r\n\r\n", 505),  # HTTP/0.9
        (b"GET /e cho HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 501),  # a TLS ClientHello
    ],
    ids=["no-host", "two-hosts", "unknown-method", "http-2", "http-0.9", "space-in-target", "tls"],
)
async def test_malformed_requests(served, raw: bytes, status: int) -> None:
    conn = await served.connect()
    await conn.send(raw)
    resp = await conn.response()
    assert resp is not None and resp.status == status
    assert resp.code == "request.malformed"
    assert await conn.closed()


async def test_upgrade_requests_are_answered_then_closed(served) -> None:
    conn = await served.connect()
    await conn.send(request(headers=("Connection: upgrade", "Upgrade: websocket")) + request())
    resp = await conn.response()
    assert resp is not None and resp.status == 200 and resp.header("connection") == "close"
    assert await conn.closed()


# -- timeouts (slowloris) -------------------------------------------------------------

QUICK = HttpLimits(header_timeout=0.3, body_timeout=0.3, keepalive_timeout=0.3, linger_timeout=0.3)


async def test_a_head_sent_too_slowly_gets_408(serve) -> None:
    async with serve(app(), QUICK) as served:
        conn = await served.connect()
        started = time.monotonic()
        await conn.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n")
        for _ in range(3):  # a byte now and then does not extend the deadline
            await asyncio.sleep(0.08)
            await conn.send(b"X")
        resp = await conn.response()
        assert resp is not None and resp.status == 408
        assert resp.code == "request.malformed"
        assert await conn.closed()
        assert time.monotonic() - started < 2.0
        assert served.server.stats.timeouts == 1


async def test_a_body_sent_too_slowly_gets_408(serve) -> None:
    async with serve(app(), QUICK) as served:
        conn = await served.connect()
        await conn.send(
            request("/echo", "POST", length=False)[:-2] + b"Content-Length: 10\r\n\r\nabc"
        )
        resp = await conn.response()
        assert resp is not None and resp.status == 408
        assert await conn.closed()


async def test_idle_connections_are_closed(serve) -> None:
    async with serve(app(), QUICK) as served:
        silent = await served.connect()  # never sends a byte: closed without a response
        used = await served.connect()
        await used.send(request())
        assert (await used.response()) is not None
        started = time.monotonic()
        assert await silent.closed(timeout=2.0)
        assert await used.closed(timeout=2.0)
        assert time.monotonic() - started < 2.0


async def test_a_client_that_does_not_read_is_dropped(serve) -> None:
    limits = HttpLimits(write_timeout=0.3, max_pipelined=4)
    async with serve(app(), limits) as served:
        conn = await served.connect()
        await conn.send(request("/big") * 40)  # 40 MiB of answers, none read
        deadline = time.monotonic() + 5
        while served.server.stats.timeouts == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert served.server.stats.timeouts == 1
        assert await conn.closed(timeout=5.0)


async def test_a_half_closed_client_still_gets_its_answers(served) -> None:
    conn = await served.connect()
    await conn.send(request("/slow?s=0.1") + request())
    conn.writer.write_eof()
    assert [(await conn.response()) is not None for _ in range(2)] == [True, True]
    assert await conn.closed()


# -- graceful stop ----------------------------------------------------------------------


async def test_stop_drains_in_flight_requests_and_closes_idle_ones() -> None:
    server = HttpServer(app())
    port = await server.start("127.0.0.1", 0)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    idle_writer.write(request())
    await idle_writer.drain()
    await idle_reader.readuntil(b"}")  # answered; now idle on keep-alive

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
        in_flight = asyncio.create_task(client.get("/slow?s=0.5"))
        await asyncio.sleep(0.15)
        started = time.monotonic()
        stopping = asyncio.create_task(server.stop(grace_seconds=5))
        await asyncio.sleep(0.05)
        assert await idle_reader.read() == b""  # idle keep-alive closed at once
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)  # no longer accepting
        resp = await in_flight
        assert resp.status_code == 200 and resp.json()["slept"] == 0.5
        assert resp.headers["connection"] == "close"
        await stopping
        assert time.monotonic() - started < 3.0
    idle_writer.close()


async def test_stop_cancels_what_outlives_the_grace_period() -> None:
    server = HttpServer(app())
    port = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request("/slow?s=30"))
    await writer.drain()
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await server.stop(grace_seconds=0.3)
    assert time.monotonic() - started < 2.5
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, no answer
    writer.close()
    await server.serve_forever()  # returns at once once stopped


async def test_serve_forever_returns_after_stop() -> None:
    server = HttpServer(app())
    await server.start("127.0.0.1", 0)
    forever = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.05)
    assert not forever.done()
    await server.stop(0.5)
    await asyncio.wait_for(forever, 2)
    with pytest.raises(RuntimeError):
        await server.start("127.0.0.1", 0)


# -- small pieces ----------------------------------------------------------------------


def test_error_response_body() -> None:
    resp = error_response(
        404, ErrorCode.REQUEST_NOT_FOUND, "no such path", path="a.b", headers=[("x", "1")]
    )
    assert resp.status == 404
    assert resp.headers == (("content-type", "application/json"), ("x", "1"))
    assert resp.body == (
        b'{"error":{"type":"RequestError","code":"request.not_found",'
        b'"message":"no such path","path":"a.b"}}'
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"max_body_bytes": 0}, {"max_headers": -1}, {"header_timeout": 0}, {"linger_timeout": -1.0}],
)
def test_limits_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        HttpLimits(**kwargs)  # type: ignore[arg-type]


def test_sweep_interval_follows_the_shortest_timeout() -> None:
    assert HttpLimits().sweep_interval == 0.5
    assert QUICK.sweep_interval == pytest.approx(0.075)


async def test_a_handler_closing_the_connection_drops_what_was_pipelined_after(serve) -> None:
    async def closing(req: HttpRequest) -> HttpResponse:
        SEEN.append(req.path)
        return HttpResponse(200, (("connection", "close"),), b"bye")

    async with serve(Router([Route("/close", closing), Route("/echo", echo)])) as served:
        SEEN.clear()
        conn = await served.connect()
        await conn.send(request("/close") + request("/echo"))
        resp = await conn.response()
        assert resp is not None and resp.body == b"bye" and resp.header("connection") == "close"
        assert await conn.closed()
        assert SEEN == ["/close"]
