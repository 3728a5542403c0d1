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
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import rfc8785

GENESIS_HASH = "0" * 64
FORMAT_VERSION = 1


class RecordKind(StrEnum):
    DECISION = "decision"
    APPROVAL = "approval"
    REVOCATION = "revocation"
    POLICY_ACTIVATION = "policy_activation"
    INCIDENT = "incident"
    AGENT = "agent"  # registry changes made through the control plane
    ROLLOUT = "rollout"  # promote / rollback of policy versions through the control plane
    TOKEN = "token"  # noqa: S105 - a record kind: tokens minted (jti and claims, never the token)


_HEX64: Final = re.compile(r"[0-9a-f]{64}")


#: A JSON string literal as Python's encoder writes it (quotes inside are escaped).
_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"')
#: In what is left once strings are removed, a float (., e, E) or an integer long
#: enough that it may exceed 2**53 -- the numbers whose RFC 8785 form can differ.
_UNSAFE_NUMBER: Final = re.compile(r"[.eE]|[0-9]{16,}")
_KEY: Final = re.compile(r'"((?:[^"\\]|\\.)*)":')


class CanonicalBody(dict[str, Any]):
    """A record body that carries its own RFC 8785 bytes, computed by the code that
    built it from fields it knows the types of (see AuditSink.decision_body):
    the hot path then never re-walks or re-encodes it. tests/audit check the
    bytes equal the reference encoding of the dict."""

    __slots__ = ("encoded",)

    def __init__(self, fields: dict[str, Any], encoded: bytes) -> None:
        super().__init__(fields)
        self.encoded = encoded


def canonical(value: Any) -> bytes:
    """RFC 8785 JSON Canonicalization Scheme bytes.

    The C encoder (sorted keys, compact, UTF-8, no NaN) writes exactly RFC 8785
    for strings without lone surrogates, integers within +-2**53, booleans,
    null, and objects with ASCII keys (code-point order equals RFC 8785's UTF-16
    order, §3.2.3); its string escapes are the same (§3.2.2.2). What differs is
    the number form of floats (ECMAScript, §3.2.2.3) and huge integers. So the
    fast path encodes once and checks its own output for those -- a scan of the
    text with the strings blanked, two C-level regex passes -- and only then
    falls back to the reference implementation. tests/audit compare the two.
    """
    if type(value) is CanonicalBody:
        return value.encoded
    if type(value) is str and value.isascii():
        # The common small case, no scan needed. ensure_ascii=False: the ASCII
        # encoder would write DEL (U+007F) as \u007f, RFC 8785 §3.2.2.2 writes it raw.
        return json.dumps(value, ensure_ascii=False).encode()
    try:
        text = json.dumps(
            value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError):
        return rfc8785.dumps(value)  # the reference raises the precise error
    if _UNSAFE_NUMBER.search(_STRING.sub("", text)) is None and (
        text.isascii() or all(k.isascii() for k in _KEY.findall(text))
    ):
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: let the reference refuse it
            pass
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
    #: The canonical bytes of the whole record when this process sealed it:
    #: computed once, then stored and hashed into the Merkle tree as they are.
    raw: bytes = field(default=b"", compare=False, repr=False)

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
        return self.raw or canonical(self.to_dict())

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
    """Seal a new record onto the chain after ``prev_hash``.

    The body -- the only large part -- is canonicalised once; the record's other
    members are written around it in RFC 8785 key order (body, hash, kind,
    prev_hash, seq, tenant, time, v), for the hashed form and the full form
    alike. tests/audit check the result equals the reference canonical form.
    """
    body_bytes = canonical(body)
    # kind is an identifier and prev_hash lower-case hex (both plain ASCII), seq
    # an integer: written directly; tenant and time go through canonical().
    if not _HEX64.fullmatch(prev_hash):
        raise ValueError("prev_hash must be 64 lower-case hex digits")
    tail = (
        b',"kind":"' + str(kind).encode() + b'"'
        + b',"prev_hash":"' + prev_hash.encode() + b'"'
        + b',"seq":' + str(int(seq)).encode()
        + b',"tenant":' + canonical(tenant)
        + b',"time":' + canonical(time)
        + b',"v":' + str(FORMAT_VERSION).encode() + b"}"
    )  # fmt: skip
    digest = hashlib.sha256(b'{"body":' + body_bytes + tail).hexdigest()
    raw = b'{"body":' + body_bytes + b',"hash":"' + digest.encode() + b'"' + tail
    return AuditRecord(seq, kind, time, tenant, body, prev_hash, digest, raw)


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
