"""Operators of the control plane and how a bearer secret finds one.

Only the SHA-256 (hex) of each secret is held; a presented secret is hashed and
compared with :func:`hmac.compare_digest` against every operator's digest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aegis.control.roles import Role

__all__ = ["ALL_TENANTS", "Operator", "OperatorStore", "hash_secret"]

#: The tenants entry granting every tenant (and global revocations, role permitting).
ALL_TENANTS = "*"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest an operator entry stores for ``secret``."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    role: Role
    tenants: frozenset[str]
    token_sha256: str

    @property
    def is_global(self) -> bool:
        return ALL_TENANTS in self.tenants

    def holds(self, tenant: str) -> bool:
        """Whether this operator may act on ``tenant``."""
        return self.is_global or tenant in self.tenants

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "role": str(self.role), "tenants": sorted(self.tenants)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Operator:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise ValueError("an operator needs a printable, non-empty name")
        try:
            role = Role(str(data.get("role")))
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise ValueError(f"operator {name!r}: role must be one of {roles}") from None
        tenants = data.get("tenants")
        if (
            not isinstance(tenants, list)
            or not tenants
            or not all(isinstance(t, str) and t for t in tenants)
        ):
            raise ValueError(f"operator {name!r}: tenants must be a non-empty list of names")
        digest = data.get("token_sha256")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
            raise ValueError(f"operator {name!r}: token_sha256 must be 64 hex digits")
        return cls(name, role, frozenset(tenants), digest.lower())


class OperatorStore:
    """The configured operators, looked up by bearer secret."""

    def __init__(self, operators: Iterable[Operator | Mapping[str, Any]]) -> None:
        found: list[Operator] = []
        for entry in operators:
            op = entry if isinstance(entry, Operator) else Operator.from_dict(entry)
            if any(o.name == op.name for o in found):
                raise ValueError(f"operator {op.name!r} is configured twice")
            if any(o.token_sha256 == op.token_sha256 for o in found):
                raise ValueError(f"operator {op.name!r} shares a token with another operator")
            found.append(op)
        self._operators = tuple(found)

    @property
    def operators(self) -> tuple[Operator, ...]:
        return self._operators

    def authenticate(self, secret: str) -> Operator | None:
        """The operator whose token is ``secret``, or None."""
        if not secret:
            return None
        digest = hash_secret(secret).encode("ascii")
        match: Operator | None = None
        for op in self._operators:  # every entry compared: timing does not tell which
            if hmac.compare_digest(digest, op.token_sha256.encode("ascii")):
                match = op
        return match
