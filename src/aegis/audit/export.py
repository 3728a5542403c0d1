"""JSON Lines export of the audit log, for a SIEM and for offline verification.

One JSON object per line, in this order::

    {"export": {"format": 1, "filtered": false, ...filters}}
    {"record": {...}}            every record (or every matching one), by seq
    {"proof": {...}}             filtered exports only: inclusion proofs
    {"checkpoint": {...}}        every signed checkpoint

Records are exported as they are (their body carries trace_id/span_id for SIEM
joins). An unfiltered export is the whole chain: ``aegis audit verify`` checks
it like the store. A filtered export (tenant, agent, time) is a subset with no
chain to follow; for each exported record covered by the latest checkpoint it
carries an RFC 6962 inclusion proof against that checkpoint, so verify checks
each record's own hash and proves it is exactly the record the log signed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aegis.audit.checkpoint import Checkpoint
from aegis.audit.merkle import MerkleTree, leaf_hash
from aegis.audit.record import AuditRecord
from aegis.audit.verify import InclusionProof
from aegis.errors import AegisError, ErrorCode

EXPORT_FORMAT = 1


class ExportError(AegisError):
    """An export file that cannot be read (not JSON Lines, an unknown line)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.AUDIT_INVALID_RECORD, message)


def parse_time(value: str | datetime | None) -> datetime | None:
    """An RFC 3339 / ISO 8601 time; naive means UTC."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Filters:
    tenant: str | None = None
    agent_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.tenant, self.agent_id, self.since, self.until))

    def matches(self, record: AuditRecord) -> bool:
        if self.tenant is not None and record.tenant != self.tenant:
            return False
        if self.agent_id is not None and record.body.get("agent_id") != self.agent_id:
            return False
        if self.since is not None or self.until is not None:
            try:
                when = parse_time(record.time)
            except ValueError:
                return False
            assert when is not None
            if self.since is not None and when < self.since:
                return False
            if self.until is not None and when >= self.until:
                return False
        return True

    def header(self) -> dict[str, Any]:
        head: dict[str, Any] = {"format": EXPORT_FORMAT, "filtered": self.active}
        for name in ("tenant", "agent_id"):
            if getattr(self, name) is not None:
                head[name] = getattr(self, name)
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None:
                head[name] = moment.isoformat()
        return head


def _line(kind: str, value: Mapping[str, Any]) -> str:
    return json.dumps({kind: value}, ensure_ascii=False, separators=(",", ":")) + "\n"


class Exporter:
    """Streams records out; holds 32 bytes per record only for a filtered export's proofs."""

    def __init__(self, out: TextIO, filters: Filters) -> None:
        self.out = out
        self.filters = filters
        self.written = 0
        self._leaves: list[bytes] = []
        self._matched: list[int] = []
        out.write(_line("export", filters.header()))

    def add(self, record: AuditRecord) -> None:
        if self.filters.active:
            self._leaves.append(leaf_hash(record.leaf_bytes()))
            if not self.filters.matches(record):
                return
            self._matched.append(record.seq)
        self.out.write(_line("record", record.to_dict()))
        self.written += 1

    def finish(self, checkpoints: Iterable[Checkpoint | Mapping[str, Any]]) -> int:
        cps = [c if isinstance(c, Checkpoint) else Checkpoint.from_dict(c) for c in checkpoints]
        if self.filters.active:
            usable = [c for c in cps if 0 < c.tree_size <= len(self._leaves)]
            if usable:
                size = max(c.tree_size for c in usable)
                tree = MerkleTree(self._leaves)
                for seq in self._matched:
                    if 0 <= seq < size:
                        hashes = tuple(h.hex() for h in tree.inclusion_proof(seq, size))
                        self.out.write(_line("proof", InclusionProof(seq, size, hashes).to_dict()))
        for cp in cps:
            self.out.write(_line("checkpoint", cp.to_dict()))
        return self.written


def _filters(
    tenant: str | None,
    agent_id: str | None,
    since: str | datetime | None,
    until: str | datetime | None,
) -> Filters:
    return Filters(tenant, agent_id, parse_time(since), parse_time(until))


def write_jsonl(
    records: Iterable[AuditRecord],
    checkpoints: Iterable[Checkpoint | Mapping[str, Any]],
    out: TextIO,
    *,
    tenant: str | None = None,
    agent_id: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
) -> int:
    """Write the export to ``out``; returns the number of records written.

    ``records`` must be the whole log in seq order (the filter is applied here,
    so the inclusion proofs can be computed).
    """
    exporter = Exporter(out, _filters(tenant, agent_id, since, until))
    for record in records:
        exporter.add(record)
    return exporter.finish(checkpoints)


async def export_store(
    store: Any,
    out: TextIO,
    *,
    tenant: str | None = None,
    agent_id: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
) -> int:
    """:func:`write_jsonl` from an :class:`~aegis.audit.store.AuditStore`, streamed."""
    exporter = Exporter(out, _filters(tenant, agent_id, since, until))
    async for record in store.records():
        exporter.add(record)
    return exporter.finish(await store.checkpoints())


@dataclass
class ExportContents:
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    proofs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def filtered(self) -> bool:
        return bool(self.header and self.header.get("filtered"))


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, object) for each line; ExportError on a line that is not one of ours."""
    with Path(path).open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError as exc:
                raise ExportError(f"line {number}: not JSON ({exc})") from None
            if not isinstance(line, dict) or len(line) != 1:
                raise ExportError(f"line {number}: expected one of record/checkpoint/proof/export")
            ((kind, value),) = line.items()
            if kind not in ("export", "record", "checkpoint", "proof") or not isinstance(
                value, dict
            ):
                raise ExportError(f"line {number}: unknown line kind {kind!r}")
            if kind == "export" and number != 1:
                raise ExportError(f"line {number}: the export header must be the first line")
            yield kind, value


def read_export(path: str | Path) -> ExportContents:
    """Everything in an export file (in memory)."""
    contents = ExportContents()
    for kind, value in iter_jsonl(path):
        if kind == "export":
            contents.header = value
        elif kind == "record":
            contents.records.append(value)
        elif kind == "checkpoint":
            contents.checkpoints.append(value)
        else:
            contents.proofs.append(value)
    return contents


def read_jsonl(
    path: str | Path,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
    """(records, checkpoints, header) of an export; see :func:`read_export` for proofs too."""
    contents = read_export(path)
    return contents.records, contents.checkpoints, contents.header
