"""Redactor: named fields, detectors over params, overlap, records, combine()."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from aegis.core.decision import Redaction
from aegis.core.paths import parse_path
from aegis.dlp import (
    FIELD_MARKER,
    Detector,
    Redactor,
    builtin_detectors,
    combine,
    marker,
)

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"
JWT = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----"
)


def det(*names: str) -> list[Detector]:
    return [builtin_detectors()[n] for n in names]


def paths(*texts: str) -> list[Any]:
    return [parse_path(t) for t in texts]


def everything() -> Redactor:
    return Redactor(detectors=list(builtin_detectors().values()))


def assert_no_secret(secret: str, out: Any, redactions: tuple[Redaction, ...]) -> None:
    assert secret not in json.dumps(out, ensure_ascii=False)
    assert secret not in repr(redactions)
    assert secret not in json.dumps([r.to_dict() for r in redactions])


def test_detectors_replace_matches_with_named_markers() -> None:
    params = {"channel": "#incidents", "text": f"customer {EMAIL} paid with {CARD}"}
    out, redactions = Redactor(detectors=det("email", "credit_card")).apply(params)
    assert out == {
        "channel": "#incidents",
        "text": "customer [REDACTED:email] paid with [REDACTED:credit_card]",
    }
    assert redactions == (Redaction("text", "credit_card"), Redaction("text", "email"))


def test_named_fields_with_wildcards() -> None:
    params = {
        "user": {"password": "hunter2", "name": "ann"},
        "messages": [{"token": "t1", "text": "hi"}, {"token": {"nested": "t2"}}, {"text": "x"}],
    }
    redactor = Redactor(fields=paths("user.password", "messages[*].token"))
    out, redactions = redactor.apply(params)
    assert out == {
        "user": {"password": FIELD_MARKER, "name": "ann"},
        "messages": [
            {"token": FIELD_MARKER, "text": "hi"},
            {"token": FIELD_MARKER},
            {"text": "x"},
        ],
    }
    assert [r.to_dict() for r in redactions] == [
        {"path": "messages[0].token", "detector": "field"},
        {"path": "messages[1].token", "detector": "field"},
        {"path": "user.password", "detector": "field"},
    ]
    assert_no_secret("hunter2", out, redactions)


def test_field_paths_follow_core_path_semantics() -> None:
    params = {"a": {"0": "by key", "b": ["x", "y"]}, "c": [{"d": 1}], "e": None}
    redactor = Redactor(fields=paths("a[0]", "a.b.1", "*.zz", "c[*]", "e", "missing.path"))
    out, redactions = redactor.apply(params)
    assert out == {
        "a": {"0": FIELD_MARKER, "b": ["x", FIELD_MARKER]},
        "c": [FIELD_MARKER],
        "e": FIELD_MARKER,
    }
    assert [r.path for r in redactions] == ["a.0", "a.b[1]", "c[0]", "e"]


def test_quoted_keys_render_in_records() -> None:
    params = {"headers": {"x-api.key": "k", "note": f"mail {EMAIL}"}}
    redactor = Redactor(fields=paths('headers["x-api.key"]'), detectors=det("email"))
    out, redactions = redactor.apply(params)
    assert out["headers"] == {"x-api.key": FIELD_MARKER, "note": "mail [REDACTED:email]"}
    assert redactions == (  # sorted as strings: "." sorts before "["
        Redaction("headers.note", "email"),
        Redaction('headers["x-api.key"]', "field"),
    )


def test_nested_structures_and_concrete_paths() -> None:
    params = {
        "blocks": [
            {"type": "section", "text": {"text": f"key AKIAIOSFODNN7EXAMPLE and {JWT}"}},
            {"type": "context", "elements": [{"text": "nothing here"}, {"text": PEM}]},
        ],
        "meta": {"count": 2, "ok": True, "ratio": 0.5, "none": None},
    }
    out, redactions = everything().apply(params)
    assert out["blocks"][0]["text"]["text"] == "key [REDACTED:aws_access_key] and [REDACTED:jwt]"
    assert out["blocks"][1]["elements"] == [
        {"text": "nothing here"},
        {"text": "[REDACTED:private_key]"},
    ]
    assert out["meta"] == params["meta"]
    assert redactions == (
        Redaction("blocks[0].text.text", "aws_access_key"),
        Redaction("blocks[0].text.text", "jwt"),
        Redaction("blocks[1].elements[1].text", "private_key"),
    )
    for secret in ["AKIAIOSFODNN7EXAMPLE", JWT, PEM.splitlines()[1]]:
        assert_no_secret(secret, out, redactions)


def test_pem_block_leaves_no_line_behind() -> None:
    out, _ = everything().apply({"body": f"here:\n{PEM}\nbye"})
    assert out == {"body": "here:\n[REDACTED:private_key]\nbye"}


def test_input_is_not_mutated_and_output_shares_no_containers() -> None:
    params: dict[str, Any] = {
        "a": [{"b": EMAIL, "c": [1, 2, {"d": CARD}]}],
        "e": {"f": "plain", "g": ["x"]},
        "secret": "s3cr3t",
    }
    before = copy.deepcopy(params)
    for redactor in [
        Redactor(),
        Redactor(fields=paths("secret")),
        Redactor(detectors=det("email", "credit_card")),
        Redactor(fields=paths("a[*].b"), detectors=det("email"), scan=paths("e")),
    ]:
        out, _ = redactor.apply(params)
        assert params == before
        out["e"]["g"].append("mutated")
        out["a"][0]["c"].append("mutated")
        assert params == before


def test_no_detectors_and_no_fields_is_a_plain_copy() -> None:
    params = {"a": [1, {"b": "4111111111111111"}]}
    out, redactions = Redactor().apply(params)
    assert out == params
    assert out is not params
    assert redactions == ()


def test_numbers_are_scanned_as_their_json_text() -> None:
    params = {
        "card": 4111111111111111,
        "card_float": 4111111111111111.0,
        "phone": 2125551234,
        "amount": 1234,
        "flag": True,
        "pi": 3.14,
    }
    out, redactions = everything().apply(params)
    assert out == {
        "card": "[REDACTED:credit_card]",
        "card_float": "[REDACTED:credit_card].0",
        "phone": "[REDACTED:phone]",
        "amount": 1234,
        "flag": True,
        "pi": 3.14,
    }
    assert {r.path for r in redactions} == {"card", "card_float", "phone"}
    assert_no_secret("4111111111111111", out, redactions)


def test_keys_are_kept_and_not_scanned() -> None:
    params = {EMAIL: "value", "by_card": {CARD: 1}}
    out, redactions = Redactor(detectors=det("email", "credit_card")).apply(params)
    assert out == params
    assert redactions == ()


def test_scan_limits_detectors_to_subtrees() -> None:
    params = {
        "text": f"mail {EMAIL}",
        "blocks": [{"text": f"mail {EMAIL}", "raw": f"mail {EMAIL}"}],
        "other": f"mail {EMAIL}",
    }
    redactor = Redactor(detectors=det("email"), scan=paths("text", "blocks[*].text"))
    out, redactions = redactor.apply(params)
    assert out == {
        "text": "mail [REDACTED:email]",
        "blocks": [{"text": "mail [REDACTED:email]", "raw": f"mail {EMAIL}"}],
        "other": f"mail {EMAIL}",
    }
    assert [r.path for r in redactions] == ["blocks[0].text", "text"]
    assert Redactor(detectors=det("email"), scan=[]).apply(params) == (params, ())


def test_field_redaction_wins_over_detectors_inside_it() -> None:
    params = {"user": {"email": EMAIL, "bio": f"reach me at {EMAIL}"}}
    redactor = Redactor(fields=paths("user.email"), detectors=det("email"))
    out, redactions = redactor.apply(params)
    assert out == {"user": {"email": FIELD_MARKER, "bio": "reach me at [REDACTED:email]"}}
    assert redactions == (Redaction("user.bio", "email"), Redaction("user.email", "field"))


def test_custom_detectors_never_see_markers() -> None:
    # "REDACTED" would match this pattern if detectors ran over earlier replacements.
    shouty = Detector.custom("shouty", r"\b[A-Z]{8}\b")
    redactor = Redactor(fields=paths("f"), detectors=[shouty, *det("email")])
    out, redactions = redactor.apply({"f": "x", "t": f"{EMAIL} ABCDEFGH"})
    assert out == {"f": FIELD_MARKER, "t": "[REDACTED:email] [REDACTED:shouty]"}
    assert {r.detector for r in redactions} == {"field", "email", "shouty"}


def test_redactions_are_unique_and_sorted() -> None:
    params = {"z": f"{EMAIL} {EMAIL} {CARD}", "a": [f"{EMAIL}", f"{CARD} {CARD}"]}
    _, redactions = Redactor(detectors=det("email", "credit_card")).apply(params)
    assert redactions == (
        Redaction("a[0]", "email"),
        Redaction("a[1]", "credit_card"),
        Redaction("z", "credit_card"),
        Redaction("z", "email"),
    )
    assert list(redactions) == sorted(redactions, key=lambda r: (r.path, r.detector))


# -- overlap resolution --------------------------------------------------------------


def test_overlapping_matches_merge_into_one_region_labelled_by_the_longest() -> None:
    short = Detector.custom("short", "abc")
    long = Detector.custom("long", "bcdef")
    out, redactions = Redactor(detectors=[short, long]).apply({"t": "xabcdefy abc"})
    # The region is the union "abcdef": no part of either secret is left behind.
    assert out == {"t": "x[REDACTED:long]y [REDACTED:short]"}
    assert redactions == (Redaction("t", "long"), Redaction("t", "short"))


def test_equal_length_overlap_goes_to_detector_priority() -> None:
    # 536-22-8726 is both an SSN and (by shape) a phone number: us_ssn comes first.
    out, redactions = Redactor(detectors=det("phone", "us_ssn")).apply({"t": "536-22-8726"})
    assert out == {"t": "[REDACTED:us_ssn]"}
    assert redactions == (Redaction("t", "us_ssn"),)
    # Custom detectors rank after built-ins, then by name.
    b_det, a_det = Detector.custom("b_det", "xyz"), Detector.custom("a_det", "xyz")
    assert Redactor(detectors=[b_det, a_det]).apply({"t": "xyz"})[0] == {"t": marker("a_det")}


def test_overlap_resolution_is_independent_of_detector_order() -> None:
    params = {"t": f"ip 192.0.2.7, card {CARD}, ssn 536-22-8726, call +1 (555) 234-5678"}
    detectors = list(builtin_detectors().values())
    forward = Redactor(detectors=detectors).apply(params)
    backward = Redactor(detectors=detectors[::-1]).apply(params)
    assert forward == backward


def test_card_inside_a_phone_like_run_is_not_partially_left() -> None:
    out, _ = everything().apply({"t": f"ref {CARD} 99"})
    assert "1111" not in out["t"]


# -- combine -----------------------------------------------------------------------


def test_combine_unions_fields_detectors_and_scan() -> None:
    a = Redactor(fields=paths("password"), detectors=det("email"), scan=paths("text"))
    b = Redactor(fields=paths("password", "token"), detectors=det("credit_card", "email"))
    c = Redactor(detectors=det("jwt"), scan=paths("blocks[*].text"))
    ab = combine([a, b])
    assert set(ab.fields) == set(paths("password", "token"))
    assert [d.name for d in ab.detectors] == ["credit_card", "email"]
    assert ab.scan is None  # b scans everything, and None wins

    ac = combine([a, c])
    assert ac.scan is not None
    assert set(ac.scan) == set(paths("text", "blocks[*].text"))
    assert [d.name for d in ac.detectors] == ["jwt", "email"]

    # A fields-only redactor's default scan=None does not widen the others' scope.
    fields_only = Redactor(fields=paths("x"))
    assert combine([fields_only, a]).scan == a.scan
    assert combine([]).apply({"a": 1}) == ({"a": 1}, ())


def test_combined_redactor_does_what_both_do() -> None:
    a = Redactor(fields=paths("password"), detectors=det("email"), scan=paths("text"))
    b = Redactor(detectors=det("credit_card"), scan=paths("note"))
    params = {"password": "pw", "text": f"{EMAIL} {CARD}", "note": f"{CARD}", "free": EMAIL}
    out, redactions = combine([a, b]).apply(params)
    # Union semantics: email and credit_card both run over text and note.
    assert out == {
        "password": FIELD_MARKER,
        "text": "[REDACTED:email] [REDACTED:credit_card]",
        "note": "[REDACTED:credit_card]",
        "free": EMAIL,
    }
    assert len(redactions) == 4


def test_same_named_detectors_keep_the_first() -> None:
    first = Detector.custom("ticket", r"T-[0-9]{3}")
    second = Detector.custom("ticket", r"X-[0-9]{3}")
    merged = combine([Redactor(detectors=[first]), Redactor(detectors=[second])])
    assert merged.detectors == (first,)


def test_empty_field_path_is_refused() -> None:
    from aegis.core.paths import ParamPath

    with pytest.raises(ValueError, match="empty"):
        Redactor(fields=[ParamPath(())])
    # An empty scan path means "everything".
    redactor = Redactor(detectors=det("email"), scan=[ParamPath(())])
    assert redactor.apply({"a": {"b": EMAIL}})[0] == {"a": {"b": "[REDACTED:email]"}}


def test_large_string_is_handled() -> None:
    filler = "lorem ipsum dolor sit amet, " * 36_000  # ~1 MB
    text = filler + f" {CARD} " + filler + f" {EMAIL}"
    out, redactions = everything().apply({"t": text})
    assert CARD not in out["t"]
    assert EMAIL not in out["t"]
    assert {r.detector for r in redactions} == {"credit_card", "email"}


def test_repr_names_no_values() -> None:
    text = repr(Redactor(fields=paths("a.b"), detectors=det("email"), scan=paths("t")))
    assert text == "Redactor(fields=['a.b'], detectors=['email'], scan=['t'])"
