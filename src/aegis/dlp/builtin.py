"""The built-in detectors, compiled on first use and shared thereafter.

Nothing is compiled at import time: a process that never sanitizes never pays
for the patterns. Each detector's format and the spec it follows are documented
in its own module.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

from aegis.core.regex import ByteRegex
from aegis.dlp import aws, card, email_address, iban, ip, jwt, pem, phone, ssn
from aegis.dlp.detector import Detector, Validator
from aegis.dlp.names import BUILTIN_DETECTOR_NAMES

__all__ = ["BUILTIN_DETECTOR_NAMES", "builtin_detectors"]


def _make(
    name: str,
    pattern: str,
    validator: Validator | None = None,
    hints: tuple[str, ...] = (),
    *,
    retry: bool = False,
) -> Detector:
    return Detector(name, pattern, ByteRegex(pattern), validator, hints, retry)


@functools.cache
def builtin_detectors() -> Mapping[str, Detector]:
    """Every built-in detector by name, in :data:`BUILTIN_DETECTOR_NAMES` order."""
    made = (
        _make("private_key", pem.PATTERN, None, pem.HINTS),
        _make("jwt", jwt.PATTERN, jwt.is_jwt, jwt.HINTS),
        _make("aws_access_key", aws.PATTERN, None, aws.HINTS),
        # Retry: a greedy match can take in a following group and fail the checksum.
        _make("iban", iban.PATTERN, iban.is_iban, retry=True),
        _make("credit_card", card.PATTERN, card.is_card_number, retry=True),
        _make("us_ssn", ssn.PATTERN, ssn.is_ssn),
        _make("email", email_address.PATTERN, None, ("@",)),
        _make("ipv4", ip.IPV4_PATTERN, ip.is_ipv4, (".",)),
        _make("ipv6", ip.IPV6_PATTERN, ip.is_ipv6, (":",)),
        _make("ip_address", ip.IP_PATTERN, ip.is_ip, (".", ":")),
        # No retry for the rest: their patterns take a whole token, and a token
        # that fails is not a secret (retrying would find "phones" inside cards).
        _make("phone", phone.PATTERN, phone.is_phone_number),
    )
    by_name = {d.name: d for d in made}
    assert tuple(by_name) == BUILTIN_DETECTOR_NAMES
    return MappingProxyType(by_name)
