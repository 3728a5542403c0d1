"""The fail-mode matrix at the proxy door (DESIGN.md §6, as Envoy tests ext_authz).

{core ok, raising, slow past its timeout, store down} x {a declared read tool with
``defaults.fail_mode.read: open``, a write tool}: a read fails open (forwarded,
counted, logged), a write fails closed (403, nothing upstream, counted, logged).
With ``fail_mode.read: closed`` reads fail closed too. A CONNECT tunnel is a write.
"""

from __future__ import annotations

from typing import Any

import pytest
from proxyrig import POLICY, HttpUpstream, Rig, connect, get, make_rig, post, run

from aegis.testing.pipelines import FAILURES

CONDITIONS = ["ok", *sorted(FAILURES)]


async def _rig(failure: str | None, policy: str = POLICY) -> tuple[Rig, HttpUpstream]:
    upstream = await HttpUpstream().start()
    rig = await make_rig(failure=failure, policy=policy)
    rig.dialer.route("api.stripe.com", None, upstream.port)
    return rig, upstream


def _could_not_decide(rig: Rig) -> list[dict[str, Any]]:
    return rig.events("decision.could_not_decide")


@pytest.mark.parametrize("condition", CONDITIONS)
def test_read_tool_fails_open(condition: str) -> None:
    failure = None if condition == "ok" else condition

    async def scenario() -> None:
        rig, upstream = await _rig(failure)
        resp = await rig.once(get("http://api.stripe.com/v1/balance"))
        assert resp.status == 200
        assert len(upstream.seen) == 1
        errors = rig.metric("aegis_pipeline_errors_total", door="proxy", error=_error(condition))
        opened = rig.metric("aegis_fail_open_total", door="proxy", error=_error(condition))
        if failure is None:
            assert resp.header("x-aegis-code") == "decision.allowed"
            assert _could_not_decide(rig) == []
            assert (
                rig.metric("aegis_decisions_total", outcome="allow", tool="http.get", door="proxy")
                == 1
            )
        else:
            assert resp.header("x-aegis-code") == "decision.fail_open"
            assert (errors, opened) == (1, 1)
            (line,) = _could_not_decide(rig)
            assert line["level"] == "warning"
            assert (line["error"], line["fail_mode"], line["door"], line["tool"]) == (
                _error(condition),
                "open",
                "proxy",
                "http.get",
            )
            assert line["decision_id"] == resp.header("x-aegis-decision-id")
            assert (line["tenant"], line["agent_id"]) == ("acme", "agent-1")
        await rig.stop()

    run(scenario())


@pytest.mark.parametrize("condition", CONDITIONS)
def test_write_tool_fails_closed(condition: str) -> None:
    failure = None if condition == "ok" else condition

    async def scenario() -> None:
        rig, upstream = await _rig(failure)
        resp = await rig.once(post("http://api.stripe.com/v1/charges", b'{"amount": 5}'))
        if failure is None:
            assert resp.status == 200 and len(upstream.seen) == 1
            assert _could_not_decide(rig) == []
        else:
            assert resp.status == 403
            assert resp.header("x-aegis-code") == "decision.fail_closed"
            error = resp.json()["error"]
            assert (error["code"], error["outcome"]) == ("decision.fail_closed", "deny")
            assert upstream.seen == [] and rig.dialer.dialled == []
            assert (
                rig.metric("aegis_pipeline_errors_total", door="proxy", error=_error(condition))
                == 1
            )
            assert rig.metric("aegis_fail_open_total", door="proxy", error=_error(condition)) == 0
            (line,) = _could_not_decide(rig)
            assert (line["error"], line["fail_mode"], line["tool"]) == (
                _error(condition),
                "closed",
                "http.request",
            )
        await rig.stop()

    run(scenario())


@pytest.mark.parametrize("condition", sorted(FAILURES))
def test_reads_fail_closed_when_the_policy_says_so(condition: str) -> None:
    closed_policy = POLICY.replace("defaults: {fail_mode: {read: open}}", "defaults: {}")
    assert closed_policy != POLICY

    async def scenario() -> None:
        rig, upstream = await _rig(condition, closed_policy)
        resp = await rig.once(get("http://api.stripe.com/v1/balance"))
        assert (resp.status, resp.header("x-aegis-code")) == (403, "decision.fail_closed")
        assert upstream.seen == []
        assert rig.metric("aegis_fail_open_total", door="proxy", error=_error(condition)) == 0
        await rig.stop()

    run(scenario())


@pytest.mark.parametrize("condition", sorted(FAILURES))
def test_a_tunnel_fails_closed(condition: str) -> None:
    async def scenario() -> None:
        rig, _upstream = await _rig(condition)
        client = await rig.client()
        resp = await client.request(connect("api.stripe.com:443"))
        assert (resp.status, resp.header("x-aegis-code")) == (403, "decision.fail_closed")
        assert await client.closed()
        assert rig.dialer.dialled == []
        (line,) = _could_not_decide(rig)
        assert line["fail_mode"] == "closed"
        await rig.stop()

    run(scenario())


def _error(condition: str) -> str:
    return "" if condition == "ok" else str(FAILURES[condition][1])
