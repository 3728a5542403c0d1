"""The built-in detector names, in priority order.

The order is part of the contract: when two detectors match spans of the same
length that overlap, the one listed first labels the redaction (see
:mod:`aegis.dlp.overlap`). Specific, checksummed secrets come before loose
formats, so "078-05-1120" is reported as ``us_ssn`` rather than ``phone``.
"""

from __future__ import annotations

from typing import Final

BUILTIN_DETECTOR_NAMES: Final[tuple[str, ...]] = (
    "private_key",
    "jwt",
    "aws_access_key",
    "iban",
    "credit_card",
    "us_ssn",
    "email",
    "ipv4",
    "ipv6",
    "ip_address",
    "phone",
)
