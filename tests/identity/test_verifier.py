"""TokenVerifier: RFC 8725 attacks, claim checks, the verified-token cache, fuzzing."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jws import JWSRegistry

from aegis.errors import ErrorCode
from aegis.identity.keys import SigningKey, SigningKeys
from aegis.identity.token_errors import TokenError
from aegis.identity.token_errors import TokenErrorReason as R
from aegis.identity.tokens import TokenMinter
from aegis.identity.verifier import TokenVerifier

ISS, AUD = "https://aegis.example/identity", "aegis-gateway"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = int(T0.timestamp())


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def j64(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def sign(header: dict[str, Any], payload: Any, key: Any, alg: str | None = None) -> str:
    """Sign any header/payload with any key and alg: the attacker's toolbox."""
    signing_input = f"{j64(header)}.{payload if isinstance(payload, str) else j64(payload)}"
    model = JWSRegistry.algorithms[alg or header["alg"]]
    return f"{signing_input}.{b64(model.sign(signing_input.encode(), key))}"


def good_claims(**overrides: Any) -> dict[str, Any]:
    claims = {
        "iss": ISS, "aud": AUD, "sub": "agent-1", "tenant": "acme", "scope": "crm:read",
        "jti": "j-1", "iat": NOW, "nbf": NOW, "exp": NOW + 300,
    }  # fmt: skip
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not DROP}


DROP = object()
DUPLICATE_ALG = b64(b'{"alg":"EdDSA","alg":"EdDSA"}')


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def ring(clock):
    return SigningKeys.generate(clock=clock)


@pytest.fixture
def key(ring) -> SigningKey:
    return ring.active


@pytest.fixture
def verifier(ring, clock):
    return TokenVerifier(ring.verification_keys(), issuer=ISS, audience=AUD, clock=clock)


def header_for(key: SigningKey, **extra: Any) -> dict[str, Any]:
    return {"alg": key.alg, "kid": key.kid, "typ": "JWT", **extra}


def refused(verifier: TokenVerifier, token: Any, reason: R, code=ErrorCode.IDENTITY_INVALID):
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    assert info.value.reason is reason, info.value
    assert info.value.code is code
    return info.value


def test_forged_good_token_verifies(verifier, key):
    # The helper itself is sound: a correct token through it verifies.
    assert verifier.verify(sign(header_for(key), good_claims(), key.key)).sub == "agent-1"


# -- algorithm: none, HS*, confusion (RFC 8725 §2.1, §3.1) -------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", " none", "none "])
@pytest.mark.parametrize("signature", ["", "AAAA"])
def test_alg_none_in_every_spelling(verifier, key, alg, signature):
    token = f"{j64({'alg': alg, 'kid': key.kid})}.{j64(good_claims())}.{signature}"
    reason = R.MALFORMED if signature == "" else R.ALG_NOT_ALLOWED
    refused(verifier, token, reason)


def test_alg_confusion_hs256_with_the_public_key(verifier, ring, key):
    # The classic attack: HMAC keyed with the verifier's public key bytes.
    public_pem = key.key.as_pem(private=False)
    jwk_json = json.dumps(ring.jwks()["keys"][0]).encode()
    raw_x = base64.urlsafe_b64decode(key.public_jwk()["x"] + "==")
    for secret in (public_pem, jwk_json, raw_x):
        signing_input = f"{j64(header_for(key, alg='HS256'))}.{j64(good_claims())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        refused(verifier, f"{signing_input}.{b64(mac)}", R.ALG_NOT_ALLOWED)


def test_allowlist_is_enforced_even_for_a_known_key(ring, clock):
    es = SigningKeys.generate("ES256", clock=clock)
    minter = TokenMinter(es, issuer=ISS, audience=AUD, clock=clock)
    token, _ = minter.mint("a", "acme", [])
    verifier = TokenVerifier(
        es.verification_keys(), issuer=ISS, audience=AUD, algorithms=("EdDSA",), clock=clock
    )
    refused(verifier, token, R.ALG_NOT_ALLOWED)


def test_header_alg_must_match_the_keys_alg(clock):
    # An ES256 key under its kid, but the header claims EdDSA signed by an Ed25519
    # key: the kid's key is bound to ES256 (RFC 8725 §3.1).
    ring = SigningKeys.generate("ES256", clock=clock)
    ed = SigningKey.generate("EdDSA")
    verifier = TokenVerifier(ring.verification_keys(), issuer=ISS, audience=AUD, clock=clock)
    token = sign({"alg": "EdDSA", "kid": ring.active.kid}, good_claims(), ed.key)
    refused(verifier, token, R.KEY_MISMATCH)


@pytest.mark.parametrize("algorithms", [("HS256",), ("none",), ("EdDSA", "RS256"), ()])
def test_verifier_refuses_weak_allowlists(ring, algorithms):
    with pytest.raises(ValueError, match="algorithms"):
        TokenVerifier(ring.verification_keys(), issuer=ISS, audience=AUD, algorithms=algorithms)


@pytest.mark.parametrize("leeway", [timedelta(seconds=121), timedelta(seconds=-1)])
def test_leeway_is_bounded(ring, leeway):
    with pytest.raises(ValueError, match="leeway"):
        TokenVerifier(ring.verification_keys(), issuer=ISS, audience=AUD, leeway=leeway)


# -- kid (RFC 8725 §3.10) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "../../etc/passwd",
        "/dev/null",
        "' OR '1'='1",
        "x'; DROP TABLE keys; --",
        "https://attacker.example/key.json",
        "unknown-kid",
        "",
        None,
        7,
        ["a"],
        {"$ne": None},
    ],
)
def test_kid_injection_and_unknown_kids(verifier, key, kid):
    header = {"alg": key.alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    error = refused(verifier, sign(header, good_claims(), key.key), R.UNKNOWN_KID)
    assert "passwd" not in str(error) and "DROP" not in str(error)  # kid is not echoed


def test_kid_of_a_key_signed_by_someone_else(verifier, key):
    attacker = SigningKey.generate()
    refused(verifier, sign(header_for(key), good_claims(), attacker.key), R.BAD_SIGNATURE)


# -- keys from the token itself ------------------------------------------------------------


def test_embedded_jwk_with_the_attackers_key(verifier, key):
    attacker = SigningKey.generate()
    header = header_for(key, jwk=attacker.public_jwk())
    refused(verifier, sign(header, good_claims(), attacker.key), R.HEADER_REFUSED)
    header = {"alg": "EdDSA", "kid": attacker.kid, "jwk": attacker.public_jwk()}
    refused(verifier, sign(header, good_claims(), attacker.key), R.HEADER_REFUSED)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIB"]),
        ("x5t", "AAAA"),
        ("x5t#S256", "AAAA"),
    ],
)
def test_key_locating_headers_are_refused(verifier, key, name, value):
    # Signed with the real key: refused anyway, the header is a red flag.
    refused(
        verifier, sign(header_for(key, **{name: value}), good_claims(), key.key), R.HEADER_REFUSED
    )


@pytest.mark.parametrize("crit", [["exp"], ["kid"], ["b64"], [], "exp"])
def test_crit_is_refused(verifier, key, crit):
    header = header_for(key, crit=crit, exp=1, b64=True)
    refused(verifier, sign(header, good_claims(), key.key), R.CRIT_UNSUPPORTED)


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "AT+JWT"])
def test_accepted_typ(verifier, key, typ):
    assert verifier.verify(sign(header_for(key, typ=typ), good_claims(), key.key)).sub == "agent-1"


def test_typ_absent_is_accepted(verifier, key):
    header = {"alg": key.alg, "kid": key.kid}
    assert verifier.verify(sign(header, good_claims(), key.key)).sub == "agent-1"


@pytest.mark.parametrize("typ", ["JWE", "secevent+jwt", "application/jwt", "", 1])
def test_other_typ_refused(verifier, key, typ):
    refused(verifier, sign(header_for(key, typ=typ), good_claims(), key.key), R.HEADER_REFUSED)


def test_nested_jwt_refused(verifier, key):
    refused(verifier, sign(header_for(key, cty="JWT"), good_claims(), key.key), R.HEADER_REFUSED)


# -- time (RFC 7519 §4.1.4–4.1.6), leeway 30 s -----------------------------------------------


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": NOW - 31}, R.EXPIRED),
        ({"exp": NOW - 30}, R.EXPIRED),  # on exp+leeway exactly: expired
        ({"nbf": NOW + 31}, R.NOT_YET_VALID),
        ({"iat": NOW + 31}, R.NOT_YET_VALID),
        ({"nbf": NOW + 500, "exp": NOW + 400}, R.NOT_YET_VALID),
        ({"nbf": NOW - 10, "exp": NOW - 10}, R.INVALID_CLAIMS),
    ],
)
def test_time_checks(verifier, key, claims, reason):
    refused(verifier, sign(header_for(key), good_claims(**claims), key.key), reason)


@pytest.mark.parametrize(
    "claims",
    [{"exp": NOW - 29, "nbf": NOW - 300, "iat": NOW - 300}, {"nbf": NOW + 30}, {"iat": NOW + 30}],
)
def test_just_within_leeway(verifier, key, claims):
    assert verifier.verify(sign(header_for(key), good_claims(**claims), key.key))


def test_zero_leeway(ring, key, clock):
    verifier = TokenVerifier(
        ring.verification_keys(), issuer=ISS, audience=AUD, leeway=timedelta(0), clock=clock
    )
    refused(verifier, sign(header_for(key), good_claims(exp=NOW), key.key), R.EXPIRED)
    refused(verifier, sign(header_for(key), good_claims(nbf=NOW + 1), key.key), R.NOT_YET_VALID)


# -- issuer, audience, claim types -------------------------------------------------------


@pytest.mark.parametrize("iss", ["https://evil.example", ISS + "/", ISS.upper(), " " + ISS])
def test_wrong_issuer(verifier, key, iss):
    refused(verifier, sign(header_for(key), good_claims(iss=iss), key.key), R.WRONG_ISSUER)


@pytest.mark.parametrize("aud", ["other", [], ["other", "another"], AUD.upper()])
def test_wrong_audience(verifier, key, aud):
    refused(verifier, sign(header_for(key), good_claims(aud=aud), key.key), R.WRONG_AUDIENCE)


def test_audience_list_containing_ours(verifier, key):
    claims = verifier.verify(sign(header_for(key), good_claims(aud=["x", AUD]), key.key))
    assert claims.aud == ("x", AUD)


@pytest.mark.parametrize(
    "name", ["iss", "aud", "sub", "tenant", "scope", "jti", "iat", "nbf", "exp"]
)
def test_missing_claims(verifier, key, name):
    refused(verifier, sign(header_for(key), good_claims(**{name: DROP}), key.key), R.INVALID_CLAIMS)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": ""},
        {"sub": 5},
        {"tenant": ""},
        {"tenant": ["acme"]},
        {"iss": None},
        {"aud": 1},
        {"aud": [AUD, 1]},
        {"scope": ["crm:read"]},
        {"scope": "a  b"},
        {"exp": "1999999999"},
        {"exp": True},
        {"nbf": None},
        {"iat": [NOW]},
        {"exp": 1e300},
        {"jti": 1},
        {"sid": ""},
        {"sid": 3},
        {"act": "parent"},
        {"act": {"sub": ""}},
        {"act": {"act": {"sub": "x"}}},
        {"act": {"sub": "p", "act": []}},
    ],
)
def test_wrong_claim_types(verifier, key, claims):
    refused(verifier, sign(header_for(key), good_claims(**claims), key.key), R.INVALID_CLAIMS)


def test_chain_deeper_than_the_limit(verifier, key):
    act: dict[str, Any] = {"sub": "a0"}
    for i in range(1, 6):
        act = {"sub": f"a{i}", "act": act}
    refused(verifier, sign(header_for(key), good_claims(act=act), key.key), R.INVALID_CLAIMS)


def test_token_of_another_tenant_is_valid_but_mismatched(verifier, key):
    from aegis.identity.tokens import require_tenant

    claims = verifier.verify(sign(header_for(key), good_claims(tenant="globex"), key.key))
    with pytest.raises(TokenError) as info:
        require_tenant(claims, "acme")
    assert info.value.code is ErrorCode.IDENTITY_MISMATCH


@pytest.mark.parametrize(
    "payload",
    [
        b64(b"not json"),
        j64([1, 2]),
        j64("string"),
        b64(b'{"iss":"a","iss":"b"}'),
        b64(b"\xff\xfe"),
        b64(b'{"exp": NaN}'),
        b64(b'{"exp": Infinity}'),
    ],
)
def test_payload_not_a_claims_object(verifier, key, payload):
    refused(verifier, sign(header_for(key), payload, key.key), R.MALFORMED)


# -- structure ---------------------------------------------------------------------------


def test_missing_token(verifier):
    for token in (None, ""):
        refused(verifier, token, R.MISSING, code=ErrorCode.IDENTITY_MISSING)


def test_structural_garbage(verifier, key):
    good = sign(header_for(key), good_claims(), key.key)
    h, p, s = good.split(".")
    cases = [
        "garbage",
        f"{h}.{p}",  # truncated
        f"{h}.{p}.{s}.",  # extra empty segment
        f"{h}.{p}.{s}.{s}",  # extra segment
        f"{h}.{p}.{s[:-4]}",  # truncated signature
        f"{h}.{p}.",  # no signature
        f".{p}.{s}",  # no header
        f"{h}=.{p}.{s}",  # padding
        f"{h}.{p}.{s}=",
        f"{h}.{p.replace('-', '+')}.{s}" if "-" in p else f"{h}.{p}+.{s}",
        f" {good}",
        f"{good}\n",
        f"{h}.{p}.{s}é",
        f"{j64(['alg'])}.{p}.{s}",
        DUPLICATE_ALG + f".{p}.{s}",
    ]
    for token in cases:
        with pytest.raises(TokenError) as info:
            verifier.verify(token)
        assert info.value.code is ErrorCode.IDENTITY_INVALID, token


def test_json_serialization_refused(verifier, key):
    h, p, s = sign(header_for(key), good_claims(), key.key).split(".")
    general = json.dumps({"payload": p, "signatures": [{"protected": h, "signature": s}]})
    flattened = json.dumps({"payload": p, "protected": h, "signature": s})
    refused(verifier, general, R.MALFORMED)
    refused(verifier, flattened, R.MALFORMED)


def test_non_string_token(verifier):
    for token in (b"abc.def.ghi", 123, ["a"]):
        refused(verifier, token, R.MALFORMED)


def test_oversize_token_refused_before_parsing(verifier, key):
    big = sign(header_for(key), good_claims(pad="x" * 9000), key.key)
    assert len(big) > 8192
    refused(verifier, big, R.TOO_LARGE)
    assert verifier.stats.signature_checks == 0


def test_one_byte_changes_fail(verifier, key):
    token = sign(header_for(key), good_claims(), key.key)
    h, p, s = token.split(".")
    for i, part in enumerate((h, p, s)):
        raw = bytearray(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        raw[len(raw) // 2] ^= 0x01
        parts = [h, p, s]
        parts[i] = b64(bytes(raw))
        with pytest.raises(TokenError):
            verifier.verify(".".join(parts))


# -- cache ---------------------------------------------------------------------------------


def test_cache_hit_skips_the_signature(verifier, key):
    token = sign(header_for(key), good_claims(), key.key)
    first = verifier.verify(token)
    for _ in range(100):
        assert verifier.verify(token) is first
    assert verifier.stats.signature_checks == 1
    assert verifier.stats.cache is not None and verifier.stats.cache.hits == 100


def test_cache_hit_still_checks_expiry(verifier, key, clock):
    token = sign(header_for(key), good_claims(), key.key)
    verifier.verify(token)
    clock.now += timedelta(seconds=300 + 29)
    assert verifier.verify(token)
    clock.now += timedelta(seconds=1)
    refused(verifier, token, R.EXPIRED)
    assert verifier.stats.signature_checks == 2  # the expired entry was dropped, re-checked


def test_failures_are_not_cached(verifier, key):
    attacker = SigningKey.generate()
    bad = sign(header_for(key), good_claims(), attacker.key)
    early = sign(header_for(key), good_claims(nbf=NOW + 60), key.key)
    for _ in range(3):
        refused(verifier, bad, R.BAD_SIGNATURE)
        refused(verifier, early, R.NOT_YET_VALID)
    assert verifier.stats.signature_checks == 6


def test_cache_eviction_is_lru(ring, key, clock):
    verifier = TokenVerifier(
        ring.verification_keys(), issuer=ISS, audience=AUD, clock=clock, cache_size=2
    )
    a, b, c = (sign(header_for(key), good_claims(jti=j), key.key) for j in "abc")
    verifier.verify(a)
    verifier.verify(b)
    verifier.verify(a)  # a is now most recent
    verifier.verify(c)  # evicts b
    assert verifier.stats.signature_checks == 3
    verifier.verify(a)
    assert verifier.stats.signature_checks == 3
    verifier.verify(b)
    assert verifier.stats.signature_checks == 4
    assert verifier.stats.cache is not None and verifier.stats.cache.evictions == 2


def test_cache_disabled(ring, key, clock):
    verifier = TokenVerifier(
        ring.verification_keys(), issuer=ISS, audience=AUD, clock=clock, cache_size=0
    )
    token = sign(header_for(key), good_claims(), key.key)
    verifier.verify(token)
    verifier.verify(token)
    assert verifier.stats.signature_checks == 2


def test_rotation_and_key_retirement(ring, clock):
    minter = TokenMinter(ring, issuer=ISS, audience=AUD, clock=clock)
    verifier = TokenVerifier(ring.verification_keys(), issuer=ISS, audience=AUD, clock=clock)
    old, _ = minter.mint("a", "acme", [])
    verifier.verify(old)
    ring.rotate()
    new, _ = minter.mint("a", "acme", [])
    verifier.update_keys(ring.verification_keys())
    assert verifier.verify(old) and verifier.verify(new)  # overlap
    clock.now += timedelta(minutes=4)  # old token still inside its lifetime
    verifier.update_keys(ring.verification_keys())
    assert verifier.verify(old)
    # Retire the old key early (e.g. compromise): update_keys forgets the cache.
    verifier.update_keys(SigningKeys(ring.active, clock=clock).verification_keys())
    refused(verifier, old, R.UNKNOWN_KID)
    assert verifier.verify(new)


# -- fuzz ------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.",
            max_size=300,
        ),
        st.lists(st.text(alphabet="eyJ0ABCabc123-_=+/", max_size=60), max_size=5).map(".".join),
        st.from_regex(
            r"eyJ[A-Za-z0-9_-]{0,80}\.[A-Za-z0-9_-]{0,80}\.[A-Za-z0-9_-]{0,120}", fullmatch=True
        ),
    )
)
def test_fuzz_only_token_errors(token):
    ring = SigningKeys(_FUZZ_KEY)
    verifier = TokenVerifier(ring.verification_keys(), issuer=ISS, audience=AUD)
    try:
        verifier.verify(token)
    except TokenError:
        pass
    else:  # pragma: no cover
        pytest.fail("a random string verified")


@settings(max_examples=200, deadline=None)
@given(
    header=st.dictionaries(
        st.text(max_size=8),
        st.none() | st.integers() | st.text(max_size=8) | st.lists(st.text(max_size=3), max_size=2),
        max_size=5,
    ),
    payload=st.dictionaries(
        st.text(max_size=8),
        st.none() | st.integers() | st.floats() | st.text(max_size=8),
        max_size=8,
    ),
)
def test_fuzz_signed_garbage_only_token_errors(header, payload):
    # Correctly signed with our key, arbitrary header members and claims.
    header = {**header, "alg": _FUZZ_KEY.alg, "kid": _FUZZ_KEY.kid}
    token = sign(header, b64(json.dumps(payload).encode()), _FUZZ_KEY.key)
    verifier = TokenVerifier(SigningKeys(_FUZZ_KEY).verification_keys(), issuer=ISS, audience=AUD)
    with contextlib.suppress(TokenError):
        verifier.verify(token)


_FUZZ_KEY = SigningKey.generate()
