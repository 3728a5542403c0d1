"""Signing keyring, rotation with overlap, JWKS and the verification-key view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from joserfc.jwk import ECKey, OKPKey
from joserfc.jwk import thumbprint as jwk_thumbprint

from aegis.identity.keys import SigningKey, SigningKeys, VerificationKeys


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(
    ("alg", "kty", "crv"), [("EdDSA", "OKP", "Ed25519"), ("ES256", "EC", "P-256")]
)
def test_generate_binds_kid_alg_and_use(alg, kty, crv):
    key = SigningKey.generate(alg)
    jwk = key.public_jwk()
    assert jwk["kty"] == kty and jwk["crv"] == crv
    assert jwk["alg"] == alg and jwk["use"] == "sig"
    # kid is the RFC 7638 thumbprint of the required public members only.
    required = {k: jwk[k] for k in ("crv", "kty", "x", "y") if k in jwk}
    assert jwk["kid"] == key.kid == jwk_thumbprint(required)
    assert "d" not in jwk


def test_default_algorithm_is_eddsa():
    assert SigningKeys.generate().active.alg == "EdDSA"


def test_unsupported_algorithm_refused():
    with pytest.raises(ValueError, match="unsupported"):
        SigningKey.generate("HS256")  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
@pytest.mark.parametrize("password", [None, b"correct horse"])
def test_pem_round_trip(alg, password):
    key = SigningKey.generate(alg)
    pem = key.to_pem(password)
    assert pem.startswith(b"-----BEGIN")
    again = SigningKey.from_pem(pem, password)
    assert again.kid == key.kid and again.alg == alg


def test_pem_of_other_key_types_refused():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="Ed25519 and P-256"):
        SigningKey.from_pem(p384)


def test_from_pems_first_is_active_others_overlap():
    clock = FakeClock()
    a, b = SigningKey.generate(), SigningKey.generate("ES256")
    ring = SigningKeys.from_pems(
        [a.to_pem(), b.to_pem()], overlap=timedelta(minutes=10), clock=clock
    )
    assert ring.active.kid == a.kid
    assert [k.kid for k in ring.verifying()] == [a.kid, b.kid]
    clock.now += timedelta(minutes=10)
    assert [k.kid for k in ring.verifying()] == [a.kid]


def test_rotation_overlap_then_retirement():
    clock = FakeClock()
    ring = SigningKeys.generate(overlap=timedelta(minutes=15), clock=clock)
    first = ring.active
    clock.now += timedelta(hours=1)
    second = ring.rotate()
    assert ring.active.kid == second.kid != first.kid
    assert {k["kid"] for k in ring.jwks()["keys"]} == {first.kid, second.kid}
    assert ring.jwks()["keys"][0]["kid"] == second.kid  # active first
    clock.now += timedelta(minutes=14, seconds=59)
    assert first.kid in ring.verification_keys()
    clock.now += timedelta(seconds=1)
    assert list(ring.verification_keys()) == [second.kid]


def test_rotation_can_switch_algorithm_and_chains_retire_together():
    clock = FakeClock()
    ring = SigningKeys.generate(overlap=timedelta(minutes=5), clock=clock)
    k1 = ring.active
    k2 = ring.rotate("ES256")
    clock.now += timedelta(minutes=1)
    k3 = ring.rotate("EdDSA")
    assert k2.alg == "ES256" and k3.alg == "EdDSA"
    assert [k.kid for k in ring.verifying()] == [k3.kid, k2.kid, k1.kid]
    clock.now += timedelta(minutes=4)  # k1 retires (rotated away at t=0)
    assert [k.kid for k in ring.verifying()] == [k3.kid, k2.kid]
    clock.now += timedelta(minutes=1)
    assert [k.kid for k in ring.verifying()] == [k3.kid]


def test_negative_overlap_refused():
    with pytest.raises(ValueError, match="overlap"):
        SigningKeys.generate(overlap=timedelta(seconds=-1))


def test_jwks_is_public_only_and_round_trips():
    ring = SigningKeys.generate()
    ring.rotate("ES256")
    jwks = ring.jwks()
    for jwk in jwks["keys"]:
        assert set(jwk) <= {"kty", "crv", "x", "y", "kid", "alg", "use"}
    view = VerificationKeys.from_jwks(jwks)
    assert len(view) == 2
    for key in ring.verifying():
        assert view.alg_of(key.kid) == key.alg
        assert not view[key.kid].is_private


def test_verification_keys_skip_foreign_key_types():
    rsa = {"kty": "RSA", "kid": "r", "alg": "RS256", "n": "AQAB", "e": "AQAB"}
    oct_ = {"kty": "oct", "kid": "h", "alg": "HS256", "k": "c2VjcmV0"}
    ed = SigningKey.generate().public_jwk()
    view = VerificationKeys.from_jwks({"keys": [rsa, oct_, ed]})
    assert list(view) == [ed["kid"]]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j: j.pop("kid"), "no 'kid'"),
        (lambda j: j.update(use="enc"), "not a signature key"),
        (lambda j: j.update(d="AAAA"), "private key material"),
        (lambda j: j.update(crv="Ed448"), "needs curve"),
        (lambda j: j.update(x="!!"), "not a valid"),
    ],
)
def test_verification_keys_refuse_bad_members(mutate, message):
    jwk = SigningKey.generate().public_jwk()
    mutate(jwk)
    with pytest.raises(ValueError, match=message):
        VerificationKeys.from_jwks({"keys": [jwk]})


def test_verification_keys_refuse_duplicates_and_bad_shapes():
    jwk = SigningKey.generate().public_jwk()
    with pytest.raises(ValueError, match="duplicate"):
        VerificationKeys.from_jwks({"keys": [jwk, dict(jwk)]})
    for bad in ({}, {"keys": {}}, {"keys": [1]}):
        with pytest.raises(ValueError, match=r"JWK Set|not an object"):
            VerificationKeys.from_jwks(bad)


def test_imported_keys_are_joserfc_public_keys():
    ring = SigningKeys.generate()
    ring.rotate("ES256")
    view = ring.verification_keys()
    kinds = {type(view[k]) for k in view}
    assert kinds == {OKPKey, ECKey}
