"""AWS access key ids: a four-letter type prefix and 16 upper-case alphanumerics.

AWS documents the prefix of each unique identifier ("Understanding unique ID
prefixes", IAM User Guide): AKIA is a long-term access key, ASIA a temporary
(STS) one, ABIA an STS service bearer token, ACCA a context-specific credential.
Ids of users, roles and policies (AIDA, AROA, ANPA, ...) are not credentials.
The 16 characters are base32 in practice; [A-Z0-9] is accepted so a key never
slips through on a character-set technicality.
"""

from __future__ import annotations

from typing import Final

PATTERN: Final = r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"
HINTS: Final = ("AKIA", "ASIA", "ABIA", "ACCA")
