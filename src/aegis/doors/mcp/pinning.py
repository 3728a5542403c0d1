"""Tool-definition pinning: the defence against an MCP "rug pull".

An MCP server describes its tools in ``tools/list`` (spec 2025-11-25,
server/tools "Listing Tools") and may change those descriptions at any time,
announcing it with ``notifications/tools/list_changed`` -- or not. The spec
warns that descriptions and annotations are untrusted (server/tools
"Security Considerations"; the "Tool Poisoning" and "rug pull" attacks): a tool
approved as "read a file" can later describe itself with instructions the
model will follow. So the proxy pins each tool's definition the first time it
sees it and refuses a tool whose definition no longer matches, until an
operator approves the new one with :meth:`DefinitionPins.approve_definition`.

The hash covers what the model and the policy act on -- ``name``,
``description``, ``inputSchema``, ``annotations`` and ``outputSchema`` -- as
canonical JSON (object keys sorted, no insignificant whitespace, UTF-8; the
RFC 8785 shape for the strings, integers and literals tool definitions use)
hashed with SHA-256 and written ``sha256:<hex>``. A member that is absent and
one that is ``null`` hash the same. Display-only members (``title``, ``icons``,
``_meta``) are not pinned.

Pins live behind :class:`PinStore`, an async protocol with an in-memory and a
JSON-file backend, so a shared store (Redis, PostgreSQL) can follow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import anyio
from mcp_types import Tool

#: The members of a tool definition that are pinned.
PINNED_FIELDS = ("name", "description", "inputSchema", "annotations", "outputSchema")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def definition_of(tool: Tool) -> dict[str, Any]:
    """The pinned members of ``tool`` in their wire (camelCase) form."""
    wire = tool.model_dump(by_alias=True, mode="json", exclude_none=True)
    return {key: wire[key] for key in PINNED_FIELDS if wire.get(key) is not None}


def definition_hash(tool: Tool) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(definition_of(tool))).hexdigest()


def is_definition_hash(value: str) -> bool:
    return bool(_HASH.match(value))


@dataclass(frozen=True, slots=True)
class PinRecord:
    """The approved definition hash of one upstream tool."""

    upstream: str
    tool: str
    hash: str
    pinned_at: str
    source: str  # "first_seen" or "approved"


@dataclass(frozen=True, slots=True)
class DriftRecord:
    """A definition seen that differs from the pin: old and new hash, when."""

    upstream: str
    tool: str
    pinned_hash: str
    new_hash: str
    first_seen: str
    approved_at: str | None = None


class PinStore(Protocol):
    """Where pins and drift records are kept. Methods may raise on a store
    outage; the proxy then treats the tool as unverifiable (refused)."""

    async def get(self, upstream: str, tool: str) -> PinRecord | None: ...

    async def put(self, record: PinRecord) -> None: ...

    async def add_drift(self, drift: DriftRecord) -> bool:
        """Record ``drift``; False when the same (upstream, tool, new_hash) is
        already recorded and unresolved."""
        ...

    async def resolve_drift(self, upstream: str, tool: str, new_hash: str, when: str) -> None: ...

    async def drifts(self) -> list[DriftRecord]: ...


class InMemoryPinStore:
    """Pins for the life of the process."""

    def __init__(self) -> None:
        self.pins: dict[tuple[str, str], PinRecord] = {}
        self.drift_records: list[DriftRecord] = []

    async def get(self, upstream: str, tool: str) -> PinRecord | None:
        return self.pins.get((upstream, tool))

    async def put(self, record: PinRecord) -> None:
        self.pins[(record.upstream, record.tool)] = record

    async def add_drift(self, drift: DriftRecord) -> bool:
        for seen in self.drift_records:
            if (seen.upstream, seen.tool, seen.new_hash, seen.approved_at) == (
                drift.upstream,
                drift.tool,
                drift.new_hash,
                None,
            ):
                return False
        self.drift_records.append(drift)
        return True

    async def resolve_drift(self, upstream: str, tool: str, new_hash: str, when: str) -> None:
        self.drift_records = [
            replace(d, approved_at=when)
            if (d.upstream, d.tool, d.new_hash, d.approved_at) == (upstream, tool, new_hash, None)
            else d
            for d in self.drift_records
        ]

    async def drifts(self) -> list[DriftRecord]:
        return list(self.drift_records)


class JsonFilePinStore(InMemoryPinStore):
    """Pins in one JSON file, rewritten atomically (temp file + rename) on each
    change, so a crash leaves the old or the new file, never half of one."""

    VERSION = 1

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        if self.path.exists():
            self._load(json.loads(self.path.read_text(encoding="utf-8")))

    def _load(self, data: Mapping[str, Any]) -> None:
        if data.get("version") != self.VERSION:
            raise ValueError(f"{self.path}: unsupported pin file version {data.get('version')!r}")
        for raw in data.get("pins", []):
            record = PinRecord(**raw)
            self.pins[(record.upstream, record.tool)] = record
        self.drift_records = [DriftRecord(**raw) for raw in data.get("drifts", [])]

    async def put(self, record: PinRecord) -> None:
        await super().put(record)
        await self._save()

    async def add_drift(self, drift: DriftRecord) -> bool:
        added = await super().add_drift(drift)
        if added:
            await self._save()
        return added

    async def resolve_drift(self, upstream: str, tool: str, new_hash: str, when: str) -> None:
        await super().resolve_drift(upstream, tool, new_hash, when)
        await self._save()

    async def _save(self) -> None:
        data = {
            "version": self.VERSION,
            "pins": [asdict(p) for _, p in sorted(self.pins.items())],
            "drifts": [asdict(d) for d in self.drift_records],
        }
        await anyio.to_thread.run_sync(self._write, json.dumps(data, indent=2, sort_keys=True))

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class PinStatus(StrEnum):
    PINNED = "pinned"  # first sight: pinned now
    MATCH = "match"  # matches the pin
    CHANGED = "changed"  # differs from the pin: refuse
    UNVERIFIABLE = "unverifiable"  # the store failed: refuse
    DISABLED = "disabled"  # pinning is off


class PinVerdict(NamedTuple):
    status: PinStatus
    current_hash: str
    pinned_hash: str | None = None
    new_drift: bool = False  # first time this change was seen (log and count it once)
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.status in (PinStatus.PINNED, PinStatus.MATCH, PinStatus.DISABLED)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DefinitionPins:
    """Pins tool definitions on first sight and reports changes."""

    def __init__(
        self, store: PinStore, *, enabled: bool = True, clock: Callable[[], str] = _utc_now
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.clock = clock
        self._lock = anyio.Lock()

    async def check(self, upstream: str, tool: str, current_hash: str) -> PinVerdict:
        if not self.enabled:
            return PinVerdict(PinStatus.DISABLED, current_hash)
        try:
            pin = await self.store.get(upstream, tool)
            if pin is not None and pin.hash == current_hash:  # the hot path: no lock
                return PinVerdict(PinStatus.MATCH, current_hash, pin.hash)
            async with self._lock:  # first sight from two concurrent lists pins once
                pin = await self.store.get(upstream, tool)
                if pin is None:
                    await self.store.put(
                        PinRecord(upstream, tool, current_hash, self.clock(), "first_seen")
                    )
                    return PinVerdict(PinStatus.PINNED, current_hash, current_hash)
                if pin.hash == current_hash:
                    return PinVerdict(PinStatus.MATCH, current_hash, pin.hash)
                new = await self.store.add_drift(
                    DriftRecord(upstream, tool, pin.hash, current_hash, self.clock())
                )
                return PinVerdict(PinStatus.CHANGED, current_hash, pin.hash, new_drift=new)
        except Exception as exc:  # a store outage: the definition cannot be verified
            return PinVerdict(
                PinStatus.UNVERIFIABLE, current_hash, error=f"{type(exc).__name__}: {exc}"
            )

    async def approve_definition(self, upstream: str, tool: str, new_hash: str) -> PinRecord:
        """Re-approve ``tool`` of ``upstream`` at ``new_hash`` (``sha256:<hex>``,
        as reported in the refusal and the drift record). Calls whose current
        definition hashes to it are allowed again."""
        if not is_definition_hash(new_hash):
            raise ValueError(f"not a definition hash: {new_hash!r} (expected sha256:<64 hex>)")
        when = self.clock()
        record = PinRecord(upstream, tool, new_hash, when, "approved")
        async with self._lock:
            await self.store.put(record)
            await self.store.resolve_drift(upstream, tool, new_hash, when)
        return record

    async def drifts(self) -> list[DriftRecord]:
        return await self.store.drifts()


__all__ = [
    "PINNED_FIELDS",
    "DefinitionPins",
    "DriftRecord",
    "InMemoryPinStore",
    "JsonFilePinStore",
    "PinRecord",
    "PinStatus",
    "PinStore",
    "PinVerdict",
    "canonical_json",
    "definition_hash",
    "definition_of",
]
