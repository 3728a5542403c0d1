"""Offline verification of the audit log: the chain, the Merkle roots, the signatures.

:func:`verify_log` streams the records once, in order, and checks for each one
(``complete=True``, a whole log):

* that it is readable (``audit.invalid_record``);
* its link: the right ``seq``, the previous record's hash as ``prev_hash``, and
  its own ``hash`` over its content (:func:`aegis.audit.record.check_link`) --
  any modified, deleted, inserted or reordered record breaks this
  (``audit.chain_broken``);
* after record ``n - 1``, every checkpoint of ``tree_size == n``: its root must
  equal the RFC 6962 Merkle root of the first ``n`` records, computed with an
  O(log n) :class:`~aegis.audit.merkle.MerkleAccumulator` (``audit.bad_checkpoint``);
* at the end, that no checkpoint covers records that are not there -- a
  truncated tail (``audit.chain_broken``, naming the first missing record).

Every checkpoint's Ed25519 signature is checked first (``audit.bad_checkpoint``).

With ``complete=False`` (a filtered export, a subset of the records) there is no
chain to follow: each record's own hash is checked, and each record that comes
with an inclusion proof (RFC 6962 §2.1.1) is proven to sit at index ``seq`` of a
signed checkpoint's tree -- so it is exactly the record the log signed.

Limits: a log truncated *after* its last checkpoint, or rewritten from its first
record on with the signing key, cannot be told from a genuine one -- that is what
keeping checkpoints elsewhere (and the key safe) is for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from aegis.audit.checkpoint import Checkpoint, CheckpointError, VerifyKey, verify_checkpoint
from aegis.audit.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    ProofError,
    leaf_hash,
    verify_inclusion,
)
from aegis.audit.record import (
    FORMAT_VERSION,
    GENESIS_HASH,
    AuditRecord,
    RecordKind,
    check_link,
    record_hash,
)
from aegis.audit.store import AuditStore
from aegis.errors import ErrorCode

_RECORD_FIELDS = frozenset({"v", "seq", "kind", "time", "tenant", "body", "prev_hash", "hash"})


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The verdict. ``first_bad_seq`` names the first record that is not genuine.

    For a checkpoint whose root does not match, the records from the end of the
    last matching checkpoint on are suspect; ``first_bad_seq`` is the first of them.
    A checkpoint that is malformed or badly signed has no bad record: None.
    """

    ok: bool
    code: ErrorCode | None
    first_bad_seq: int | None
    message: str
    records_checked: int
    checkpoints_checked: int
    tree_size: int
    root_hash: str | None  # hex Merkle root of the records checked (complete logs)
    records_proven: int = 0  # filtered exports: records with a verified inclusion proof

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["code"] = str(self.code) if self.code else None
        return data


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """One ``{"proof": ...}`` line of a filtered export: record ``seq`` in tree ``tree_size``."""

    seq: int
    tree_size: int
    hashes: tuple[str, ...]  # hex, leaf to root

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "tree_size": self.tree_size, "hashes": list(self.hashes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InclusionProof:
        seq, size, hashes = data.get("seq"), data.get("tree_size"), data.get("hashes")
        if not (_is_int(seq) and _is_int(size) and isinstance(hashes, list)):
            raise ValueError("a proof needs integer seq and tree_size and a list of hashes")
        if not all(isinstance(h, str) and len(h) == 64 for h in hashes):
            raise ValueError("proof hashes must be 64 hex digits")
        return cls(int(seq), int(size), tuple(hashes))  # type: ignore[arg-type]


class _FailedError(Exception):
    def __init__(self, code: ErrorCode, seq: int | None, message: str) -> None:
        super().__init__(message)
        self.code, self.seq, self.message = code, seq, message


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_record(item: AuditRecord | Mapping[str, Any], position: int) -> AuditRecord:
    """A record from an export line or store row, strictly typed; _FailedError if unreadable."""
    if isinstance(item, AuditRecord):
        return item
    where = f"record at position {position}"
    if not isinstance(item, Mapping):
        raise _FailedError(ErrorCode.AUDIT_INVALID_RECORD, position, f"{where} is not an object")
    keys = set(item)
    if keys != _RECORD_FIELDS:
        missing, extra = sorted(_RECORD_FIELDS - keys), sorted(keys - _RECORD_FIELDS)
        raise _FailedError(
            ErrorCode.AUDIT_INVALID_RECORD,
            position,
            f"{where}: missing fields {missing}, unknown fields {extra}",
        )
    ok = (
        item["v"] == FORMAT_VERSION
        and _is_int(item["v"])
        and _is_int(item["seq"])
        and isinstance(item["kind"], str)
        and item["kind"] in set(RecordKind)
        and isinstance(item["time"], str)
        and (item["tenant"] is None or isinstance(item["tenant"], str))
        and isinstance(item["body"], dict)
        and isinstance(item["prev_hash"], str)
        and isinstance(item["hash"], str)
    )
    if not ok:
        raise _FailedError(
            ErrorCode.AUDIT_INVALID_RECORD,
            position,
            f"{where}: a field has the wrong type or value (or an unknown version)",
        )
    return AuditRecord.from_dict(dict(item))


def _leaf(record: AuditRecord, position: int) -> bytes:
    """The record's Merkle leaf hash; _FailedError if it has no canonical form."""
    try:
        return leaf_hash(record.leaf_bytes())
    except (ValueError, TypeError) as exc:  # rfc8785: huge integers, NaN, odd keys
        raise _FailedError(
            ErrorCode.AUDIT_INVALID_RECORD,
            position,
            f"record at position {position} has no canonical JSON form ({exc})",
        ) from None


def _load_checkpoints(
    checkpoints: Iterable[Checkpoint | Mapping[str, Any]], keys: Mapping[str, VerifyKey]
) -> list[Checkpoint]:
    """Every checkpoint, signature verified, by tree size; _FailedError on the first bad one."""
    out: list[Checkpoint] = []
    for i, item in enumerate(checkpoints):
        try:
            cp = item if isinstance(item, Checkpoint) else Checkpoint.from_dict(item)
            verify_checkpoint(cp, keys)
        except CheckpointError as exc:
            msg = f"checkpoint #{i}: {exc.message}"
            raise _FailedError(ErrorCode.AUDIT_BAD_CHECKPOINT, None, msg) from None
        if out and cp.log_id != out[0].log_id:
            raise _FailedError(
                ErrorCode.AUDIT_BAD_CHECKPOINT,
                None,
                f"checkpoint #{i} is for log {cp.log_id!r}, not {out[0].log_id!r}",
            )
        out.append(cp)
    out.sort(key=lambda c: c.tree_size)
    return out


class LogVerifier:
    """Streaming verification of a complete log: :meth:`feed` each record, then :meth:`finish`.

    Holds the checkpoints and an O(log n) Merkle accumulator, never the records.
    """

    def __init__(
        self, checkpoints: Iterable[Checkpoint | Mapping[str, Any]], keys: Mapping[str, VerifyKey]
    ) -> None:
        self._acc = MerkleAccumulator()
        self._prev = GENESIS_HASH
        self._prev_prev: str | None = None
        self._cp_checked = 0
        self._good_size = 0  # records proven by the last matching checkpoint
        self._failure: _FailedError | None = None
        self._pending: list[Checkpoint] = []
        try:
            self._pending = _load_checkpoints(checkpoints, keys)
            self._match_checkpoints()  # tree_size 0
        except _FailedError as exc:
            self._failure = exc

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def feed(self, item: AuditRecord | Mapping[str, Any]) -> bool:
        """Check the next record; False once verification has failed (stop feeding)."""
        if self._failure is not None:
            return False
        seq = self._acc.size
        try:
            record = parse_record(item, seq)
            leaf = _leaf(record, seq)
            self._link(record, seq)
            self._acc.append(leaf)
            self._prev_prev, self._prev = self._prev, record.hash
            self._match_checkpoints()
        except _FailedError as exc:
            self._failure = exc
            return False
        return True

    def _link(self, record: AuditRecord, seq: int) -> None:
        why = check_link(record, self._prev, seq)
        if why is None:
            return
        first = seq
        if record.seq != seq and 0 <= record.seq < seq:
            # Seq already seen: the record before this one was inserted (or this is
            # a duplicate); either way the first slot in doubt is record.seq.
            first = record.seq
            why = f"record {record.seq} appears twice (a record was inserted or duplicated)"
        elif record.seq == seq and record.prev_hash == self._prev_prev and seq > 0:
            first = seq - 1
            why = f"records {seq - 1} and {seq} both follow record {seq - 2}: one was inserted"
        elif (
            record.seq == seq
            and seq > 0
            and record.prev_hash != self._prev
            and record_hash(record.unsigned()) == record.hash
        ):
            # This record is intact but its predecessor is not the one it was sealed
            # after: record seq - 1 was replaced by a re-hashed forgery.
            first = seq - 1
            why = f"record {seq - 1} was replaced (record {seq} was sealed after another one)"
        raise _FailedError(ErrorCode.AUDIT_CHAIN_BROKEN, first, why)

    def _match_checkpoints(self) -> None:
        size = self._acc.size
        while self._pending and self._pending[0].tree_size == size:
            cp = self._pending.pop(0)
            root = self._acc.root() if size else EMPTY_ROOT
            self._cp_checked += 1
            if cp.root_bytes() != root:
                raise _FailedError(
                    ErrorCode.AUDIT_BAD_CHECKPOINT,
                    self._good_size if size else None,
                    f"checkpoint at size {size} signs root {cp.root_hash}, but records "
                    f"{self._good_size}..{size - 1} give {root.hex()}: "
                    f"a record from {self._good_size} on was changed",
                )
            self._good_size = size

    def finish(self) -> VerifyReport:
        size = self._acc.size
        if self._failure is None and self._pending:
            last = self._pending[-1].tree_size
            self._failure = _FailedError(
                ErrorCode.AUDIT_CHAIN_BROKEN,
                size,
                f"the log ends after {size} records, but a checkpoint covers {last}: "
                f"records {size}..{last - 1} are missing (truncated)",
            )
        root = self._acc.root().hex()
        if self._failure is not None:
            f = self._failure
            return VerifyReport(False, f.code, f.seq, f.message, size, self._cp_checked, size, root)
        covered = f", {self._good_size} covered by a signed checkpoint" if self._cp_checked else ""
        return VerifyReport(
            True,
            None,
            None,
            f"{size} records verified{covered}",
            size,
            self._cp_checked,
            size,
            root,
        )


def _verify_subset(
    records: Iterable[AuditRecord | Mapping[str, Any]],
    checkpoints: Iterable[Checkpoint | Mapping[str, Any]],
    keys: Mapping[str, VerifyKey],
    proofs: Iterable[InclusionProof | Mapping[str, Any]],
) -> VerifyReport:
    """A filtered export: own hashes, order, and inclusion in signed checkpoints."""
    count = proven = 0
    cps: list[Checkpoint] = []
    try:
        cps = _load_checkpoints(checkpoints, keys)
        roots = {cp.tree_size: cp.root_bytes() for cp in cps}
        by_seq: dict[int, InclusionProof] = {}
        for p in proofs:
            try:
                proof = p if isinstance(p, InclusionProof) else InclusionProof.from_dict(p)
            except ValueError as exc:
                msg = f"bad proof line: {exc}"
                raise _FailedError(ErrorCode.AUDIT_INVALID_RECORD, None, msg) from None
            by_seq[proof.seq] = proof
        last = -1
        for position, item in enumerate(records):
            record = parse_record(item, position)
            count += 1
            if record.seq <= last:
                raise _FailedError(
                    ErrorCode.AUDIT_CHAIN_BROKEN,
                    record.seq,
                    f"record {record.seq} comes after record {last} (reordered or duplicated)",
                )
            last = record.seq
            leaf = _leaf(record, record.seq)
            if record_hash(record.unsigned()) != record.hash:
                raise _FailedError(
                    ErrorCode.AUDIT_CHAIN_BROKEN,
                    record.seq,
                    f"record {record.seq} was modified (its hash does not match its content)",
                )
            found = by_seq.get(record.seq)
            if found is None:
                continue
            proof = found
            root = roots.get(proof.tree_size)
            if root is None:
                raise _FailedError(
                    ErrorCode.AUDIT_CHAIN_BROKEN,
                    record.seq,
                    f"record {record.seq}'s proof is for size {proof.tree_size}, "
                    "which no signed checkpoint has",
                )
            try:
                hashes = [bytes.fromhex(h) for h in proof.hashes]
                verify_inclusion(leaf, record.seq, proof.tree_size, hashes, root)
            except (ValueError, ProofError) as exc:
                raise _FailedError(
                    ErrorCode.AUDIT_CHAIN_BROKEN,
                    record.seq,
                    f"record {record.seq} is not the one checkpoint {proof.tree_size} signed "
                    f"({exc})",
                ) from None
            proven += 1
    except _FailedError as f:
        return VerifyReport(False, f.code, f.seq, f.message, count, len(cps), 0, None, proven)
    top = cps[-1] if cps else None
    return VerifyReport(
        True,
        None,
        None,
        f"{count} records verified (filtered export: own hashes; {proven} proven included "
        "in a signed checkpoint)",
        count,
        len(cps),
        top.tree_size if top else 0,
        top.root_hash if top else None,
        proven,
    )


def verify_log(
    records: Iterable[AuditRecord | Mapping[str, Any]],
    checkpoints: Iterable[Checkpoint | Mapping[str, Any]],
    keys: Mapping[str, VerifyKey],
    *,
    complete: bool = True,
    proofs: Iterable[InclusionProof | Mapping[str, Any]] = (),
) -> VerifyReport:
    """Verify a log (``complete``) or a filtered subset of one; never raises on bad data."""
    if not complete:
        return _verify_subset(records, checkpoints, keys, proofs)
    verifier = LogVerifier(checkpoints, keys)
    for item in records:
        if not verifier.feed(item):
            break
    return verifier.finish()


async def verify_store(store: AuditStore, keys: Mapping[str, VerifyKey]) -> VerifyReport:
    """:func:`verify_log` over everything in ``store``, streamed."""
    verifier = LogVerifier(await store.checkpoints(), keys)
    if not verifier.failed:
        iterator = store.records()
        try:
            async for record in iterator:
                if not verifier.feed(record):
                    break
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()
    return verifier.finish()
