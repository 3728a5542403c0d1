"""The bundle layout (OPA's): ``.manifest``, ``data.json``, policy sources, ``policy.rego``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aegis.bundles.errors import BundleError, BundleErrorCode
from aegis.policy.compiler import POLICY_SUFFIXES, TEST_SUFFIXES

DATA_FILE: Final = "data.json"
REGO_FILE: Final = "policy.rego"


@dataclass(frozen=True, slots=True)
class Manifest:
    """A bundle's ``.manifest``: revision, roots and free-form metadata."""

    revision: str = ""
    roots: tuple[str, ...] = ("",)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "roots": list(self.roots), "metadata": self.metadata}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True).encode() + b"\n"

    @property
    def bundle_id(self) -> str | None:
        aegis = self.metadata.get("aegis")
        value = aegis.get("bundle_id") if isinstance(aegis, Mapping) else None
        return value if isinstance(value, str) else None

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        bad = BundleErrorCode.INVALID_MANIFEST
        try:
            doc = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):
            raise BundleError(bad, ".manifest is not valid JSON") from None
        if not isinstance(doc, dict):
            raise BundleError(bad, ".manifest is not a JSON object")
        revision = doc.get("revision", "")
        if not isinstance(revision, str):
            raise BundleError(bad, '.manifest "revision" is not a string')
        roots = doc.get("roots", [""])
        if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
            raise BundleError(bad, '.manifest "roots" is not a list of strings')
        metadata = doc.get("metadata", {})
        if not isinstance(metadata, dict):
            raise BundleError(bad, '.manifest "metadata" is not an object')
        for i, a in enumerate(roots):
            for b in roots[i + 1 :]:
                if roots_overlap(a, b):
                    raise BundleError(bad, f".manifest roots {a!r} and {b!r} overlap")
        return cls(revision=revision, roots=tuple(roots), metadata=metadata)


def root_segments(root: str) -> list[str]:
    """A manifest root's path segments (``/a/b/`` -> ``["a", "b"]``; ``""`` -> ``[]``)."""
    return [part for part in root.strip("/").split("/") if part]


def roots_overlap(a: str, b: str) -> bool:
    """OPA's rule: two roots overlap when one is a path prefix of the other ("" owns all)."""
    sa, sb = root_segments(a), root_segments(b)
    n = min(len(sa), len(sb))
    return sa[:n] == sb[:n]


def is_bundle_policy_file(name: str) -> bool:
    """Whether a bundle entry is an Aegis policy source (not data, manifest or Rego)."""
    base = name.rsplit("/", 1)[-1]
    return (
        base != DATA_FILE
        and not base.startswith(".")
        and base.endswith(POLICY_SUFFIXES)
        and not base.endswith(TEST_SUFFIXES)
    )
