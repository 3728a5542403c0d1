"""The built-in detectors one by one: what each must find, and what it must leave alone."""

from __future__ import annotations

import pytest

from aegis.dlp import BUILTIN_DETECTOR_NAMES, Detector, DetectorNameError, builtin_detectors
from aegis.dlp.card import luhn_valid
from aegis.dlp.iban import mod97
from aegis.errors import ErrorCode, PatternError

# RFC 7519 §3.1: the example JWT (HS256, header with a CRLF inside the JSON).
RFC7519_JWT = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)
# RFC 7519 §6.1: the unsecured JWT ("alg":"none", empty signature).
RFC7519_UNSECURED = (
    "eyJhbGciOiJub25lIn0"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
)
# A syntactically plausible PEM block (the body need not be a real key).
PEM_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm\n"
    "-----END RSA PRIVATE KEY-----"
)


def found(name: str, text: str) -> list[str]:
    return [text[a:b] for a, b in builtin_detectors()[name].find(text)]


def test_builtin_names_and_mapping_agree() -> None:
    detectors = builtin_detectors()
    assert tuple(detectors) == BUILTIN_DETECTOR_NAMES
    assert all(detectors[name].name == name for name in BUILTIN_DETECTOR_NAMES)
    assert builtin_detectors() is detectors  # compiled once, lazily
    with pytest.raises(TypeError):
        detectors["email"] = detectors["jwt"]  # type: ignore[index]


# -- credit_card (ISO/IEC 7812, Luhn) --------------------------------------------


@pytest.mark.parametrize(
    "pan",
    [
        "4111111111111111",  # Visa test PAN
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555555555554444",  # Mastercard
        "2223003122003222",  # Mastercard 2-series
        "378282246310005",  # Amex
        "3782 822463 10005",  # Amex print grouping 4-6-5
        "6011111111111117",  # Discover
        "3530111333300000",  # JCB
        "30569309025904",  # Diners, 14 digits
        "4222222222222",  # Visa, 13 digits
        "6304000000000000",  # Maestro
    ],
)
def test_valid_card_numbers_are_found(pan: str) -> None:
    assert found("credit_card", f"card: {pan}, exp 12/29") == [pan]


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # Luhn check digit off by one
        "4111 1111 1111 1112",
        "1700000000000",  # a millisecond Unix time: MII 1 is 15-digit UATP only
        "0000000000000000",  # Luhn-valid, but MII 0 is no payment card
        "7992739871300",  # Luhn-valid, MII 7 (petroleum)
        "41111111111111110",  # inside a longer run: no word boundary
        "x4111111111111111",
    ],
)
def test_card_look_alikes_are_not_found(text: str) -> None:
    assert found("credit_card", text) == []


def test_card_is_found_past_a_failing_neighbour_group() -> None:
    # Greedy matching takes in the extra group; the checksum fails; the prefix wins.
    assert found("credit_card", "4111111111111111 12 pcs") == ["4111111111111111"]
    # A year in front: the candidate starting there fails, the next start is tried.
    assert found("credit_card", "2024 4111 1111 1111 1111") == ["4111 1111 1111 1111"]


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


# -- iban (ISO 13616, ISO 7064 MOD 97-10) ----------------------------------------


@pytest.mark.parametrize(
    "iban",
    [
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",  # ISO 13616 paper format
        "gb82west12345698765432",
        "DE89370400440532013000",
        "FR1420041010050500013M02606",
        "NO9386011117947",  # shortest (15)
        "MT84MALT011000012345MTLCAST001S",  # 31, letters in the BBAN
    ],
)
def test_valid_ibans_are_found(iban: str) -> None:
    assert found("iban", f"pay to {iban}.") == [iban]


@pytest.mark.parametrize(
    "text",
    [
        "GB83WEST12345698765432",  # wrong check digits
        "GB82WEST12345698765433",  # BBAN altered
        "GB82WEST1234569876543",  # one short for GB (22)
        "ZZ82WEST12345698765432",  # no such registry country
        "GB00WEST12345698765432",
    ],
)
def test_invalid_ibans_are_not_found(text: str) -> None:
    assert found("iban", text) == []


def test_iban_followed_by_another_group() -> None:
    assert found("iban", "GB82WEST12345698765432 1234") == ["GB82WEST12345698765432"]


def test_mod97() -> None:
    assert mod97("GB82WEST12345698765432") == 1


# -- us_ssn ------------------------------------------------------------------------


@pytest.mark.parametrize("ssn", ["536-22-8726", "536 22 8726", "853-37-1694", "001-01-0001"])
def test_valid_ssns_are_found(ssn: str) -> None:
    assert found("us_ssn", f"SSN {ssn}.") == [ssn]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "900-12-3456",  # areas 900-999
        "987-65-4320",
        "536-00-8726",  # group 00
        "536-22-0000",  # serial 0000
        "536-22 8726",  # mixed separators
        "536228726",  # bare nine digits: not detected
        "1536-22-8726",
    ],
)
def test_invalid_ssns_are_not_found(text: str) -> None:
    assert found("us_ssn", text) == []


# -- email -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe@example.com.", "jane.doe@example.com"),
        ("<o'brien+tag@mail.example.co.uk>", "o'brien+tag@mail.example.co.uk"),
        ("https://x.test/?next=/a&to=bob@example.org", "bob@example.org"),
        ("Jörg@bücher.de schrieb", "Jörg@bücher.de"),
        ("“bob@example.com”", "bob@example.com"),
        ("user@[192.0.2.1]", "user@[192.0.2.1]"),
        ("x@xn--bcher-kva.example", "x@xn--bcher-kva.example"),
    ],
)
def test_emails_are_found(text: str, expected: str) -> None:
    assert found("email", text) == [expected]


@pytest.mark.parametrize("text", ["a@b", "@example.com", "user@.com", "user@example.c", "a@@b.com"])
def test_email_look_alikes_are_not_found(text: str) -> None:
    assert found("email", text) == []


# -- phone -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "+1-984-182-0190",
        "+1 (555) 234-5678",
        "+447700677662",  # E.164, no separators
        "+44 20 7946 0958",
        "+41 (0)96 471 07 95",  # trunk prefix shown
        "(602) 272-9781",
        "(579)888-3058",
        "541.714.1388",
        "905-674-3793",
        "001-518-640-0854",
        "2125551234",  # bare NANP
        "345-899-3560x4587",
        "555-234-5678 ext. 12",
        "0688 872 49 99",
        "03.93.92.16.85",
        "07700 900123",
        "(08) 8747 6301",
        "467 3395",
    ],
)
def test_phone_numbers_are_found(phone: str) -> None:
    assert found("phone", f"call {phone} today") == [phone]


@pytest.mark.parametrize(
    "text",
    [
        "deploy 42 finished",
        "1700000000",  # Unix time: area code 170 is not NANP
        "4111111111111111",  # too many digits for E.164
        "2024-01-15",
        "15.01.2024",
        "When: 2000-04-16 11:34:35",
        "1990-2000",
        "3.14159265",
        "192.168.1.10",
        "536-22-8726",  # an SSN's shape is the us_ssn detector's
        "17151 2450 Crown St",  # house number and street number
        "ZIP 75534-030",
        "1+2345678",
    ],
)
def test_phone_look_alikes_are_not_found(text: str) -> None:
    assert found("phone", text) == []


# -- ip ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("ipv4", "from 10.0.0.1:8080", "10.0.0.1"),
        ("ipv4", "|106.31.73.20|", "106.31.73.20"),
        ("ipv6", "2001:db8::1", "2001:db8::1"),
        ("ipv6", "fe80::1: up", "fe80::1"),
        ("ipv6", "::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        (
            "ipv6",
            "6e40:4041:c617:e898:c11:40d2:c669:2eb4",
            "6e40:4041:c617:e898:c11:40d2:c669:2eb4",
        ),
        ("ip_address", "a 192.0.2.7 b", "192.0.2.7"),
        ("ip_address", "a 2001:db8:0:0:1:0:0:1 b", "2001:db8:0:0:1:0:0:1"),
    ],
)
def test_ip_addresses_are_found(name: str, text: str, expected: str) -> None:
    assert found(name, text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "300.1.2.3",
        "01.2.3.4",  # leading zero: octal in inet_aton, refused
        "1.2.3.4.5",  # a version or a dotted phone number, not an address
        "std::map",
        "a::b",
        "dead::beef",
        "10:30:00",
        "00:1a:2b:3c:4d:5e",  # a MAC address
        "::1",  # loopback carries no information
    ],
)
def test_ip_look_alikes_are_not_found(text: str) -> None:
    assert found("ip_address", text) == []


# -- aws_access_key, jwt, private_key ----------------------------------------------


def test_aws_example_access_key_id() -> None:
    # The key id AWS documentation uses in every example.
    assert found("aws_access_key", "aws_access_key_id=AKIAIOSFODNN7EXAMPLE\n") == [
        "AKIAIOSFODNN7EXAMPLE"
    ]
    assert found("aws_access_key", "ASIAY34FZKBOKMUTVV7A") == ["ASIAY34FZKBOKMUTVV7A"]
    assert found("aws_access_key", "AKIAIOSFODNN7EXAMPLEX") == []  # 21 characters
    assert found("aws_access_key", "AIDAJQABLZS4A3QDU576Q") == []  # a user id, not a key


def test_rfc7519_example_jwt() -> None:
    assert found("jwt", f"Authorization: Bearer {RFC7519_JWT}.") == [RFC7519_JWT]
    assert found("jwt", f"token={RFC7519_UNSECURED} next") == [RFC7519_UNSECURED]


@pytest.mark.parametrize(
    "text",
    [
        "eyJub3QiOiJhIGp3dCJ9.eyJ4IjoxfQ.abc",  # header {"not":"a jwt"}: no "alg"
        "eyJhbGciOiJIUzI1NiJ9",  # one segment
        "eyJhbGciOiJIUzI1NiJ9x.e30.abc",  # header does not decode to JSON
        "eyes.on.you",
    ],
)
def test_jwt_look_alikes_are_not_found(text: str) -> None:
    assert found("jwt", text) == []


def test_pem_private_key_block_is_found_whole() -> None:
    text = f"key:\n{PEM_KEY}\nthanks"
    assert found("private_key", text) == [PEM_KEY]
    for label in ["PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"]:
        block = f"-----BEGIN {label}-----\nAAAA\n-----END {label}-----"
        assert found("private_key", f"x {block} y") == [block]
    pgp = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----"
    assert found("private_key", pgp) == [pgp]
    # Public keys and certificates are not secrets.
    assert found("private_key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----") == []


def test_truncated_pem_key_is_found_to_the_end() -> None:
    text = "log: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    assert found("private_key", text) == [text[5:]]


# -- custom detectors --------------------------------------------------------------


def test_custom_detector() -> None:
    detector = Detector.custom("employee_id", r"\bEMP-[0-9]{6}\b")
    assert detector.name == "employee_id"
    assert detector.find("by EMP-004211 and EMP-1 and EMP-123456") == [(3, 13), (28, 38)]
    assert detector == Detector.custom("employee_id", r"\bEMP-[0-9]{6}\b")


@pytest.mark.parametrize(
    ("pattern", "code"),
    [
        (r"(a)\1", ErrorCode.POLICY_INVALID_REGEX),  # backreference: not RE2
        (r"(?=a)b", ErrorCode.POLICY_INVALID_REGEX),  # lookahead: not RE2
        (r"[a-", ErrorCode.POLICY_INVALID_REGEX),
        (r"[0-9]*", ErrorCode.POLICY_INVALID_REGEX),  # matches the empty string
        ("a" * 5000, ErrorCode.POLICY_REGEX_TOO_LONG),
    ],
)
def test_custom_detector_bad_pattern(pattern: str, code: ErrorCode) -> None:
    with pytest.raises(PatternError) as info:
        Detector.custom("mine", pattern)
    assert info.value.code is code


@pytest.mark.parametrize("name", ["", "has space", "x" * 129, "]inject", "emaïl", "-lead", "a]b"])
def test_custom_detector_bad_name(name: str) -> None:
    # Both a PatternError (what the policy compiler catches) and a ValueError.
    with pytest.raises(PatternError, match="detector name") as info:
        Detector.custom(name, "abc")
    assert isinstance(info.value, ValueError)
    assert info.value.code is ErrorCode.POLICY_INVALID_VALUE


@pytest.mark.parametrize("name", ["mrn", "ticket-secret", "acme/badge:v2", "a.b_c", "x" * 128])
def test_custom_detector_names_follow_policy_identifiers(name: str) -> None:
    assert Detector.custom(name, "abc").name == name


def test_custom_detector_cannot_take_a_builtin_name() -> None:
    with pytest.raises(DetectorNameError, match="reserved"):
        Detector.custom("email", "abc")


# -- offsets -----------------------------------------------------------------------


def test_offsets_are_characters_not_bytes() -> None:
    text = "é—€ 4111 1111 1111 1111 ü jane@example.com 漢字"
    spans = builtin_detectors()["credit_card"].find(text)
    assert [text[a:b] for a, b in spans] == ["4111 1111 1111 1111"]
    assert found("email", text) == ["jane@example.com"]


def test_many_near_misses_stay_linear_and_a_later_secret_is_found() -> None:
    text = "4111 1111 1111 1112 x " * 20_000 + "and 4111 1111 1111 1111"
    assert found("credit_card", text) == ["4111 1111 1111 1111"]
