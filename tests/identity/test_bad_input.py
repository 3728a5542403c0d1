"""Bad input (issue 5): every malformed or hostile token is refused with a stable code
and reason, and refusing it changes nothing (no cache entry, no spawn, no state)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from joserfc.jws import JWSRegistry

from aegis.core.call import ToolCall
from aegis.errors import ErrorCode
from aegis.identity.keys import SigningKey, SigningKeys
from aegis.identity.killswitch import KillSwitch, MemoryRevocationStore
from aegis.identity.stage import TokenIdentity
from aegis.identity.token_errors import TokenError
from aegis.identity.token_errors import TokenErrorReason as R
from aegis.identity.tokens import AgentClaims, TokenMinter
from aegis.identity.verifier import TokenVerifier
from aegis.pipeline.stages import Refusal, RequestContext

ISS, AUD = "https://aegis.example/identity", "aegis-gateway"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = int(T0.timestamp())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_raw(key: SigningKey, payload: bytes) -> str:
    """Sign these exact payload bytes (duplicate names survive) with our own key."""
    header = json.dumps({"alg": key.alg, "kid": key.kid, "typ": "JWT"}).encode()
    signing_input = f"{b64(header)}.{b64(payload)}"
    model = JWSRegistry.algorithms[key.alg]
    return f"{signing_input}.{b64(model.sign(signing_input.encode(), key.key))}"


def claims_json(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISS, "aud": AUD, "sub": "agent-1", "tenant": "acme", "scope": "crm:read",
        "jti": "j-1", "iat": NOW, "nbf": NOW, "exp": NOW + 300,
    }  # fmt: skip
    claims.update(overrides)
    return claims


class World:
    def __init__(self, *, max_depth: int = 5) -> None:
        self.keys = SigningKeys.generate(clock=lambda: T0)
        self.minter = TokenMinter(
            self.keys, issuer=ISS, audience=AUD, clock=lambda: T0, max_depth=max_depth
        )
        self.verifier = TokenVerifier(
            self.keys.verification_keys(), issuer=ISS, audience=AUD, clock=lambda: T0
        )
        self.kill_switch = KillSwitch(MemoryRevocationStore())
        self.stage = TokenIdentity(self.verifier, kill_switch=self.kill_switch)

    @property
    def key(self) -> SigningKey:
        return self.keys.active

    def signed(self, payload: dict[str, Any] | bytes) -> str:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return sign_raw(self.key, raw)

    def refused(self, token: Any, reason: R, code: ErrorCode = ErrorCode.IDENTITY_INVALID) -> None:
        """Refused with ``code``/``reason``, twice: nothing was cached the first time."""
        stats = self.verifier.stats
        assert stats.cache is not None
        for _ in range(2):
            with pytest.raises(TokenError) as info:
                self.verifier.verify(token)
            assert info.value.code is code
            assert info.value.reason is reason, info.value
            # The message never echoes the token (a bearer credential).
            if isinstance(token, str) and len(token) > 16:
                assert token not in info.value.message
        assert stats.cache.hits == 0

    def auth(self, token: str | None, agent: str = "agent-1") -> ToolCall | Refusal:
        call = ToolCall(tenant="acme", agent_id=agent, tool="crm.read")
        ctx = RequestContext(door="api", credentials=token)
        return asyncio.run(self.stage.authenticate(call, ctx))


@pytest.fixture
def world() -> World:
    return World()


def test_the_crafted_baseline_is_accepted(world: World) -> None:
    # The hand-signing helper is sound, so every refusal below is the input's doing.
    assert world.verifier.verify(world.signed(claims_json())).sub == "agent-1"


# -- garbage and size ----------------------------------------------------------------------

GARBAGE = [
    "x",
    "x.y.z",
    "....",
    "a.b",
    "a.b.c.d",
    "a.b.c.d.e",
    "!!!.###.$$$",
    "eyJ.eyJ.sig",
    "\x00\x01\x02",
    "Bearer x.y.z",
    " " * 64,
    "é.é.é",
    "\ud800.a.b",
    b64(b"{}") + "." + b64(b"{}") + ".",
    b64(b"[]") + "." + b64(b"{}") + "." + b64(b"sig"),
    b64(b"null") + "." + b64(b"{}") + "." + b64(b"sig"),
    b64(b"{not json") + "." + b64(b"{}") + "." + b64(b"sig"),
]


@pytest.mark.parametrize("token", GARBAGE)
def test_garbage_is_malformed_or_refused_header(world: World, token: str) -> None:
    with pytest.raises(TokenError) as info:
        world.verifier.verify(token)
    assert info.value.code is ErrorCode.IDENTITY_INVALID
    assert info.value.reason in {R.MALFORMED, R.ALG_NOT_ALLOWED, R.UNKNOWN_KID}
    assert world.verifier.stats.signature_checks == 0


@pytest.mark.parametrize("token", [1, 1.5, b"x.y.z", ["a", "b", "c"], {"t": 1}, object()])
def test_non_string_tokens_are_malformed(world: World, token: Any) -> None:
    world.refused(token, R.MALFORMED)
    assert world.verifier.stats.signature_checks == 0


def test_a_one_megabyte_token_is_too_large_before_parsing(world: World) -> None:
    good = world.signed(claims_json())
    for token in ("A" * 1_000_000, good + "A" * (1_000_000 - len(good)), "." * 1_000_000):
        world.refused(token, R.TOO_LARGE)
    # One megabyte of claims, validly signed, is refused just the same.
    world.refused(world.signed(claims_json(pad="x" * 1_000_000)), R.TOO_LARGE)
    assert world.verifier.stats.signature_checks == 0


def test_absent_tokens_are_missing(world: World) -> None:
    world.refused(None, R.MISSING, ErrorCode.IDENTITY_MISSING)
    world.refused("", R.MISSING, ErrorCode.IDENTITY_MISSING)


# -- claims: duplicates, types, ranges -----------------------------------------------------


@pytest.mark.parametrize("name", ["exp", "sub", "tenant", "aud", "iss"])
def test_duplicate_claims_are_malformed(world: World, name: str) -> None:
    body = json.dumps(claims_json())[:-1]  # drop the closing brace
    payload = f'{body}, "{name}": {json.dumps(claims_json()[name])}}}'.encode()
    world.refused(world.signed(payload), R.MALFORMED)
    # ... with a different value too (the confusion case: first-wins vs last-wins).
    other = {"exp": NOW + 10**6, "sub": "root", "tenant": "other", "aud": "x", "iss": "y"}
    payload = f'{body}, "{name}": {json.dumps(other[name])}}}'.encode()
    world.refused(world.signed(payload), R.MALFORMED)
    assert world.verifier.stats.signature_checks == 4  # checked, never cached


def test_duplicate_claims_inside_act_are_malformed(world: World) -> None:
    payload = json.dumps(claims_json())[:-1] + ', "act": {"sub": "a", "sub": "b"}}'
    world.refused(world.signed(payload.encode()), R.MALFORMED)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("exp", "soon"),
        ("exp", str(NOW + 300)),
        ("exp", None),
        ("exp", True),
        ("exp", [NOW + 300]),
        ("exp", {"t": NOW + 300}),
        ("exp", 1e300),
        ("exp", -1e300),
        ("nbf", True),
        ("nbf", False),
        ("nbf", "now"),
        ("nbf", 1e20),
        ("iat", "yesterday"),
        ("iat", None),
    ],
)
def test_non_numeric_or_out_of_range_dates_are_invalid_claims(
    world: World, name: str, value: Any
) -> None:
    world.refused(world.signed(claims_json(**{name: value})), R.INVALID_CLAIMS)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_dates_are_refused(world: World, literal: str) -> None:
    payload = json.dumps(claims_json(exp=0)).replace('"exp": 0', f'"exp": {literal}')
    assert literal in payload
    with pytest.raises(TokenError) as info:
        world.verifier.verify(world.signed(payload.encode()))
    assert info.value.code is ErrorCode.IDENTITY_INVALID
    assert info.value.reason in {R.MALFORMED, R.INVALID_CLAIMS}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": NOW - 3600}, R.EXPIRED),
        ({"exp": 0}, R.EXPIRED),
        ({"nbf": NOW + 3600}, R.NOT_YET_VALID),
        ({"sub": ""}, R.INVALID_CLAIMS),
        ({"sub": 42}, R.INVALID_CLAIMS),
        ({"tenant": None}, R.INVALID_CLAIMS),
        ({"scope": ["crm:read"]}, R.INVALID_CLAIMS),
        ({"scope": 'bad"scope'}, R.INVALID_CLAIMS),
        ({"aud": [AUD, 7]}, R.INVALID_CLAIMS),
        ({"act": "parent"}, R.INVALID_CLAIMS),
        ({"act": {"act": {"sub": "x"}}}, R.INVALID_CLAIMS),
        ({"iss": "https://evil.example"}, R.WRONG_ISSUER),
        ({"aud": "someone-else"}, R.WRONG_AUDIENCE),
    ],
)
def test_bad_claim_values(world: World, overrides: dict[str, Any], reason: R) -> None:
    world.refused(world.signed(claims_json(**overrides)), reason)


def test_non_object_payloads_are_malformed(world: World) -> None:
    for payload in (b"[]", b'"claims"', b"42", b"null", b"\xff\xfe", b"{", b""):
        world.refused(world.signed(payload), R.MALFORMED)


def test_an_over_deep_act_claim_is_refused(world: World) -> None:
    act: dict[str, Any] = {"sub": "root"}
    for i in range(200):  # deep, yet under the 8 KiB size limit
        act = {"sub": f"a{i}", "act": act}
    world.refused(world.signed(claims_json(act=act)), R.INVALID_CLAIMS)
    # One past the limit is enough.
    act = {"sub": "root"}
    for i in range(5):
        act = {"sub": f"a{i}", "act": act}
    world.refused(world.signed(claims_json(act=act)), R.INVALID_CLAIMS)


# -- delegation: loops, depth, unknown / unauthorised agents ---------------------------------


class Spawns:
    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str, str]] = []

    def __call__(self, tenant: str, parent: str, child: str) -> bool:
        self.asked.append((tenant, parent, child))
        return self.answer


def chain_claims(world: World, *chain: str) -> AgentClaims:
    """Verified claims of ``chain[-1]``, delegated from ``chain[0]`` on down."""
    token, _ = world.minter.mint(chain[0], "acme", ["crm:read"])
    claims = world.verifier.verify(token)
    for child in chain[1:]:
        token, _ = world.minter.exchange(claims, child, ["crm:read"], may_spawn=Spawns())
        claims = world.verifier.verify(token)
    return claims


def exchange_refused(
    world: World, parent: AgentClaims, child: str, reason: R, spawns: Spawns | None = None
) -> Spawns:
    spawns = spawns or Spawns()
    with pytest.raises(TokenError) as info:
        world.minter.exchange(parent, child, ["crm:read"], may_spawn=spawns)
    assert info.value.code is ErrorCode.IDENTITY_INVALID
    assert info.value.reason is reason
    return spawns


@pytest.mark.parametrize("child", ["root", "mid", "leaf"])
def test_delegation_loops_are_refused_without_asking_the_registry(world: World, child: str) -> None:
    leaf = chain_claims(world, "root", "mid", "leaf")
    assert leaf.parent_chain == ("root", "mid")
    spawns = exchange_refused(world, leaf, child, R.SPAWN_REFUSED)
    assert spawns.asked == []


def test_over_deep_chains_are_refused_without_asking_the_registry() -> None:
    world = World(max_depth=2)
    deepest = chain_claims(world, "a0", "a1", "a2")
    assert deepest.depth == 2
    spawns = exchange_refused(world, deepest, "a3", R.CHAIN_TOO_DEEP)
    assert spawns.asked == []
    # The default limit (5) holds too.
    world = World()
    deepest = chain_claims(world, *(f"a{i}" for i in range(6)))
    assert deepest.depth == 5
    assert exchange_refused(world, deepest, "a6", R.CHAIN_TOO_DEEP).asked == []


def test_unknown_agents_may_not_be_spawned(world: World) -> None:
    parent = chain_claims(world, "root")
    spawns = exchange_refused(world, parent, "nobody-knows-me", R.SPAWN_REFUSED, Spawns(False))
    assert spawns.asked == [("acme", "root", "nobody-knows-me")]


def test_a_child_cannot_gain_scopes(world: World) -> None:
    parent = chain_claims(world, "root")
    with pytest.raises(TokenError) as info:
        world.minter.exchange(parent, "child", ["crm:read", "admin"], may_spawn=Spawns())
    assert info.value.reason is R.SCOPE_NOT_HELD


def test_a_validly_signed_token_whose_act_loops_is_refused(world: World) -> None:
    # A chain naming the token's own subject (or any agent twice) is a loop: the
    # verifier refuses it even with a good signature, whatever chain the call states.
    token = world.signed(claims_json(act={"sub": "agent-1"}))
    call = ToolCall(tenant="acme", agent_id="agent-1", tool="crm.read", parent_chain=("root",))
    result = asyncio.run(world.stage.authenticate(call, RequestContext("api", credentials=token)))
    assert isinstance(result, Refusal)
    assert result.code is ErrorCode.IDENTITY_INVALID
    assert "twice" in result.reason


def test_a_validly_signed_token_that_lives_for_years_is_refused(world: World) -> None:
    token = world.signed(claims_json(exp=10**12))
    result = world.auth(token)
    assert isinstance(result, Refusal)
    assert result.code is ErrorCode.IDENTITY_INVALID
    assert "lifetime" in result.reason


# -- through the pipeline's identity stage ---------------------------------------------------


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("garbage", "malformed"),
        ("x.y.z", "malformed"),
        ("A" * 1_000_000, "too_large"),
    ],
)
def test_the_stage_refuses_bad_tokens_with_identity_invalid(
    world: World, token: str, reason: str
) -> None:
    result = world.auth(token)
    assert isinstance(result, Refusal)
    assert result.code is ErrorCode.IDENTITY_INVALID
    assert f"({reason})" in result.reason
    assert token not in result.reason or len(token) < 8
    assert world.verifier.stats.signature_checks == 0


def test_the_stage_refuses_crafted_tokens_and_caches_none(world: World) -> None:
    body = json.dumps(claims_json())[:-1] + ', "exp": 1}'
    crafted = [
        world.signed(body.encode()),
        world.signed(claims_json(exp="soon")),
        world.signed(claims_json(nbf=True)),
        world.signed(claims_json(exp=1e300)),
    ]
    for token in crafted * 2:
        result = world.auth(token)
        assert isinstance(result, Refusal)
        assert result.code is ErrorCode.IDENTITY_INVALID
    stats = world.verifier.stats
    assert stats.signature_checks == 2 * len(crafted)  # nothing was cached
    assert stats.cache is not None
    assert stats.cache.hits == 0


def test_the_stage_refuses_a_token_of_an_unknown_agent(world: World) -> None:
    token, _ = world.minter.mint("agent-1", "acme", ["crm:read"])
    for agent in ("stranger", "agent-1 ", "AGENT-1", ""):
        result = world.auth(token, agent=agent)
        assert isinstance(result, Refusal)
        assert result.code is ErrorCode.IDENTITY_MISMATCH
    bound = world.auth(token)  # the rightful agent is still let through
    assert isinstance(bound, ToolCall)
    assert bound.agent_id == "agent-1"


def test_the_stage_refuses_absent_tokens_as_missing(world: World) -> None:
    for token in (None, ""):
        result = world.auth(token)
        assert isinstance(result, Refusal)
        assert result.code is ErrorCode.IDENTITY_MISSING
