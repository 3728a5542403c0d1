"""TokenIdentity: the identity stage that binds every call to a verified agent token."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aegis.core.call import ToolCall
from aegis.errors import ErrorCode
from aegis.identity.keys import SigningKeys
from aegis.identity.killswitch import KillSwitch, MemoryRevocationStore
from aegis.identity.stage import TokenIdentity
from aegis.identity.tokens import TokenMinter
from aegis.identity.verifier import TokenVerifier
from aegis.pipeline import Pipeline
from aegis.pipeline.stages import IdentityStage, Refusal, RequestContext
from aegis.policy import load_policy

ISS, AUD = "https://aegis.example/identity", "aegis-gateway"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class World:
    def __init__(self, *, require_chain_match: bool = True) -> None:
        self.clock = FakeClock()
        self.keys = SigningKeys.generate(clock=self.clock)
        self.minter = TokenMinter(self.keys, issuer=ISS, audience=AUD, clock=self.clock)
        self.verifier = TokenVerifier(
            self.keys.verification_keys(), issuer=ISS, audience=AUD, clock=self.clock
        )
        self.kill_switch = KillSwitch(MemoryRevocationStore())
        self.stage = TokenIdentity(
            self.verifier, kill_switch=self.kill_switch, require_chain_match=require_chain_match
        )

    def mint(self, agent: str = "agent-1", tenant: str = "acme", **kw: Any) -> str:
        return self.minter.mint(agent, tenant, ["crm:read"], **kw)[0]

    def auth(self, call: ToolCall, token: str | None) -> ToolCall | Refusal:
        ctx = RequestContext(door="api", credentials=token)
        return asyncio.run(self.stage.authenticate(call, ctx))


def call(agent: str = "agent-1", tenant: str = "acme", **kw: Any) -> ToolCall:
    return ToolCall(tenant=tenant, agent_id=agent, tool="crm.read", **kw)


def code_of(result: ToolCall | Refusal) -> ErrorCode:
    assert isinstance(result, Refusal), result
    return result.code


@pytest.fixture
def world() -> World:
    return World()


def test_it_is_an_identity_stage(world: World) -> None:
    stage: IdentityStage = world.stage
    assert stage is world.stage


def test_a_valid_token_binds_the_call_to_its_claims(world: World) -> None:
    token = world.mint(session_id="s-1")
    bound = world.auth(call(session_id="stated-by-caller"), token)
    assert isinstance(bound, ToolCall)
    assert (bound.tenant, bound.agent_id, bound.session_id) == ("acme", "agent-1", "s-1")
    assert bound.parent_chain == ()
    assert bound.tool == "crm.read"


def test_a_token_without_sid_leaves_no_session(world: World) -> None:
    bound = world.auth(call(session_id="chosen"), world.mint())
    assert isinstance(bound, ToolCall)
    assert bound.session_id == ""


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_is_identity_missing(world: World, token: str | None) -> None:
    assert code_of(world.auth(call(), token)) is ErrorCode.IDENTITY_MISSING


def test_garbage_is_identity_invalid_with_the_reason(world: World) -> None:
    result = world.auth(call(), "not-a-jwt")
    assert code_of(result) is ErrorCode.IDENTITY_INVALID
    assert isinstance(result, Refusal)
    assert "malformed" in result.reason
    assert "not-a-jwt" not in result.reason  # the credential is never echoed


def test_an_expired_token_has_its_own_code(world: World) -> None:
    token = world.mint()
    world.clock.now = T0 + timedelta(hours=1)
    result = world.auth(call(), token)
    assert code_of(result) is ErrorCode.IDENTITY_EXPIRED
    assert isinstance(result, Refusal)
    assert "expired" in result.reason


def test_a_token_for_another_audience_is_invalid(world: World) -> None:
    other = TokenMinter(world.keys, issuer=ISS, audience="someone-else", clock=world.clock)
    token, _ = other.mint("agent-1", "acme", ["crm:read"])
    result = world.auth(call(), token)
    assert code_of(result) is ErrorCode.IDENTITY_INVALID
    assert isinstance(result, Refusal)
    assert "wrong_audience" in result.reason


def test_a_token_signed_by_another_key_is_invalid(world: World) -> None:
    stranger = TokenMinter(SigningKeys.generate(), issuer=ISS, audience=AUD, clock=world.clock)
    token, _ = stranger.mint("agent-1", "acme", ["crm:read"])
    assert code_of(world.auth(call(), token)) is ErrorCode.IDENTITY_INVALID


def test_another_tenants_token_is_a_mismatch(world: World) -> None:
    token = world.mint(tenant="globex")
    result = world.auth(call(tenant="acme"), token)
    assert code_of(result) is ErrorCode.IDENTITY_MISMATCH
    assert isinstance(result, Refusal)
    assert "tenant" in result.reason


def test_another_agents_token_is_a_mismatch(world: World) -> None:
    token = world.mint(agent="agent-2")
    assert code_of(world.auth(call(agent="agent-1"), token)) is ErrorCode.IDENTITY_MISMATCH


def test_a_stated_chain_must_be_the_tokens_chain(world: World) -> None:
    token = world.mint(agent="child", parent_chain=["root", "parent"])
    ok = world.auth(call(agent="child", parent_chain=("root", "parent")), token)
    assert isinstance(ok, ToolCall)
    # A call that states no chain gets the token's.
    taken = world.auth(call(agent="child"), token)
    assert isinstance(taken, ToolCall)
    assert taken.parent_chain == ("root", "parent")
    forged = world.auth(call(agent="child", parent_chain=("trusted-root",)), token)
    assert code_of(forged) is ErrorCode.DECISION_CHAIN_MISMATCH


def test_a_chain_mismatch_can_be_tolerated_but_the_token_chain_wins() -> None:
    world = World(require_chain_match=False)
    token = world.mint(agent="child", parent_chain=["root"])
    bound = world.auth(call(agent="child", parent_chain=("trusted-root",)), token)
    assert isinstance(bound, ToolCall)
    assert bound.parent_chain == ("root",)


def test_a_revoked_token_is_refused_on_the_next_call_even_from_the_cache(world: World) -> None:
    token, claims = world.minter.mint("agent-1", "acme", ["crm:read"])
    assert isinstance(world.auth(call(), token), ToolCall)
    checks = world.verifier.stats.signature_checks
    asyncio.run(
        world.kill_switch.revoke(
            "jti", tenant="acme", target=claims.jti, actor="sec", reason="leaked"
        )
    )
    result = world.auth(call(), token)
    assert code_of(result) is ErrorCode.DECISION_REVOKED
    assert world.verifier.stats.signature_checks == checks  # a cache hit, still refused
    assert isinstance(world.auth(call(), world.mint()), ToolCall)  # a fresh token is fine


def test_a_revoked_agent_is_refused_with_any_token(world: World) -> None:
    token = world.mint()
    assert isinstance(world.auth(call(), token), ToolCall)
    asyncio.run(
        world.kill_switch.revoke(
            "agent", tenant="acme", target="agent-1", actor="sec", reason="rogue"
        )
    )
    assert code_of(world.auth(call(), token)) is ErrorCode.DECISION_REVOKED
    assert code_of(world.auth(call(), world.mint())) is ErrorCode.DECISION_REVOKED
    # A child whose token chain runs through the revoked agent is refused too.
    child = world.mint(agent="child", parent_chain=["agent-1"])
    assert code_of(world.auth(call(agent="child"), child)) is ErrorCode.DECISION_REVOKED


def test_a_revoked_session_is_refused(world: World) -> None:
    token = world.mint(session_id="s-9")
    assert isinstance(world.auth(call(), token), ToolCall)
    asyncio.run(
        world.kill_switch.revoke("session", tenant="acme", target="s-9", actor="sec", reason="x")
    )
    assert code_of(world.auth(call(), token)) is ErrorCode.DECISION_REVOKED


def test_without_a_kill_switch_only_the_token_is_checked(world: World) -> None:
    stage = TokenIdentity(world.verifier)
    ctx = RequestContext(door="api", credentials=world.mint())
    assert isinstance(asyncio.run(stage.authenticate(call(), ctx)), ToolCall)


def test_the_stage_never_suspends(world: World) -> None:
    """The fast path: authenticate completes on its first step (no awaits that yield)."""
    coro = world.stage.authenticate(call(), RequestContext(door="api", credentials=world.mint()))
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert isinstance(done.value.value, ToolCall)


def test_in_the_pipeline_a_refusal_is_a_deny_with_the_identity_code(world: World) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    pipeline = Pipeline.with_defaults(load_policy([examples]), clock=world.clock)
    pipeline.identity = world.stage
    missing = asyncio.run(pipeline.decide(call(), RequestContext(door="api")))
    assert missing.decision.code is ErrorCode.IDENTITY_MISSING
    assert not missing.decision.outcome.permits
    ok = asyncio.run(pipeline.decide(call(), RequestContext(door="api", credentials=world.mint())))
    assert ok.decision.code is not ErrorCode.IDENTITY_MISSING
    assert ok.call.agent_id == "agent-1"
