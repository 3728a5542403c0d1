"""PEM private keys (RFC 7468 textual encoding), from the BEGIN line through the END line.

Labels covered: "PRIVATE KEY" (PKCS #8, RFC 7468 §10), "ENCRYPTED PRIVATE KEY"
(§11), and the legacy/vendor forms "RSA PRIVATE KEY", "EC PRIVATE KEY",
"DSA PRIVATE KEY", "OPENSSH PRIVATE KEY", plus the OpenPGP armor "PGP PRIVATE KEY
BLOCK" (RFC 4880 §6.2) and the SSH.com "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----".
The END label is not required to equal the BEGIN label (RE2 has no backreferences;
a mismatch is still key material). A block with no END line -- a key cut off by
truncation -- is redacted to the end of the string: a partial key is still a secret.
"""

from __future__ import annotations

from typing import Final

_LABEL: Final = r"(?:[A-Z0-9]+\x20)*PRIVATE\x20KEY(?:\x20BLOCK)?"
PATTERN: Final = (
    rf"(?s)-{{4,5}}\x20?BEGIN\x20{_LABEL}\x20?-{{4,5}}"
    rf"(?:.*?-{{4,5}}\x20?END\x20{_LABEL}\x20?-{{4,5}}|.*)"
)
HINTS: Final = ("PRIVATE KEY",)
