"""Minting agent tokens and delegating by token exchange (RFC 7519, RFC 8693)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from aegis.errors import ErrorCode
from aegis.identity.keys import SigningKeys
from aegis.identity.token_errors import TokenError, TokenErrorReason
from aegis.identity.tokens import AgentClaims, TokenMinter, require_agent, require_tenant
from aegis.identity.verifier import TokenVerifier

ISS, AUD = "https://aegis.example/identity", "aegis-gateway"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _part(token: str, index: int) -> dict:
    seg = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def allow_all(tenant: str, parent: str, child: str) -> bool:
    return True


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def ring(clock):
    return SigningKeys.generate(clock=clock)


@pytest.fixture
def minter(ring, clock):
    return TokenMinter(ring, issuer=ISS, audience=AUD, clock=clock)


@pytest.fixture
def verifier(ring, clock):
    return TokenVerifier(ring.verification_keys(), issuer=ISS, audience=AUD, clock=clock)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_mint_verify_round_trip(alg, clock):
    ring = SigningKeys.generate(alg, clock=clock)
    minter = TokenMinter(ring, issuer=ISS, audience=AUD, clock=clock)
    token, claims = minter.mint("agent-1", "acme", ["crm:read", "tickets:write"], session_id="s-1")
    header, payload = _part(token, 0), _part(token, 1)
    assert header == {"alg": alg, "kid": ring.active.kid, "typ": "JWT"}
    now = int(clock.now.timestamp())
    assert payload == {
        "iss": ISS,
        "aud": AUD,
        "sub": "agent-1",
        "tenant": "acme",
        "scope": "crm:read tickets:write",
        "sid": "s-1",
        "jti": claims.jti,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    verifier = TokenVerifier(ring.verification_keys(), issuer=ISS, audience=AUD, clock=clock)
    assert verifier.verify(token) == claims
    assert claims.agent_id == "agent-1" and claims.parent_agent_id is None and claims.depth == 0


def test_lifetime_is_configurable_and_bounded(ring, clock):
    minter = TokenMinter(ring, issuer=ISS, audience=AUD, lifetime=timedelta(minutes=2), clock=clock)
    _, claims = minter.mint("a", "t", [])
    assert claims.exp - claims.iat == 120
    for bad in (timedelta(0), timedelta(hours=2), timedelta(seconds=-5)):
        with pytest.raises(ValueError, match="lifetime"):
            TokenMinter(ring, issuer=ISS, audience=AUD, lifetime=bad)


def test_jti_is_unique(minter):
    assert len({minter.mint("a", "t", [])[1].jti for _ in range(200)}) == 200


def test_scopes_are_validated_and_deduplicated(minter):
    _, claims = minter.mint("a", "t", ["x", "y", "x"])
    assert claims.scopes == ("x", "y")
    for bad in ("has space", "", 'quo"te', "back\\slash"):
        with pytest.raises(ValueError, match="scope"):
            minter.mint("a", "t", [bad])


def test_empty_ids_refused(minter):
    with pytest.raises(ValueError, match="non-empty"):
        minter.mint("", "t", [])
    with pytest.raises(ValueError, match="non-empty"):
        minter.mint("a", "", [])
    with pytest.raises(ValueError, match="empty agent id"):
        minter.mint("a", "t", [], parent_chain=["root", ""])


def test_act_claim_shape_nearest_first(minter, verifier):
    token, claims = minter.mint("child", "t", [], parent_chain=["root", "mid", "parent"])
    assert _part(token, 1)["act"] == {
        "sub": "parent",
        "act": {"sub": "mid", "act": {"sub": "root"}},
    }
    got = verifier.verify(token)
    assert got.parent_chain == ("root", "mid", "parent")
    assert got.parent_agent_id == "parent" and got.depth == 3
    assert got.act == claims.act


def test_mint_signs_with_the_new_key_after_rotation(ring, minter, clock):
    old_token, _ = minter.mint("a", "t", [])
    ring.rotate()
    new_token, _ = minter.mint("a", "t", [])
    assert _part(new_token, 0)["kid"] == ring.active.kid != _part(old_token, 0)["kid"]
    verifier = TokenVerifier(ring.verification_keys(), issuer=ISS, audience=AUD, clock=clock)
    assert verifier.verify(old_token).sub == verifier.verify(new_token).sub == "a"


# -- exchange (delegation) ----------------------------------------------------------------


def test_exchange_narrows(minter, verifier, clock):
    _, parent = minter.mint("parent", "acme", ["a", "b", "c"], session_id="s-9")
    clock.now += timedelta(minutes=1)
    token, child = minter.exchange(parent, "child", ["a", "c"], may_spawn=allow_all)
    assert child.scopes == ("a", "c")
    assert child.tenant == "acme" and child.sid == "s-9"
    assert child.parent_chain == ("parent",)
    assert child.exp == parent.exp  # never outlives the parent
    assert verifier.verify(token) == child


def test_exchange_refuses_a_scope_the_parent_lacks(minter):
    _, parent = minter.mint("parent", "acme", ["a"])
    with pytest.raises(TokenError) as info:
        minter.exchange(parent, "child", ["a", "admin"], may_spawn=allow_all)
    assert info.value.code is ErrorCode.IDENTITY_INVALID
    assert info.value.reason is TokenErrorReason.SCOPE_NOT_HELD


def test_exchange_asks_the_registry(minter):
    calls = []

    def may_spawn(tenant, parent, child):
        calls.append((tenant, parent, child))
        return child == "allowed"

    _, parent = minter.mint("parent", "acme", ["a"])
    minter.exchange(parent, "allowed", ["a"], may_spawn=may_spawn)
    with pytest.raises(TokenError) as info:
        minter.exchange(parent, "stranger", ["a"], may_spawn=may_spawn)
    assert info.value.reason is TokenErrorReason.SPAWN_REFUSED
    assert calls == [("acme", "parent", "allowed"), ("acme", "parent", "stranger")]


def test_exchange_depth_is_bounded(ring, clock):
    minter = TokenMinter(ring, issuer=ISS, audience=AUD, clock=clock, max_depth=2)
    _, root = minter.mint("root", "t", ["s"])
    _, c1 = minter.exchange(root, "c1", ["s"], may_spawn=allow_all)
    _, c2 = minter.exchange(c1, "c2", ["s"], may_spawn=allow_all)
    assert c2.parent_chain == ("root", "c1")
    with pytest.raises(TokenError) as info:
        minter.exchange(c2, "c3", ["s"], may_spawn=allow_all)
    assert info.value.reason is TokenErrorReason.CHAIN_TOO_DEEP


def test_exchange_default_depth_is_five(minter):
    _, claims = minter.mint("a0", "t", ["s"])
    for i in range(1, 6):
        _, claims = minter.exchange(claims, f"a{i}", ["s"], may_spawn=allow_all)
    assert claims.depth == 5
    with pytest.raises(TokenError):
        minter.exchange(claims, "a6", ["s"], may_spawn=allow_all)


def test_exchange_refuses_cycles_and_expired_parents(minter, clock):
    _, root = minter.mint("root", "t", ["s"])
    _, child = minter.exchange(root, "child", ["s"], may_spawn=allow_all)
    with pytest.raises(TokenError) as info:
        minter.exchange(child, "root", ["s"], may_spawn=allow_all)
    assert info.value.reason is TokenErrorReason.SPAWN_REFUSED
    clock.now += timedelta(minutes=5)
    with pytest.raises(TokenError) as info:
        minter.exchange(root, "late", ["s"], may_spawn=allow_all)
    assert info.value.reason is TokenErrorReason.EXPIRED


# -- tenant / agent binding ---------------------------------------------------------------


def test_require_tenant_and_agent(minter, verifier):
    token, _ = minter.mint("agent-1", "tenant-a", [])
    claims = verifier.verify(token)  # the token itself is valid
    require_tenant(claims, "tenant-a")
    require_agent(claims, "agent-1")
    with pytest.raises(TokenError) as info:
        require_tenant(claims, "tenant-b")
    assert info.value.code is ErrorCode.IDENTITY_MISMATCH
    assert info.value.reason is TokenErrorReason.WRONG_TENANT
    with pytest.raises(TokenError) as info:
        require_agent(claims, "agent-2")
    assert info.value.code is ErrorCode.IDENTITY_MISMATCH
    assert info.value.reason is TokenErrorReason.WRONG_AGENT
    assert info.value.to_dict()["reason"] == "wrong_agent"


def test_claims_payload_round_trip_with_audience_list():
    claims = AgentClaims(
        iss=ISS, aud=(AUD, "other"), sub="a", tenant="t", scopes=("x",), jti="j",
        iat=1, nbf=1, exp=2, parent_chain=("r",),
    )  # fmt: skip
    payload = claims.to_payload()
    assert payload["aud"] == [AUD, "other"]
    assert AgentClaims.from_payload(payload) == claims
