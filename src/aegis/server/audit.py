"""The signed audit log's parts, built from the audit settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aegis.audit.log import AuditLog
from aegis.audit.store import AuditStore, AuditStoreError
from aegis.errors import ErrorCode
from aegis.settings import AuditSettings
from aegis.telemetry import GatewayMetrics, JsonLog


class AuditStartError(ValueError):
    """The audit log cannot run as configured: the gateway refuses to start."""


@dataclass(eq=False)
class AuditBuild:
    log: AuditLog
    store: AuditStore


def _load_signing_key(cfg: AuditSettings, log: JsonLog) -> tuple[Any, str | None]:
    """(key or None, why writes must fail closed or None). Raises AuditStartError when
    the key cannot be loaded and the gateway must refuse to start."""
    if cfg.signing_key_path is None:
        return None, None
    try:
        from aegis.audit import checkpoint  # noqa: PLC0415 - the other half may not exist yet
    except ImportError:
        log.warning("audit.signing_unavailable", reason="aegis.audit.checkpoint is not installed")
        return None, None
    path = cfg.signing_key_path
    try:
        if not path.exists() and cfg.generate_key:
            key = checkpoint.SigningKey.generate()
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("xb") as fh:  # never overwrite a key
                fh.write(key.to_pem())
            path.chmod(0o600)
            log.info("audit.key_generated", path=str(path), kid=key.kid)
            return key, None
        return checkpoint.SigningKey.from_pem(path.read_bytes()), None
    except Exception as exc:  # any failure to load is one condition: no key
        reason = f"{ErrorCode.AUDIT_KEY_UNAVAILABLE}: cannot load {path}: {exc}"
        if cfg.on_key_error == "refuse_to_start":
            raise AuditStartError(reason) from exc
        log.error("audit.key_unavailable", error=reason, writes="fail closed")
        return None, reason


def build_audit(settings: AuditSettings, *, metrics: GatewayMetrics, log: JsonLog) -> AuditBuild:
    key, unavailable = _load_signing_key(settings, log)
    store: AuditStore
    if settings.store == "postgres":
        from aegis.audit.postgres_store import PostgresAuditStore  # noqa: PLC0415 - optional

        if not settings.postgres_dsn:
            raise AuditStartError("audit.postgres_dsn is required with audit.store: postgres")
        store = PostgresAuditStore(settings.postgres_dsn, table=settings.postgres_table)
    else:
        from aegis.audit.sqlite_store import SqliteAuditStore  # noqa: PLC0415

        try:
            store = SqliteAuditStore(settings.sqlite_path)
        except AuditStoreError as exc:
            raise AuditStartError(f"{ErrorCode.AUDIT_UNAVAILABLE}: {exc}") from exc
    audit_log = AuditLog(
        store,
        signing_key=key,
        log_id=settings.log_id,
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        checkpoint_every_records=settings.checkpoint_every_records,
        checkpoint_every_seconds=settings.checkpoint_every_seconds,
        metrics=metrics,
        log=log,
        unavailable=unavailable,
    )
    return AuditBuild(audit_log, store)
