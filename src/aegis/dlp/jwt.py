"""JSON Web Tokens in compact serialization (RFC 7519 §3; JWS RFC 7515 §7.1, JWE RFC 7516 §7.1).

Three (JWS) or five (JWE) base64url segments joined by dots. The first is the
JOSE header, a JSON object, so its encoding starts with "ey" ('{"') or "ew"
('{' then whitespace, as in the RFC 7519 §3.1 example). A candidate counts only
if that header decodes to a JSON object with an "alg" member (RFC 7515 §4.1.1
makes "alg" mandatory; JWE also requires "enc", RFC 7516 §4.1.2).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Final

_SEGMENT: Final = r"[A-Za-z0-9_\-]"
PATTERN: Final = (
    rf"\be[wy]{_SEGMENT}{{2,}}"  # the JOSE header
    rf"(?:\.{_SEGMENT}*){{2}}(?:\.{_SEGMENT}*\.{_SEGMENT}*)?"  # 2 more (JWS) or 4 (JWE)
)
HINTS: Final = ("ey", "ew")
#: A header larger than this is not decoded (x5c chains reach a few KB; 64 KB is ample).
MAX_HEADER: Final = 65_536


def _b64url_decode(segment: str) -> bytes | None:
    if len(segment) % 4 == 1:  # no base64 encoding has this length
        return None
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None


def is_jwt(text: str) -> bool:
    parts = text.split(".")
    header_b64 = parts[0]
    if len(header_b64) > MAX_HEADER or any(len(p) % 4 == 1 for p in parts):
        return False
    raw = _b64url_decode(header_b64)
    if raw is None:
        return False
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        return False
    return len(parts) == 3 or isinstance(header.get("enc"), str)
