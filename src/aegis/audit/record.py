"""Audit records: canonical JSON (RFC 8785) in a hash chain.

Each record commits to its predecessor: ``hash = sha256(canonical(record
without "hash"))`` and the record carries ``prev_hash``, the previous
record's ``hash`` (64 zeros for the first). Modifying, deleting, inserting or
reordering any record breaks every later link; signed checkpoints over an
RFC 6962 Merkle tree of the records (:mod:`aegis.audit.merkle`,
:mod:`aegis.audit.checkpoint`) make truncation and forks provable too.

Records never hold secret values: decision records take the params *after*
the policy's sanitize obligations (see :func:`aegis.policy.engine.params_for_record`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import rfc8785

GENESIS_HASH = "0" * 64
FORMAT_VERSION = 1


class RecordKind(StrEnum):
    DECISION = "decision"
    APPROVAL = "approval"
    REVOCATION = "revocation"
    POLICY_ACTIVATION = "policy_activation"
    INCIDENT = "incident"


def canonical(value: Any) -> bytes:
    """RFC 8785 JSON Canonicalization Scheme bytes."""
    return rfc8785.dumps(value)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the log. ``body`` is kind-specific and already redacted."""

    seq: int
    kind: RecordKind
    time: str  # RFC 3339, UTC, microseconds
    tenant: str | None
    body: dict[str, Any]
    prev_hash: str
    hash: str

    def unsigned(self) -> dict[str, Any]:
        """The fields the hash covers (everything but ``hash``)."""
        return {
            "v": FORMAT_VERSION,
            "seq": self.seq,
            "kind": str(self.kind),
            "time": self.time,
            "tenant": self.tenant,
            "body": self.body,
            "prev_hash": self.prev_hash,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.unsigned(), "hash": self.hash}

    def leaf_bytes(self) -> bytes:
        """What the Merkle tree commits to: the canonical form of the whole record."""
        return canonical(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditRecord:
        """Read a record back (an export line, a store row). Does not verify it."""
        if data.get("v") != FORMAT_VERSION:
            raise ValueError(f"unsupported audit record version {data.get('v')!r}")
        return cls(
            seq=int(data["seq"]),
            kind=RecordKind(data["kind"]),
            time=str(data["time"]),
            tenant=data["tenant"],
            body=dict(data["body"]),
            prev_hash=str(data["prev_hash"]),
            hash=str(data["hash"]),
        )


def record_hash(unsigned: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(unsigned)).hexdigest()


def make_record(
    *,
    seq: int,
    kind: RecordKind,
    time: str,
    tenant: str | None,
    body: dict[str, Any],
    prev_hash: str,
) -> AuditRecord:
    """Seal a new record onto the chain after ``prev_hash``."""
    draft = AuditRecord(seq, kind, time, tenant, body, prev_hash, "")
    return AuditRecord(seq, kind, time, tenant, body, prev_hash, record_hash(draft.unsigned()))


def check_link(record: AuditRecord, prev_hash: str, seq: int) -> str | None:
    """Why ``record`` is not the valid successor at ``seq`` after ``prev_hash``, or None."""
    if record.seq != seq:
        return (
            f"record {record.seq} found where record {seq} belongs (deleted, inserted or reordered)"
        )
    if record.prev_hash != prev_hash:
        return f"record {seq} does not follow its predecessor (prev_hash mismatch)"
    if record_hash(record.unsigned()) != record.hash:
        return f"record {seq} was modified (its hash does not match its content)"
    return None
