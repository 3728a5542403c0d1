"""The audit log's writer: seals records onto the chain and group-commits them.

One writer task owns the chain head. Callers hand it ``(kind, tenant, body)``;
it stamps ``seq``, ``time`` and ``prev_hash`` (:mod:`aegis.audit.record`),
and writes everything waiting -- up to ``max_batch`` -- in one store
transaction: one fsync for however many concurrent decisions arrived while
the previous batch was being written (group commit).

* ``await append(..., durable=True)`` returns once the batch holding the
  record is committed, or raises :class:`AuditUnavailableError`;
* ``append(..., durable=False)`` enqueues and returns at once; when the queue
  is full the record is dropped, counted (``aegis_audit_overflow_total``) and
  logged -- never silently, and never blocking a read tool's answer.

A store failure fails the batch's durable waiters (``aegis_audit_failures_total``
is the alert), keeps its other records for a retry with back-off, and never
touches what was already committed: before writing again the writer re-reads
the store's head, so an ambiguous commit is never written twice.

Signed checkpoints over the RFC 6962 Merkle tree of the records (the other
half of the log: :mod:`aegis.audit.merkle`, :mod:`aegis.audit.checkpoint`)
are appended every ``checkpoint_every_records`` records or
``checkpoint_every_seconds``, whichever comes first, and on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Histogram

from aegis.audit.record import AuditRecord, RecordKind, canonical, make_record
from aegis.audit.store import AuditStore, AuditStoreError
from aegis.pipeline.stages import AuditUnavailableError
from aegis.telemetry.log import JsonLog
from aegis.telemetry.metrics import GatewayMetrics

_MAX_SAFE_INT = 2**53 - 1  # RFC 8785 (I-JSON): integers beyond are refused
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


# -- RFC 8785 bytes, fast ----------------------------------------------------------------


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 bytes (kept for callers of this module; see aegis.audit.record.canonical)."""
    return canonical(value)


def record_bytes(record: AuditRecord) -> bytes:
    """The canonical JSON of the whole record: what is stored and what the Merkle leaf hashes."""
    return record.leaf_bytes()


def seal(
    *, seq: int, kind: RecordKind, time: str, tenant: str | None, body: dict[str, Any], prev: str
) -> AuditRecord:
    """Seal a record onto the chain (:func:`aegis.audit.record.make_record`)."""
    return make_record(seq=seq, kind=kind, time=time, tenant=tenant, body=body, prev_hash=prev)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc_now() -> datetime:
    return datetime.now(UTC)


# -- the log -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    kind: RecordKind
    tenant: str | None
    body: dict[str, Any]
    waiter: asyncio.Future[int] | None  # set for durable appends: resolves to the seq


@dataclass
class AuditStats:
    records: int = 0
    batches: int = 0
    largest_batch: int = 0
    overflow: int = 0
    failures: int = 0
    checkpoints: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class _Metrics:
    def __init__(self, metrics: GatewayMetrics) -> None:
        reg = metrics.registry
        self.records = Counter(
            "aegis_audit_records", "Audit records committed.", ["kind"], registry=reg
        )
        self.overflow = Counter(
            "aegis_audit_overflow",
            "Asynchronous audit records dropped because the queue was full.",
            registry=reg,
        )
        self.failures = Counter(
            "aegis_audit_failures",
            "Audit batches the store failed to commit (alert on any increase).",
            registry=reg,
        )
        self.batch_size = Histogram(
            "aegis_audit_batch_size",
            "Records per committed audit batch (group commit).",
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        *,
        signing_key: Any = None,
        log_id: str,
        clock: Callable[[], datetime] = _utc_now,
        max_batch: int = 512,
        max_queue: int = 10_000,
        checkpoint_every_records: int = 1000,
        checkpoint_every_seconds: float = 10.0,
        metrics: GatewayMetrics | None = None,
        log: JsonLog | None = None,
        unavailable: str | None = None,
        retry_max_seconds: float = 1.0,
    ) -> None:
        """``unavailable``: a reason every write fails closed with (a signing key that
        could not be loaded, with the "run and fail writes closed" setting)."""
        self.store = store
        self.signing_key = signing_key
        self.log_id = log_id
        self.clock = clock
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.checkpoint_every_records = checkpoint_every_records
        self.checkpoint_every_seconds = checkpoint_every_seconds
        self.log = log
        self.unavailable = unavailable
        self.retry_max_seconds = retry_max_seconds
        self.stats = AuditStats()
        self._metrics = _Metrics(metrics) if metrics is not None else None
        self._queue: deque[_Pending] = deque()
        self._async_queued = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._next_seq = 0
        self._prev = ""
        self._acc: Any = None  # aegis.audit.merkle.MerkleAccumulator, when that module exists
        self._leaf_hash: Callable[[bytes], bytes] | None = None
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._resync = False

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> AuditLog:
        """Resume the chain from the store's head and start the writer."""
        self._next_seq, self._prev = await self.store.head()
        try:
            merkle = importlib.import_module("aegis.audit.merkle")
        except ImportError:
            merkle = None
            if self.signing_key is not None and self.log is not None:
                self.log.warning(
                    "audit.checkpoints_unavailable", reason="aegis.audit.merkle absent"
                )
        if merkle is not None:
            self._acc = merkle.MerkleAccumulator()
            self._leaf_hash = merkle.leaf_hash
            await self._catch_up(0, self._next_seq)
        self._task = asyncio.create_task(self._writer(), name="aegis-audit-writer")
        return self

    async def _catch_up(self, start: int, end: int) -> None:
        """Feed records [start, end) from the store into the Merkle accumulator."""
        if self._acc is None or self._leaf_hash is None:
            return
        async for record in self.store.records(start, end):
            self._acc.append(self._leaf_hash(record_bytes(record)))

    async def close(self) -> None:
        """Write everything queued (a bounded number of attempts), checkpoint, close the store."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._fail_all(AuditUnavailableError("the audit log is closed"))
        await self.store.close()

    # -- appending -----------------------------------------------------------------------

    async def append(
        self,
        kind: RecordKind,
        tenant: str | None,
        body: dict[str, Any],
        *,
        durable: bool = True,
    ) -> int | None:
        """Durable: the committed record's seq (or AuditUnavailableError).
        Not durable: None at once (queued, or dropped and counted)."""
        if not durable:
            self.append_nowait(kind, tenant, body)
            return None
        if self.unavailable is not None:
            self._count_failure()
            raise AuditUnavailableError(self.unavailable)
        if self._closing or self._task is None:
            raise AuditUnavailableError("the audit log is not running")
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(kind, tenant, body, waiter))
        self._wake.set()
        return await waiter

    def append_nowait(self, kind: RecordKind, tenant: str | None, body: dict[str, Any]) -> bool:
        """Queue a record that need not be durable before the caller goes on."""
        if self._closing or self._async_queued >= self.max_queue or self.unavailable is not None:
            self._overflow(kind)
            return False
        self._async_queued += 1
        self._queue.append(_Pending(kind, tenant, body, None))
        self._wake.set()
        return True

    def _overflow(self, kind: RecordKind) -> None:
        self.stats.overflow += 1
        if self._metrics is not None:
            self._metrics.overflow.inc()
        if self.log is not None and (self.stats.overflow & (self.stats.overflow - 1)) == 0:
            # Logged at 1, 2, 4, 8, ... drops: visible without flooding the log.
            self.log.warning(
                "audit.overflow", kind=str(kind), dropped=self.stats.overflow, queue=self.max_queue
            )

    def _count_failure(self) -> None:
        self.stats.failures += 1
        if self._metrics is not None:
            self._metrics.failures.inc()

    def _fail_all(self, exc: Exception) -> None:
        while self._queue:
            item = self._queue.popleft()
            if item.waiter is not None and not item.waiter.done():
                item.waiter.set_exception(exc)

    # -- the writer ----------------------------------------------------------------------

    async def _writer(self) -> None:
        backoff = 0.0
        while True:
            if not self._queue:
                if self._closing:
                    break
                self._wake.clear()
                try:
                    timeout = self.checkpoint_every_seconds if self._since_checkpoint else None
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
            if backoff:
                await asyncio.sleep(backoff)
            ok = await self._write_batch()
            if ok:
                backoff = 0.0
            else:
                if self._closing:
                    break  # close() fails whatever is left
                backoff = min(self.retry_max_seconds, max(0.01, backoff * 2))
            await self._maybe_checkpoint(final=self._closing and not self._queue)

    async def _write_batch(self) -> bool:
        if not self._queue:
            return True
        try:
            if self._resync:
                await self._resync_head()
        except AuditStoreError as exc:
            queued = list(self._queue)
            self._queue.clear()
            self._async_queued = 0
            self._batch_failed(exc, queued)
            return False
        batch: list[_Pending] = []
        records: list[AuditRecord] = []
        seq, prev = self._next_seq, self._prev
        stamp = rfc3339(self.clock())
        while self._queue and len(batch) < self.max_batch:
            item = self._queue.popleft()
            if item.waiter is None:
                self._async_queued -= 1
            try:
                record = seal(
                    seq=seq,
                    kind=item.kind,
                    time=stamp,
                    tenant=item.tenant,
                    body=item.body,
                    prev=prev,
                )
            except (TypeError, ValueError) as exc:  # a body that is not JSON: refuse it alone
                self._count_failure()
                if item.waiter is not None and not item.waiter.done():
                    item.waiter.set_exception(AuditUnavailableError(f"unrecordable body: {exc}"))
                continue
            batch.append(item)
            records.append(record)
            seq, prev = seq + 1, record.hash
        if not records:
            return True
        try:
            await self.store.append(records)
        except AuditStoreError as exc:
            self._batch_failed(exc, batch)
            return False
        self._next_seq, self._prev = seq, prev
        if self._acc is not None and self._leaf_hash is not None:
            for record in records:
                self._acc.append(self._leaf_hash(record_bytes(record)))
        for item, record in zip(batch, records, strict=True):
            if item.waiter is not None and not item.waiter.done():
                item.waiter.set_result(record.seq)
        self._committed(records)
        return True

    def _committed(self, records: list[AuditRecord]) -> None:
        n = len(records)
        st = self.stats
        st.records += n
        st.batches += 1
        st.largest_batch = max(st.largest_batch, n)
        if len(st.batch_sizes) < 100_000:
            st.batch_sizes.append(n)
        self._since_checkpoint += n
        if self._metrics is not None:
            self._metrics.batch_size.observe(n)
            kinds: dict[str, int] = {}
            for r in records:
                kinds[r.kind] = kinds.get(r.kind, 0) + 1
            for kind, count in kinds.items():
                self._metrics.records.labels(kind).inc(count)

    def _batch_failed(self, exc: AuditStoreError, batch: list[_Pending]) -> None:
        """Durable waiters learn now; queued records go back for a retry. Nothing
        committed is touched, and the head is re-read before the next write."""
        self._count_failure()
        self._resync = True
        if self.log is not None:
            self.log.error("audit.store_failed", error=str(exc), batch=len(batch))
        error = AuditUnavailableError(f"audit store failed: {exc}")
        retry: list[_Pending] = []
        for item in batch:
            if item.waiter is not None:
                if not item.waiter.done():
                    item.waiter.set_exception(error)
            else:
                retry.append(item)
        for item in reversed(retry):
            if self._async_queued >= self.max_queue:
                self._overflow(item.kind)
                continue
            self._async_queued += 1
            self._queue.appendleft(item)

    async def _resync_head(self) -> None:
        """After a failure: the store's head is the truth (a commit may have landed)."""
        seq, prev = await self.store.head()
        if seq != self._next_seq or prev != self._prev:
            if seq < self._next_seq:
                raise AuditStoreError(
                    f"the store's head went back from {self._next_seq} to {seq}: refusing to write"
                )
            await self._catch_up(self._next_seq, seq)
            self._next_seq, self._prev = seq, prev
        self._resync = False

    # -- checkpoints ---------------------------------------------------------------------

    async def _maybe_checkpoint(self, *, final: bool = False) -> None:
        if self.signing_key is None or self._acc is None or not self._since_checkpoint:
            return
        due = (
            final
            or self._since_checkpoint >= self.checkpoint_every_records
            or time.monotonic() - self._last_checkpoint >= self.checkpoint_every_seconds
        )
        if due:
            await self.checkpoint()

    async def checkpoint(self) -> dict[str, Any] | None:
        """Sign and store a checkpoint over every committed record (None if it failed)."""
        if self.signing_key is None or self._acc is None:
            return None
        cp_mod = importlib.import_module("aegis.audit.checkpoint")
        try:
            cp = cp_mod.sign_checkpoint(
                self.signing_key,
                log_id=self.log_id,
                tree_size=self._acc.size,
                root_hash=self._acc.root(),
                time=rfc3339(self.clock()),
            )
            data: dict[str, Any] = cp.to_dict()
            await self.store.append_checkpoint(data)
        except AuditStoreError as exc:
            self._count_failure()
            if self.log is not None:
                self.log.error("audit.checkpoint_failed", error=str(exc))
            return None
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self.stats.checkpoints += 1
        return data

    @property
    def head(self) -> tuple[int, str]:
        return self._next_seq, self._prev
