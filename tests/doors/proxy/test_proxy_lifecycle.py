"""Start, graceful stop, timeouts (slowloris, idle, stalled bodies) and the connection cap."""

from __future__ import annotations

import asyncio

import pytest
from proxyrig import (
    AUTH,
    LOCAL,
    Client,
    EchoTarget,
    HttpUpstream,
    Seen,
    connect,
    get,
    make_rig,
    run,
)

from aegis.doors.proxy import ProxyConfig, build_forward_proxy
from aegis.pipeline import Pipeline
from aegis.policy import compile_text


def test_start_binds_an_ephemeral_local_port_once() -> None:
    async def scenario() -> None:
        rig = await make_rig()
        assert rig.port > 0 and rig.proxy.port == rig.port
        with pytest.raises(RuntimeError):
            await rig.proxy.start(LOCAL, 0)
        await rig.stop()
        assert rig.proxy.port is None
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(LOCAL, rig.port)
        await rig.stop()  # stopping twice is harmless

    run(scenario())


def test_stop_closes_idle_connections_at_once() -> None:
    async def scenario() -> None:
        upstream = await HttpUpstream().start()
        rig = await make_rig()
        rig.dialer.route("api.stripe.com", None, upstream.port)
        client = await rig.client()
        assert (await client.request(get("http://api.stripe.com/"))).status == 200
        loop = asyncio.get_running_loop()
        start = loop.time()
        await rig.proxy.stop(grace=5.0)
        assert loop.time() - start < 1.0  # nothing in flight: no waiting for the grace
        assert await client.closed()
        assert rig.proxy.active_connections == 0

    run(scenario())


def test_stop_lets_a_request_in_flight_finish() -> None:
    async def scenario() -> None:
        started = asyncio.Event()

        async def slow(seen: Seen, writer: asyncio.StreamWriter) -> None:
            started.set()
            await asyncio.sleep(0.3)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate")
            await writer.drain()

        upstream = await HttpUpstream(slow).start()
        rig = await make_rig()
        rig.dialer.route("api.stripe.com", None, upstream.port)
        client = await rig.client()
        await client.send(get("http://api.stripe.com/"))
        await started.wait()
        stopping = asyncio.create_task(rig.proxy.stop(grace=5.0))
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectionRefusedError):  # no longer accepting
            await asyncio.open_connection(LOCAL, rig.port)
        resp = await client.response()
        assert (resp.status, resp.body) == (200, b"late")
        assert resp.header("connection") == "close"  # draining: the last response on it
        await stopping
        assert await client.closed()

    run(scenario())


def test_stop_cuts_tunnels_off_at_the_deadline() -> None:
    async def scenario() -> None:
        echo = await EchoTarget().start()
        rig = await make_rig()
        rig.dialer.route("api.stripe.com", None, echo.port)
        client = await rig.client()
        await client.send(connect("api.stripe.com:443"))
        await client.reader.readuntil(b"\r\n\r\n")
        await client.send(b"x")
        assert await client.reader.readexactly(1) == b"x"
        loop = asyncio.get_running_loop()
        start = loop.time()
        await rig.proxy.stop(grace=0.3)
        elapsed = loop.time() - start
        assert 0.25 <= elapsed < 2.0
        assert await client.closed()
        assert rig.proxy.active_connections == 0

    run(scenario())


def test_slowloris_gets_408_when_the_head_deadline_passes() -> None:
    async def scenario() -> None:
        upstream = await HttpUpstream().start()
        rig = await make_rig(config=ProxyConfig(head_timeout=0.3))
        rig.dialer.route("api.stripe.com", None, upstream.port)
        client = await rig.client()
        await client.send(b"GET http://api.stripe.com/ HTTP/1.1\r\n")
        loop = asyncio.get_running_loop()
        start = loop.time()
        answer = asyncio.create_task(client.response())
        for i in range(200):  # one header byte at a time, each well within any idle timeout
            if answer.done():
                break
            try:
                await client.send(b"X-Slow-%d: 1\r\n" % i)
            except ConnectionError:
                break
            await asyncio.sleep(0.02)
        resp = await answer
        assert (resp.status, resp.code) == (408, "request.malformed")
        assert loop.time() - start < 2.0
        assert await client.closed()
        assert upstream.seen == []
        await rig.stop()

    run(scenario())


def test_a_silent_connection_is_closed_without_an_answer() -> None:
    async def scenario() -> None:
        rig = await make_rig(config=ProxyConfig(head_timeout=0.2))
        client = await rig.client()
        assert await client.closed(timeout=3)
        await rig.stop()

    run(scenario())


def test_idle_keep_alive_connection_is_closed() -> None:
    async def scenario() -> None:
        upstream = await HttpUpstream().start()
        rig = await make_rig(config=ProxyConfig(idle_timeout=0.2))
        rig.dialer.route("api.stripe.com", None, upstream.port)
        client = await rig.client()
        assert (await client.request(get("http://api.stripe.com/"))).status == 200
        assert await client.closed(timeout=3)
        await rig.stop()

    run(scenario())


def test_a_body_that_stops_arriving_is_408() -> None:
    async def scenario() -> None:
        upstream = await HttpUpstream().start()
        rig = await make_rig(config=ProxyConfig(idle_timeout=0.2))
        rig.dialer.route("api.stripe.com", None, upstream.port)
        client = await rig.client()
        await client.send(
            b"POST http://api.stripe.com/ HTTP/1.1\r\nProxy-Authorization: "
            + AUTH.encode()
            + b"\r\nContent-Length: 100\r\n\r\nonly-some"
        )
        resp = await client.response()
        assert resp.status == 408
        assert await client.closed()
        assert upstream.seen == []
        await rig.stop()

    run(scenario())


def test_upstream_that_never_answers_is_502() -> None:
    async def scenario() -> None:
        async def silent(seen: Seen, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(10)

        upstream = await HttpUpstream(silent).start()
        rig = await make_rig(config=ProxyConfig(response_timeout=0.2))
        rig.dialer.route("api.stripe.com", None, upstream.port)
        resp = await rig.once(get("http://api.stripe.com/"))
        assert (resp.status, resp.code) == (502, "request.upstream_failed")
        await rig.stop()

    run(scenario())


def test_connections_over_the_cap_get_503() -> None:
    async def scenario() -> None:
        rig = await make_rig(config=ProxyConfig(max_connections=1))
        first = await rig.client()
        await first.send(b"GET ")  # holds the only slot
        await asyncio.sleep(0.05)
        second = await rig.client()
        resp = await second.response()
        assert (resp.status, resp.header("retry-after")) == (503, "1")
        first.close()
        await rig.stop()

    run(scenario())


def test_builder_defaults_and_config_validation() -> None:
    policy = compile_text(
        "apiVersion: aegis.dev/v1\nkind: Policy\nmetadata: {name: p}\nrules: []\n"
    )
    proxy = build_forward_proxy(Pipeline.with_defaults(policy), metrics=None, log=None)
    assert proxy.config == ProxyConfig()
    assert proxy.config.read_tool == "http.get" and proxy.config.connect_tool == "http.request"
    for bad, message in (
        ({"inspect_body_limit": -1}, "inspect_body_limit"),
        ({"head_timeout": 0}, "head_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"write_tool": ""}, "write_tool"),
        ({"realm": 'a"b'}, "realm"),
        ({"bearer_identity": ("acme", "")}, "bearer_identity"),
    ):
        with pytest.raises(ValueError, match=message):
            ProxyConfig(**bad)  # type: ignore[arg-type]
    assert ProxyConfig(read_methods=frozenset({"get"})).read_methods == {"GET"}


def test_client_helper_talks_only_to_localhost() -> None:
    # The rig's connector refuses names it was not given: no test can leave the host.
    async def scenario() -> None:
        rig = await make_rig()
        resp = await rig.once(get("http://api.github.com/"))
        assert resp.status == 502
        assert rig.dialer.dialled == [("api.github.com", 80)]
        client = await Client.open(rig.port)
        client.close()
        await rig.stop()

    run(scenario())
