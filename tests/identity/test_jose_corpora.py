"""``verify_jws`` against public JOSE test data nobody on this project wrote.

* Wycheproof ``json_web_signature_test.json`` (C2SP/wycheproof): every vector
  marked ``invalid`` is rejected, every ``valid`` one verifies, except data
  defects listed (with proof) in ``WYCHEPROOF_DEFECTS``.
* RFC 7520 JOSE cookbook (ietf-jose/cookbook): every compact output, and every
  JSON output re-expressed in compact form where that is possible, verifies
  with the published key, and fails after one byte of the header, the payload or
  the signature changes.

Data: ``../shared/corpora`` beside the checkout (see its README). Missing data
skips with a message, or fails when ``CI == "true"``.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import JWKRegistry, Key

from aegis.identity.token_errors import TokenError, TokenErrorReason
from aegis.identity.token_jws import (
    ASYMMETRIC_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    verify_jws,
)

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
WYCHEPROOF = CORPORA / "wycheproof" / "json_web_signature_test.json"
COOKBOOK = CORPORA / "jose-cookbook-rfc7520" / "jws"


def _require(path: Path) -> None:
    if not path.exists():
        message = f"external corpus not found: {path} (see ../shared/corpora/README.md)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def b64d(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_key(jwk: dict[str, Any]) -> Key:
    """The verification key of a JWK: the public half, or the secret of an oct key."""
    key = JWKRegistry.import_key(dict(jwk))
    if jwk.get("kty") == "oct":
        return key
    return JWKRegistry.import_key(key.as_dict(private=False))


# == Wycheproof =================================================================================

#: Vectors whose label contradicts the data; each entry says why, and the tests
#: below prove the claim instead of trusting it.
WYCHEPROOF_DEFECTS: dict[int, str] = {
    367: "labelled invalid but byte-identical to valid tcId 357 (the padding it names is absent)",
    370: "labelled invalid but byte-identical to valid tcId 357 (the padding it names is absent)",
    372: "labelled valid but has '?' inside the base64url header; strict base64url refuses it",
    373: "labelled valid but has '?' inside the base64url payload; strict base64url refuses it",
    346: "the group key says alg PS256, the JWS says PS384; we bind a key to its alg (RFC 8725 §3.1)",
    350: "the group key says alg PS256, the JWS says PS384; we bind a key to its alg (RFC 8725 §3.1)",
    347: "the group key says alg 'ES521' (not registered), the JWS says ES512; key/alg binding",
    351: "the group key says alg 'ES521' (not registered), the JWS says ES512; key/alg binding",
}
_IDENTICAL_TO_VALID = {367: 357, 370: 357}
_KEY_ALG_MISMATCH = {346, 347, 350, 351}


def _wycheproof_cases() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    if not WYCHEPROOF.exists():
        return []
    data = json.loads(WYCHEPROOF.read_text())
    return [(group, test) for group in data["testGroups"] for test in group["tests"]]


CASES = _wycheproof_cases()


def _group_key(group: dict[str, Any]) -> dict[str, Any]:
    # HMAC groups publish only the "private" (secret) key; the others a public one.
    return group.get("public") or group["private"]


def _attempt(jws: str, jwk: dict[str, Any], algorithms: frozenset[str]) -> TokenError | None:
    """None if the vector verified, else the refusal. Key import failures count as refusals."""
    try:
        key = public_key(jwk)
    except Exception as exc:
        return TokenError.invalid(TokenErrorReason.KEY_MISMATCH, f"key unusable: {exc}")
    try:
        verify_jws(jws, key, algorithms)
    except TokenError as error:
        return error
    return None


@pytest.mark.parametrize(
    ("group", "test"), CASES, ids=[f"tc{t['tcId']}-{t['comment']}" for _, t in CASES]
)
def test_wycheproof_vector(group, test):
    _require(WYCHEPROOF)
    tc, jwk, jws = test["tcId"], _group_key(group), test["jws"]
    asymmetric = frozenset(ASYMMETRIC_ALGORITHMS)
    everything = frozenset(SUPPORTED_ALGORITHMS)  # HS* too: exercise the parser on HMAC vectors
    if test["result"] == "invalid":
        # With the production-style allowlist (no HMAC): no exceptions at all.
        assert _attempt(jws, jwk, asymmetric) is not None, f"tc{tc} accepted"
        if tc in _IDENTICAL_TO_VALID:
            valid = next(t for _, t in CASES if t["tcId"] == _IDENTICAL_TO_VALID[tc])
            assert valid["result"] == "valid" and valid["jws"] == jws
            return
        # Also with every algorithm we know allowed, HMAC included: the refusal is
        # not just the allowlist talking.
        assert _attempt(jws, jwk, everything) is not None, f"tc{tc} accepted (all algs)"
        return
    assert test["result"] == "valid"
    alg = json.loads(b64d(jws.split(".")[0]))["alg"]
    if tc in _KEY_ALG_MISMATCH:
        error = _attempt(jws, jwk, everything)
        assert error is not None and error.reason is TokenErrorReason.KEY_MISMATCH
        unbound = {k: v for k, v in jwk.items() if k != "alg"}
        assert _attempt(jws, unbound, everything) is None  # the signature itself is good
        return
    if tc in (372, 373):
        error = _attempt(jws, jwk, everything)
        assert error is not None and error.reason is TokenErrorReason.MALFORMED
        return
    assert alg in SUPPORTED_ALGORITHMS
    assert _attempt(jws, jwk, everything) is None, f"tc{tc} ({alg}) did not verify"
    # And with only its own algorithm allowed.
    assert _attempt(jws, jwk, frozenset({alg})) is None


def test_wycheproof_summary(capsys):
    """The counts, printed for the record and pinned so a change is noticed."""
    _require(WYCHEPROOF)
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for group, test in CASES:
        tc, jwk, jws = test["tcId"], _group_key(group), test["jws"]
        if test["result"] == "invalid":
            error = _attempt(jws, jwk, frozenset(ASYMMETRIC_ALGORITHMS))
            counts["invalid rejected (asymmetric allowlist)" if error else "invalid ACCEPTED"] += 1
            if error:
                reasons[str(error.reason)] += 1
            if tc not in _IDENTICAL_TO_VALID:
                strict = _attempt(jws, jwk, frozenset(SUPPORTED_ALGORITHMS))
                counts["invalid rejected (all algs incl. HS*)" if strict else "ACCEPTED"] += 1
        elif tc in WYCHEPROOF_DEFECTS:
            counts["valid, documented defect"] += 1
        else:
            ok = _attempt(jws, jwk, frozenset(SUPPORTED_ALGORITHMS)) is None
            counts["valid verified" if ok else "valid FAILED"] += 1
            if ok and json.loads(b64d(jws.split(".")[0]))["alg"].startswith("HS"):
                counts["  of which HMAC (JWS layer only; tokens refuse HS*)"] += 1
    with capsys.disabled():
        print("\nWycheproof JWS:", dict(counts), "reasons:", dict(reasons))
    assert counts["invalid rejected (asymmetric allowlist)"] == 355
    assert counts["invalid rejected (all algs incl. HS*)"] == 353  # 355 - the two duplicates
    assert counts["valid verified"] == 40  # 46 valid - 6 documented defects
    assert "invalid ACCEPTED" not in counts and "valid FAILED" not in counts
    assert "ACCEPTED" not in counts


# == RFC 7520 cookbook ===========================================================================

_KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC", "HS": "oct", "Ed": "OKP"}


def _cookbook_cases() -> list[tuple[str, str, dict[str, Any], str]]:
    """(id, compact, jwk, alg) for every output expressible as a compact JWS."""
    if not COOKBOOK.exists():
        return []
    cases = []
    for path in sorted(COOKBOOK.glob("*.json")):
        example = json.loads(path.read_text())
        keys = example["input"]["key"]
        keys = keys if isinstance(keys, list) else [keys]
        payload_b64 = b64e(example["input"]["payload"].encode())
        name = path.stem
        output = example["output"]

        signed: list[tuple[str, str, str]] = []  # (label, protected, signature)
        if "compact" in output:
            protected, _, signature = output["compact"].split(".")
            # 4.5 detaches the payload (RFC 7515 Appendix F): it is re-attached below.
            signed.append(("compact", protected, signature))
        flat = output.get("json_flat")
        if flat and "protected" in flat:
            # Only the protected header is signed; an unprotected "header" member
            # (4.6's kid) is simply not carried over.
            signed.append(("json_flat", flat["protected"], flat["signature"]))
        for index, entry in enumerate(output.get("json", {}).get("signatures", [])):
            if "protected" in entry:
                signed.append((f"json[{index}]", entry["protected"], entry["signature"]))
        for label, protected, signature in signed:
            alg = json.loads(b64d(protected))["alg"]
            jwk = next(k for k in keys if k["kty"] == _KTY_FOR_ALG[alg[:2]])
            cases.append((f"{name}-{label}", f"{protected}.{payload_b64}.{signature}", jwk, alg))
    return cases


COOKBOOK_CASES = _cookbook_cases()
#: Outputs with no protected header cannot be compact (the alg would be
#: unauthenticated): 4.7 (json, json_flat) and 4.8's ES512 signature.
COOKBOOK_UNREPRESENTABLE = 3


@pytest.mark.parametrize(
    ("compact", "jwk", "alg"), [c[1:] for c in COOKBOOK_CASES], ids=[c[0] for c in COOKBOOK_CASES]
)
def test_cookbook_verifies_and_one_byte_breaks_it(compact, jwk, alg):
    _require(COOKBOOK)
    key = public_key(jwk)
    payload = verify_jws(compact, key, {alg})
    assert payload.decode().startswith("It’s a dangerous business, Frodo")
    parts = compact.split(".")
    for index in range(3):
        for position in (0, len(b64d(parts[index])) // 2, -1):
            raw = bytearray(b64d(parts[index]))
            raw[position] ^= 0x01
            tampered = list(parts)
            tampered[index] = b64e(bytes(raw))
            with pytest.raises(TokenError):
                verify_jws(".".join(tampered), key, {alg})


def test_cookbook_counts_and_json_refused(capsys):
    _require(COOKBOOK)
    algs = Counter(alg for *_, alg in COOKBOOK_CASES)
    with capsys.disabled():
        print(f"\nRFC 7520 cookbook: {len(COOKBOOK_CASES)} compact forms verified {dict(algs)};"
              f" {COOKBOOK_UNREPRESENTABLE} outputs without a protected header skipped")  # fmt: skip
    assert len(COOKBOOK_CASES) == 19  # 8 examples: compact + json_flat + json entries
    # The JSON serializations themselves are refused: compact only.
    example = json.loads((COOKBOOK / "4_1.rsa_v15_signature.json").read_text())
    key = public_key(example["input"]["key"])
    for form in ("json", "json_flat"):
        with pytest.raises(TokenError) as info:
            verify_jws(json.dumps(example["output"][form]), key, {"RS256"})
        assert info.value.reason is TokenErrorReason.MALFORMED


def test_cookbook_key_for_another_alg_is_refused():
    _require(COOKBOOK)
    rsa = next(c for c in COOKBOOK_CASES if c[3] == "RS256")
    hmac = next(c for c in COOKBOOK_CASES if c[3] == "HS256")
    # RS256 token, HMAC key; HS256 token, RSA public key (alg confusion).
    with pytest.raises(TokenError) as info:
        verify_jws(rsa[1], public_key(hmac[2]), {"RS256", "HS256"})
    assert info.value.reason is TokenErrorReason.KEY_MISMATCH
    with pytest.raises(TokenError) as info:
        verify_jws(hmac[1], public_key(rsa[2]), {"RS256", "HS256"})
    assert info.value.reason is TokenErrorReason.KEY_MISMATCH
