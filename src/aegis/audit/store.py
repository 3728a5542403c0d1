"""Where audit records live: a small protocol with SQLite (default) and PostgreSQL backends.

The log (:mod:`aegis.audit.log`) is the only writer: it seals records onto the
chain and hands them over in batches; a backend's job is to make each batch
durable atomically (one transaction, synced to disk) and to read back exactly
what was written. Backends never rewrite or delete a record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from aegis.audit.record import AuditRecord


class AuditStoreError(Exception):
    """The store failed (full disk, corrupt file, lost connection)."""


class AuditStore(Protocol):
    async def append(self, records: Sequence[AuditRecord]) -> None:
        """Durably append a batch, in ``seq`` order, in one transaction."""
        ...

    async def append_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Durably store a signed checkpoint (see aegis.audit.checkpoint)."""
        ...

    async def head(self) -> tuple[int, str]:
        """(next seq, hash of the last record) -- (0, GENESIS_HASH) when empty."""
        ...

    def records(self, start: int = 0, end: int | None = None) -> AsyncIterator[AuditRecord]:
        """Records with start <= seq < end, in order."""
        ...

    async def checkpoints(self) -> list[dict[str, Any]]:
        """Every stored checkpoint, oldest first."""
        ...

    async def close(self) -> None: ...
