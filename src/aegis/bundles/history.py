"""What a gateway remembers about policy versions across restarts.

Every bundle a slot (the shared policy, or one tenant's) has accepted is kept as
its archive bytes, content-addressed under ``versions/``, and ``state.json``
records per slot which version is active, which is the candidate and at what
stage, and the order versions were activated in (what ``rollback`` walks back
through). Both are written atomically (a temporary file, fsync, rename: POSIX
rename(2) replaces the name in one step), so a crash leaves the old state or
the new one, never half of either.

The archives are re-verified when they are read back (signature and policy),
so a file changed on disk is refused like any other bad bundle.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

STATE_FILE: Final = "state.json"
VERSIONS_DIR: Final = "versions"
STATE_FORMAT: Final = 1


@dataclass(slots=True)
class SlotRecord:
    """One slot's persisted state (version ids are ``sha256:<hex>`` bundle hashes)."""

    versions: list[str] = field(default_factory=list)  # oldest first
    activations: list[str] = field(default_factory=list)  # newest last
    active: str | None = None
    candidate: str | None = None
    stage: str | None = None
    share_bp: int = 0
    by: str = "agent"
    pinned: bool = False
    revisions: dict[str, str] = field(default_factory=dict)
    loaded_at: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    policy_versions: dict[str, str] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "versions": self.versions,
            "activations": self.activations,
            "active": self.active,
            "candidate": self.candidate,
            "stage": self.stage,
            "share_bp": self.share_bp,
            "by": self.by,
            "pinned": self.pinned,
            "revisions": self.revisions,
            "loaded_at": self.loaded_at,
            "origins": self.origins,
            "policy_versions": self.policy_versions,
            "rules": self.rules,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SlotRecord:
        def strs(key: str) -> list[str]:
            value = raw.get(key, [])
            return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

        def str_map(key: str) -> dict[str, str]:
            value = raw.get(key, {})
            if not isinstance(value, dict):
                return {}
            return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}

        def int_map(key: str) -> dict[str, int]:
            value = raw.get(key, {})
            if not isinstance(value, dict):
                return {}
            return {
                k: v
                for k, v in value.items()
                if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            }

        def opt(key: str) -> str | None:
            value = raw.get(key)
            return value if isinstance(value, str) else None

        share = raw.get("share_bp", 0)
        return cls(
            versions=strs("versions"),
            activations=strs("activations"),
            active=opt("active"),
            candidate=opt("candidate"),
            stage=opt("stage"),
            share_bp=share if isinstance(share, int) and not isinstance(share, bool) else 0,
            by=opt("by") or "agent",
            pinned=raw.get("pinned") is True,
            revisions=str_map("revisions"),
            loaded_at=str_map("loaded_at"),
            origins=str_map("origins"),
            policy_versions=str_map("policy_versions"),
            rules=int_map("rules"),
        )


def _hex(version_id: str) -> str:
    algorithm, _, digest = version_id.partition(":")
    if algorithm != "sha256" or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise ValueError(f"not a bundle hash: {version_id!r}")
    return digest


class VersionHistory:
    """The on-disk store under one directory; ``None`` directory keeps nothing."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _atomic_write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def save_archive(self, version_id: str, data: bytes) -> None:
        if self.directory is None:
            return
        path = self.directory / VERSIONS_DIR / f"{_hex(version_id)}.tar.gz"
        if not path.exists():
            self._atomic_write(path, data)

    def read_archive(self, version_id: str) -> bytes | None:
        if self.directory is None:
            return None
        try:
            return (self.directory / VERSIONS_DIR / f"{_hex(version_id)}.tar.gz").read_bytes()
        except (OSError, ValueError):
            return None

    def drop_archive(self, version_id: str) -> None:
        if self.directory is None:
            return
        with contextlib.suppress(OSError, ValueError):
            (self.directory / VERSIONS_DIR / f"{_hex(version_id)}.tar.gz").unlink(missing_ok=True)

    def save_state(self, slots: Mapping[str, SlotRecord]) -> None:
        if self.directory is None:
            return
        doc = {
            "format": STATE_FORMAT,
            "slots": {tenant: record.to_dict() for tenant, record in sorted(slots.items())},
        }
        self._atomic_write(
            self.directory / STATE_FILE, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
        )

    def load_state(self) -> dict[str, SlotRecord]:
        """The saved slots; empty when there is no state (or it is unreadable: the
        sources then decide, as on a first start)."""
        if self.directory is None:
            return {}
        try:
            doc = json.loads((self.directory / STATE_FILE).read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            return {}
        slots = doc.get("slots")
        if not isinstance(slots, dict):
            return {}
        return {
            tenant: SlotRecord.from_dict(raw)
            for tenant, raw in slots.items()
            if isinstance(tenant, str) and isinstance(raw, dict)
        }
