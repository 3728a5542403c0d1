"""Fuzzing the request line and head (DESIGN.md §6: "proxy request line ... fuzzed").

Three properties, each bounded to 200 examples:

* the sans-io parser never raises on any bytes, however split, and every refusal
  is a 4xx/505 that closes the connection;
* through a real socket, bytes without credentials get a clean 4xx/505 or a
  close, never an exception in the server and never a byte upstream;
* an authenticated request with a mangled target is either refused or dialled
  to a host on the policy's allowlist -- no spelling reaches another host.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxyrig import AUTH, LOCAL, make_rig, run

from aegis.doors.proxy.parsing import Event, Failed, Head, RequestParser, Tunnel

REFUSAL_STATUSES = {400, 407, 408, 413, 414, 415, 417, 431, 505}
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

METHODS = [b"GET", b"POST", b"CONNECT", b"HEAD", b"PUT", b"OPTIONS", b"PRI", b"get", b""]
TARGETS = [
    b"http://api.stripe.com/",
    b"api.stripe.com:443",
    b"http://api.stripe.com@evil.test/",
    b"/",
    b"*",
    b"http://[::1]:80/",
    b"http://2130706433/",
]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1 ", b"http/1.1", b""]
FIELDS = [
    b"Host: a",
    b"Content-Length: 3",
    b"Content-Length: -1",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Connection: close",
    b"Expect: 100-continue",
    b"X: a\r\n b",
    b"X:\x00",
    b" leading: space",
]
EOLS = [b"\r\n", b"\n", b"\r", b""]


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    """Request heads assembled from meaningful pieces, mutated by random bytes."""
    eol = draw(st.sampled_from(EOLS))
    line = b" ".join(
        [
            draw(st.sampled_from(METHODS)),
            draw(st.one_of(st.sampled_from(TARGETS), st.binary(max_size=40))),
            draw(st.sampled_from(VERSIONS)),
        ]
    )
    fields = draw(st.lists(st.one_of(st.sampled_from(FIELDS), st.binary(max_size=30)), max_size=5))
    data = line + eol + b"".join(f + eol for f in fields) + eol
    data += draw(st.binary(max_size=40))
    if draw(st.booleans()) and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at + 1 :]
    return data


anything = st.one_of(st.binary(max_size=600), heads())


def _check_events(events: list[Event]) -> None:
    for i, event in enumerate(events):
        if isinstance(event, Failed):
            assert event.refusal.status in REFUSAL_STATUSES
            assert event.refusal.close
            assert i == len(events) - 1  # nothing after a failure
        elif isinstance(event, Head):
            assert event.head.method and event.head.target.isascii()
            assert event.head.version in {"1.0", "1.1"}


@FUZZ
@given(data=anything, cuts=st.lists(st.integers(1, 64), max_size=8))
def test_parser_never_raises(data: bytes, cuts: list[int]) -> None:
    parser = RequestParser(max_head_bytes=1024)
    events: list[Event] = []
    position = 0
    for size in [*cuts, len(data)]:
        piece = data[position : position + size]
        position += size
        if not piece:
            continue
        events.extend(parser.feed(piece))
        if parser.upgraded or parser.failed is not None:
            break
    _check_events(events)
    if parser.upgraded:
        assert isinstance(events[-1], Tunnel)


async def _exchange(data: bytes) -> tuple[bytes, list[tuple[str, int]], list[str]]:
    rig = await make_rig()
    try:
        reader, writer = await asyncio.open_connection(LOCAL, rig.port)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        answer = b""
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                answer += chunk
        writer.close()
        return answer, list(rig.dialer.dialled), [e["event"] for e in rig.log_lines()]
    finally:
        await rig.stop(grace=0.5)


@FUZZ
@given(data=anything)
def test_garbage_through_a_socket_is_refused_cleanly(data: bytes) -> None:
    if b"proxy-authorization" in data.lower():
        return  # this property is about requests without credentials
    answer, dialled, events = run(_exchange(data))
    assert dialled == []
    assert "proxy.internal_error" not in events
    if answer:
        status_line = answer.split(b"\r\n", 1)[0]
        version, status = status_line.split(b" ")[:2]
        assert version == b"HTTP/1.1"
        assert int(status) in REFUSAL_STATUSES, answer[:200]


ALLOWED = {"api.stripe.com", "api.github.com", "127.0.0.1", "dlp.example"}
HOST_CHARS = st.sampled_from(
    [*"apistrbe.cmog-0123456789xX@:/\\%[]?#;=_~", "ѕ", "\u200b", "ⓔ", "%2e", "%40", "．"]
)


@FUZZ
@given(
    prefix=st.sampled_from(["api.stripe.com", "evil.test", "", "0x7f.1", "api.github.com."]),
    mangle=st.lists(HOST_CHARS, max_size=12).map("".join),
    suffix=st.sampled_from(["", "/", "/v1?a=b", ":80/", ":8080/x"]),
)
def test_no_spelling_of_a_target_reaches_a_host_off_the_allowlist(
    prefix: str, mangle: str, suffix: str
) -> None:
    target = f"http://{prefix}{mangle}{suffix}".encode()
    data = b"GET " + target + b" HTTP/1.1\r\nProxy-Authorization: " + AUTH.encode() + b"\r\n\r\n"
    _, dialled, events = run(_exchange(data))
    assert "proxy.internal_error" not in events
    for host, _port in dialled:
        name = host.rstrip(".")
        assert name in ALLOWED or name.endswith(".salesforce.com"), (target, host)
