"""The proxy's pure parts, without sockets: request parser, targets, identity,
hop-by-hop headers, the ToolCall mapping and sanitize rewriting."""

from __future__ import annotations

import base64

import pytest

from aegis.doors.proxy.calls import (
    InspectedBody,
    UninspectableBodyError,
    http_call,
    inspect_body,
    is_json_media_type,
    rewrite_for_sanitize,
)
from aegis.doors.proxy.config import ProxyConfig
from aegis.doors.proxy.headers import connection_options, end_to_end, via
from aegis.doors.proxy.identity import ProxyIdentity, identify
from aegis.doors.proxy.parsing import (
    Body,
    End,
    Event,
    Failed,
    Head,
    RequestHead,
    RequestParser,
    Tunnel,
)
from aegis.doors.proxy.responses import RequestRefusedError
from aegis.doors.proxy.target import parse_absolute_target, parse_connect_target
from aegis.errors import ErrorCode
from aegis.net import HostKind, parse_destination

REQUEST = (
    b"POST http://api.stripe.com/v1?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
    b"X-Trail:  spaced \t\r\n\r\nhello"
)


def _feed_all(data: bytes, step: int | None = None, **limits: int) -> list[Event]:
    parser = RequestParser(**limits)
    events: list[Event] = []
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        events.extend(parser.feed(data[i : i + step]))
    return events


def _merge_bodies(events: list[Event]) -> list[object]:
    out: list[object] = []
    for event in events:
        if isinstance(event, Body) and out and isinstance(out[-1], bytes):
            out[-1] += event.data
        elif isinstance(event, Body):
            out.append(event.data)
        else:
            out.append(type(event).__name__)
    return out


@pytest.mark.parametrize("step", [1, 2, 7, 64, None])
def test_parser_gives_the_same_events_however_the_bytes_are_split(step: int | None) -> None:
    events = _feed_all(REQUEST, step)
    assert _merge_bodies(events) == ["Head", b"hello", "End"]
    head = events[0]
    assert isinstance(head, Head)
    assert head.head.method == "POST"
    assert head.head.target == "http://api.stripe.com/v1?x=1"
    assert head.head.content_length == 5 and not head.head.chunked
    assert head.head.get("x-trail") == "spaced"  # OWS trimmed both sides (RFC 9110 §5.5)
    assert head.head.keep_alive


def test_pipelined_requests_and_trailers() -> None:
    data = (
        b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nab\r\n0\r\nX-Trailer: dropped\r\n\r\n"
        b"GET http://b/ HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    events = _feed_all(data)
    kinds = _merge_bodies(events)
    assert kinds == ["Head", b"ab", "End", "Head", "End"]
    first, second = (e.head for e in events if isinstance(e, Head))
    assert first.chunked and first.get("x-trailer") is None
    assert second.target == "http://b/" and not second.keep_alive


def test_connect_stops_the_parser_and_keeps_the_tail() -> None:
    parser = RequestParser()
    events = parser.feed(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n\x16\x03")
    assert [type(e) for e in events] == [Head, End, Tunnel]
    assert events[-1] == Tunnel(b"\x16\x03")
    assert parser.upgraded
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "request.invalid_header"),
        (b"CONNECT a:443 HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", 400, "request.malformed"),
        (
            b"CONNECT a:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "request.malformed",
        ),
        (b"GET http://a/ HTTP/1.2\r\n\r\n", 400, "request.malformed"),  # llhttp refuses it
        (b"GET http://a/ HTTP/2.0\r\n\r\n", 505, "request.malformed"),  # llhttp reads it; we refuse
        (b"GET http://a/\xff HTTP/1.1\r\n\r\n", 400, "request.malformed"),
    ],
)
def test_parser_refusals(data: bytes, status: int, code: str) -> None:
    events = _feed_all(data)
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert (failed.refusal.status, str(failed.refusal.code)) == (status, code)
    assert failed.refusal.close
    assert not any(isinstance(e, Head) for e in events)


def test_parser_stays_failed() -> None:
    parser = RequestParser()
    first = parser.feed(b"BAD\x00\r\n")
    assert isinstance(first[-1], Failed)
    assert parser.feed(b"GET http://a/ HTTP/1.1\r\n\r\n") == [first[-1]]


def test_a_header_growing_one_byte_at_a_time_is_cut_off_at_the_limit() -> None:
    parser = RequestParser(max_head_bytes=1024)
    parser.feed(b"GET http://a/ HTTP/1.1\r\nX-Grow: ")
    fed = 0
    while fed < 10_000:
        events = parser.feed(b"a")
        fed += 1
        if events:
            break
    assert isinstance(events[-1], Failed)
    assert events[-1].refusal.status == 431
    assert fed <= 1024


def test_limits_on_target_and_header_count() -> None:
    events = _feed_all(b"GET http://a/" + b"x" * 100 + b" HTTP/1.1\r\n\r\n", max_target_length=50)
    assert isinstance(events[-1], Failed) and events[-1].refusal.status == 414
    many = b"".join(b"X-%d: v\r\n" % i for i in range(11))
    events = _feed_all(b"GET http://a/ HTTP/1.1\r\n" + many + b"\r\n", max_headers=10)
    assert isinstance(events[-1], Failed) and events[-1].refusal.status == 431


# -- targets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "host", "port", "origin_form", "destination"),
    [
        (
            "http://api.stripe.com/v1?a=1",
            "api.stripe.com",
            80,
            "/v1?a=1",
            "http://api.stripe.com/v1?a=1",
        ),
        ("http://API.stripe.com:8080", "api.stripe.com", 8080, "/", "http://api.stripe.com:8080/"),
        ("http://u:p@api.stripe.com/", "api.stripe.com", 80, "/", "http://api.stripe.com/"),
        ("http://api.stripe.com@evil.test/", "evil.test", 80, "/", "http://evil.test/"),
        ("http://[::1]:81/x#frag", "[::1]", 81, "/x", "http://[::1]:81/x"),
        ("http://0x7f.0.0.1/a/../b", "127.0.0.1", 80, "/b", "http://127.0.0.1/b"),
        ("HTTP://a.example/%7e?q", "a.example", 80, "/%7e?q", "http://a.example/%7e?q"),
    ],
)
def test_absolute_targets(
    target: str, host: str, port: int, origin_form: str, destination: str
) -> None:
    parsed = parse_absolute_target(target)
    assert (parsed.host.name, parsed.port, parsed.origin_form) == (host, port, origin_form)
    assert parsed.destination == destination
    # The policy engine reads the destination back to the very host that is dialled.
    again = parse_destination(parsed.destination)
    assert again is not None and (again.name, again.port) == (host, port)


def test_dial_host_and_authority() -> None:
    v6 = parse_connect_target("[::1]:443")
    assert (v6.dial_host, v6.host.kind) == ("::1", HostKind.IPV6)
    plain = parse_absolute_target("http://a.example/")
    assert plain.authority == "a.example"
    assert parse_absolute_target("http://a.example:81/").authority == "a.example:81"


@pytest.mark.parametrize("target", ["/x", "*", "https://a/", "ws://a/", "http:///a", "a.example"])
def test_absolute_target_refusals(target: str) -> None:
    with pytest.raises(RequestRefusedError) as info:
        parse_absolute_target(target)
    assert info.value.status == 400


# -- identity --------------------------------------------------------------------------


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_identity_from_basic() -> None:
    assert identify([_basic("acme/crm-agent:s3cr:et")]) == ProxyIdentity(
        "acme", "crm-agent", "s3cr:et"
    )
    assert identify([_basic("acme/team/agent:")]) == ProxyIdentity("acme", "team/agent", None)
    assert identify(["bAsIc " + _basic("t/a:x").split()[1]]).tenant == "t"
    assert identify([_basic("t/ä-agent:x")]).agent_id == "ä-agent"


@pytest.mark.parametrize(
    "values",
    [
        [],
        [_basic("a/b:c"), _basic("a/b:c")],
        [_basic("a/b\x07:c")],
        [_basic("a/" + "b" * 300 + ":c")],
    ],
)
def test_identity_refusals(values: list[str]) -> None:
    with pytest.raises(RequestRefusedError) as info:
        identify(values)
    assert (info.value.status, info.value.code) == (407, ErrorCode.IDENTITY_MISSING)


def test_bearer_identity() -> None:
    assert identify(["Bearer abc=="], bearer_identity=("t", "a")) == ProxyIdentity(
        "t", "a", "abc=="
    )
    with pytest.raises(RequestRefusedError):
        identify(["Bearer a b"], bearer_identity=("t", "a"))


# -- headers ---------------------------------------------------------------------------


def test_hop_by_hop_fields() -> None:
    headers = [
        ("connection", "close, X-A , x-b"),
        ("x-a", "1"),
        ("x-b", "2"),
        ("keep-alive", "t=1"),
        ("te", "trailers"),
        ("upgrade", "h2c"),
        ("proxy-authorization", "Basic x"),
        ("host", "h"),
        ("x-c", "3"),
    ]
    assert connection_options(headers) == {"close", "x-a", "x-b"}
    assert end_to_end(headers, frozenset({"host"})) == [("x-c", "3")]
    assert (
        via([("via", "1.0 fred"), ("via", "1.1 p")], "1.0", "aegis") == "1.0 fred, 1.1 p, 1.0 aegis"
    )


# -- the call and sanitize -------------------------------------------------------------


def _head(method: str = "POST", **headers: str) -> RequestHead:
    return RequestHead(method, "t", "1.1", list(headers.items()), True, None, False)


def test_json_media_types() -> None:
    assert is_json_media_type("application/json; charset=utf-8")
    assert is_json_media_type("Application/Problem+JSON")
    assert not is_json_media_type("text/json-ish")
    assert not is_json_media_type(None)


def test_body_inspection() -> None:
    json_head = _head(**{"content-type": "application/json"})
    assert inspect_body(json_head, b'{"a": [1, 2.5, null]}') == InspectedBody(
        {"a": [1, 2.5, None]}, True
    )
    assert inspect_body(_head(), "héllo".encode()) == InspectedBody("héllo", False)
    with pytest.raises(UninspectableBodyError):
        inspect_body(_head(), b"\xff")
    with pytest.raises(UninspectableBodyError):
        inspect_body(_head(**{"content-encoding": "br"}), b"x")
    with pytest.raises(RequestRefusedError):
        inspect_body(json_head, b'{"a": Infinity}')
    with pytest.raises(RequestRefusedError):
        inspect_body(json_head, "\ufeff{}".encode())


def test_call_refuses_what_parse_call_refuses() -> None:
    config = ProxyConfig()
    target = parse_absolute_target("http://a.example/")
    identity = ProxyIdentity("acme", "a", None)
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(RequestRefusedError) as info:
        http_call(
            config,
            identity,
            _head(),
            target,
            forwarded=[],
            body=InspectedBody(deep, True),  # type: ignore[arg-type]
            has_body=True,
        )
    assert (info.value.status, info.value.code) == (400, ErrorCode.CALL_TOO_DEEP)


def test_sanitize_rewrite_only_touches_what_changed() -> None:
    config = ProxyConfig()
    forwarded = [("authorization", "k"), ("x-a", "1"), ("x-a", "2"), ("x-b", "b")]
    original = {
        "method": "POST",
        "path": "/p",
        "query": "q=1",
        "headers": {"x-a": "1, 2", "x-b": "b"},
        "body": {"k": "v"},
    }
    assert not rewrite_for_sanitize(
        original, dict(original), forwarded, config, None
    ).changes_anything
    sanitized = {**original, "headers": {"x-a": "[REDACTED]", "x-b": "b"}, "body": {"k": "[X]"}}
    rewrite = rewrite_for_sanitize(
        original, sanitized, forwarded, config, InspectedBody({"k": "v"}, True)
    )
    assert rewrite.origin_form is None
    assert rewrite.headers == [("authorization", "k"), ("x-a", "[REDACTED]"), ("x-b", "b")]
    assert rewrite.body == b'{"k":"[X]"}'
    sanitized = {**original, "path": "/p/[REDACTED:email]", "query": "q=[REDACTED]"}
    rewrite = rewrite_for_sanitize(original, sanitized, forwarded, config, None)
    assert rewrite.origin_form == "/p/%5BREDACTED:email%5D?q=%5BREDACTED%5D"
    with pytest.raises(RequestRefusedError):
        rewrite_for_sanitize(original, {**original, "method": "[X]"}, forwarded, config, None)
