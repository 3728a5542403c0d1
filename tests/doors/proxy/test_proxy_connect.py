"""CONNECT tunnels: decided on host and port, then spliced both ways."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from proxyrig import EchoTarget, Rig, connect, make_rig, run

from aegis.doors.proxy import ProxyConfig
from aegis.net import parse_destination
from aegis.policy import compile_text

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


async def _rig_with_echo(**kwargs: object) -> tuple[Rig, EchoTarget]:
    echo = await EchoTarget(farewell=b"|bye").start()
    rig = await make_rig(**kwargs)  # type: ignore[arg-type]
    for host in ("api.stripe.com", "eu1.salesforce.com", "127.0.0.1", "hooks.slack.com"):
        rig.dialer.route(host, None, echo.port)
    return rig, echo


def test_allowed_connect_splices_both_ways() -> None:
    async def scenario() -> None:
        rig, _echo = await _rig_with_echo()
        calls = []
        decide = rig.pipeline.decide

        async def spy(call, ctx):  # type: ignore[no-untyped-def]
            calls.append(call)
            return await decide(call, ctx)

        rig.pipeline.decide = spy  # type: ignore[method-assign]
        client = await rig.client()
        await client.send(connect("api.stripe.com:443"))
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 Connection established\r\n")
        assert b"x-aegis-decision-id: " in head
        assert b"content-length" not in head.lower()  # RFC 9110 §9.3.6
        hello = b"\x16\x03\x01 pretend TLS"
        await client.send(hello)
        assert await client.reader.readexactly(len(hello)) == hello
        # Half-close: the client is done sending; the target still answers.
        client.writer.write_eof()
        assert await client.reader.read() == b"|bye"
        (call,) = calls
        assert (call.tool, str(call.kind), call.destination) == (
            "http.request",
            "write",
            "https://api.stripe.com:443",
        )
        assert dict(call.params) == {"method": "CONNECT"}
        assert rig.dialer.dialled == [("api.stripe.com", 443)]
        await asyncio.sleep(0.05)
        (closed,) = rig.events("proxy.tunnel_closed")
        assert (closed["bytes_up"], closed["bytes_down"]) == (len(hello), len(hello) + 4)
        await rig.stop()

    run(scenario())


def test_bytes_sent_with_the_connect_head_go_through_after_the_decision() -> None:
    async def scenario() -> None:
        rig, _echo = await _rig_with_echo()
        client = await rig.client()
        await client.send(connect("api.stripe.com:443") + b"early-hello")
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await client.reader.readexactly(11) == b"early-hello"
        client.close()
        await rig.stop()

    run(scenario())


def test_a_megabyte_through_the_tunnel() -> None:
    async def scenario() -> None:
        rig, _echo = await _rig_with_echo(config=ProxyConfig(buffer_size=4096))
        client = await rig.client()
        await client.send(connect("api.stripe.com:443"))
        await client.reader.readuntil(b"\r\n\r\n")
        payload = bytes(range(256)) * 4096  # 1 MiB

        async def send() -> None:
            for i in range(0, len(payload), 65536):
                client.writer.write(payload[i : i + 65536])
                await client.writer.drain()
            client.writer.write_eof()

        sender = asyncio.create_task(send())
        got = bytearray()
        while chunk := await client.reader.read(65536):
            got += chunk
        await sender
        assert bytes(got) == payload + b"|bye"
        await rig.stop()

    run(scenario())


def test_denied_connect_is_403_and_never_dialled() -> None:
    async def scenario() -> None:
        rig, echo = await _rig_with_echo()
        client = await rig.client()
        resp = await client.request(connect("example-exfil.xyz:443"))
        assert resp.status == 403
        assert resp.json()["error"]["rule_ids"] == ["egress-unknown-domain"]
        assert await client.closed()
        assert rig.dialer.dialled == [] and echo.connections == 0
        await rig.stop()

    run(scenario())


@pytest.mark.parametrize(
    "target",
    [
        "evil.com:443@good.com",
        "api.stripe.com:443@evil.test",
        "user@api.stripe.com:443",
        "api.stripe.com:443/path",
        "api.stripe.com",  # no port
        "api.stripe.com:",
        "api.stripe.com:0",
        "api.stripe.com:99999",
        "api.stripe.com:443:443",
        "[::1",
        ":443",
        "http://api.stripe.com:443",
        "api.stripe.com:https",
        "%00:443",
    ],
)
def test_unparseable_connect_targets_are_400(target: str) -> None:
    async def scenario() -> None:
        rig, echo = await _rig_with_echo()
        client = await rig.client()
        resp = await client.request(connect(target))
        assert resp.status == 400, target
        assert resp.code in {"request.destination_refused", "request.malformed"}, resp.code
        assert await client.closed()
        assert rig.dialer.dialled == [] and echo.connections == 0
        await rig.stop()

    run(scenario())


def test_connect_to_an_ip_spelled_in_decimal_dials_the_address() -> None:
    async def scenario() -> None:
        rig, _echo = await _rig_with_echo()
        client = await rig.client()
        await client.send(connect("2130706433:443"))
        assert (await client.reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        assert rig.dialer.dialled == [("127.0.0.1", 443)]
        client.close()
        await rig.stop()

    run(scenario())


def test_connect_needs_an_identity() -> None:
    async def scenario() -> None:
        rig, echo = await _rig_with_echo()
        resp = await rig.once(connect("api.stripe.com:443", auth=None))
        assert (resp.status, resp.code) == (407, "identity.missing")
        assert resp.header("proxy-authenticate") == 'Basic realm="aegis", charset="UTF-8"'
        assert echo.connections == 0
        await rig.stop()

    run(scenario())


def test_connect_with_content_is_malformed() -> None:
    async def scenario() -> None:
        rig, echo = await _rig_with_echo()
        resp = await rig.once(connect("api.stripe.com:443", extra="Content-Length: 5\r\n"))
        assert (resp.status, resp.code) == (400, "request.malformed")
        assert echo.connections == 0
        await rig.stop()

    run(scenario())


def test_unreachable_connect_target_is_502() -> None:
    async def scenario() -> None:
        rig = await make_rig()
        resp = await rig.once(connect("api.stripe.com:443"))
        assert (resp.status, resp.code) == (502, "request.upstream_failed")
        await rig.stop()

    run(scenario())


def test_idle_tunnel_is_closed() -> None:
    async def scenario() -> None:
        rig, _echo = await _rig_with_echo(config=ProxyConfig(tunnel_idle_timeout=0.2))
        client = await rig.client()
        await client.send(connect("api.stripe.com:443"))
        await client.reader.readuntil(b"\r\n\r\n")
        await client.send(b"ping")
        assert await client.reader.readexactly(4) == b"ping"
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await client.closed(timeout=3)
        assert loop.time() - start >= 0.15
        await asyncio.sleep(0.05)
        (closed,) = rig.events("proxy.tunnel_closed")
        assert closed["idle_timeout"] is True
        await rig.stop()

    run(scenario())


def test_the_example_egress_policy_governs_tunnels() -> None:
    """examples/egress/policy.yaml works unchanged: CONNECT is its http.request tool
    and the tunnel's destination is https://host:443."""

    async def scenario() -> None:
        path = EXAMPLES / "egress" / "policy.yaml"
        policy = compile_text(path.read_text(encoding="utf-8"), str(path))
        rig, echo = await _rig_with_echo(policy=policy)
        expectations = {
            "api.stripe.com:443": 200,
            "acme.my.salesforce.com:443": 200,
            "hooks.slack.com:443": 200,
            "hooks.slack.com:8443": 403,  # the allowlist pins port 443
            "example-exfil.xyz:443": 403,
            "evilsalesforce.com:443": 403,
        }
        rig.dialer.route("acme.my.salesforce.com", None, echo.port)
        for target, status in expectations.items():
            client = await rig.client()
            await client.send(connect(target))
            head = await client.reader.readuntil(b"\r\n\r\n")
            assert head.startswith(f"HTTP/1.1 {status} ".encode()), (target, head)
            client.close()
        await rig.stop()

    run(scenario())


@pytest.mark.parametrize(
    ("target", "destination"),
    [
        ("api.stripe.com:443", "https://api.stripe.com:443"),
        ("API.STRIPE.COM.:443", "https://api.stripe.com.:443"),
        ("api.stripe.com:22", "tcp://api.stripe.com:22"),
        ("[::1]:8443", "tcp://[::1]:8443"),
        ("0x7f.1:443", "https://127.0.0.1:443"),
    ],
)
def test_connect_destinations_parse_back_to_the_dialled_host(target: str, destination: str) -> None:
    from aegis.doors.proxy.target import parse_connect_target

    parsed = parse_connect_target(target)
    assert parsed.destination == destination
    again = parse_destination(destination)
    assert again is not None
    assert (again.name, again.port) == (parsed.host.name, parsed.port)
