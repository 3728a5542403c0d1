"""RFC 6962 Merkle trees: reference vectors, the accumulator, proof round trips."""

from __future__ import annotations

import base64
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from aegis.audit.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
MERKLE = CORPORA / "transparency-dev-merkle" / "testdata"

#: The RFC 6962 reference leaves (the corpus README, transparency-dev/merkle testonly).
RFC_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
RFC_ROOT_8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def _vectors(kind: str) -> list[Path]:
    files = sorted((MERKLE / kind).rglob("*.json")) if MERKLE.is_dir() else []
    if not files and os.environ.get("CI") != "true":
        return []
    return files


def _corpus_params(kind: str) -> list[Any]:
    files = _vectors(kind)
    if not files:
        return [
            pytest.param(
                None,
                marks=pytest.mark.skip(reason=f"corpus missing: {MERKLE} (set CI=true to fail)"),
            )
        ]
    return [pytest.param(p, id=str(p.relative_to(MERKLE))) for p in files]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _b64_list(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


def _verdict(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except ProofError:
        return False
    return True


@pytest.mark.parametrize("path", _corpus_params("inclusion"))
def test_inclusion_vectors(path: Path) -> None:
    v = json.loads(path.read_text())
    ok = _verdict(
        verify_inclusion,
        _b64(v.get("leafHash")),
        v["leafIdx"],
        v["treeSize"],
        _b64_list(v.get("proof")),
        _b64(v.get("root")),
    )
    assert ok is (not v.get("wantErr", False)), v.get("desc")


@pytest.mark.parametrize("path", _corpus_params("consistency"))
def test_consistency_vectors(path: Path) -> None:
    v = json.loads(path.read_text())
    ok = _verdict(
        verify_consistency,
        v["size1"],
        v["size2"],
        _b64(v.get("root1")),
        _b64(v.get("root2")),
        _b64_list(v.get("proof")),
    )
    assert ok is (not v.get("wantErr", False)), v.get("desc")


def test_corpus_present_in_ci() -> None:
    if os.environ.get("CI") == "true":
        assert len(_vectors("inclusion")) + len(_vectors("consistency")) == 196
    elif not MERKLE.is_dir():
        pytest.skip(f"corpus missing: {MERKLE}")


def test_rfc6962_reference_root() -> None:
    leaves = [leaf_hash(d) for d in RFC_LEAVES]
    assert root_of(leaves).hex() == RFC_ROOT_8
    assert root_of([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_of(leaves[:2]) == node_hash(leaves[0], leaves[1])


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_accumulator_matches_root_of() -> None:
    leaves = _leaves(130)
    acc = MerkleAccumulator()
    assert acc.size == 0 and acc.root() == root_of([])
    for n in range(1, 131):
        acc.append(leaves[n - 1])
        assert acc.size == n
        assert acc.root() == root_of(leaves[:n]), n


def test_accumulator_rejects_bad_leaf() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleAccumulator().append(b"short")


def test_inclusion_round_trip_all_small_trees() -> None:
    leaves = _leaves(33)
    for size in range(1, 34):
        root = root_of(leaves[:size])
        for index in range(size):
            proof = inclusion_proof(leaves, index, size)
            verify_inclusion(leaves[index], index, size, proof, root)
            with pytest.raises(ProofError):
                verify_inclusion(leaf_hash(b"other"), index, size, proof, root)


def test_consistency_round_trip_all_small_trees() -> None:
    leaves = _leaves(33)
    roots = [root_of(leaves[:n]) for n in range(34)]
    for size2 in range(1, 34):
        for size1 in range(1, size2 + 1):
            proof = consistency_proof(leaves, size1, size2)
            verify_consistency(size1, size2, roots[size1], roots[size2], proof)
            if size1 < size2:
                with pytest.raises(ProofError):
                    verify_consistency(size1, size2, roots[size1 - 1], roots[size2], proof)


def test_proofs_round_trip_random_sizes() -> None:
    rng = random.Random(6962)
    leaves = _leaves(2000)
    for _ in range(40):
        size2 = rng.randint(1, 2000)
        size1 = rng.randint(1, size2)
        index = rng.randrange(size2)
        root2 = root_of(leaves[:size2])
        verify_inclusion(leaves[index], index, size2, inclusion_proof(leaves, index, size2), root2)
        proof = consistency_proof(leaves, size1, size2)
        verify_consistency(size1, size2, root_of(leaves[:size1]), root2, proof)
        if proof:
            bad = [*proof[:-1], bytes(32)]
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, root_of(leaves[:size1]), root2, bad)


def test_rfc_reference_proofs() -> None:
    leaves = [leaf_hash(d) for d in RFC_LEAVES]
    root = root_of(leaves)
    for i in range(8):
        verify_inclusion(leaves[i], i, 8, inclusion_proof(leaves, i, 8), root)
    assert len(inclusion_proof(leaves, 0, 8)) == 3
    assert len(consistency_proof(leaves, 3, 7)) == 4  # RFC 6962 §2.1.3 example: [c, d, g, l]


@pytest.mark.parametrize(("index", "size"), [(-1, 4), (4, 4), (0, 0), (0, 5)])
def test_inclusion_proof_bad_arguments(index: int, size: int) -> None:
    with pytest.raises(ProofError):
        inclusion_proof(_leaves(4), index, size)


def test_verify_rejects_garbage() -> None:
    leaves = _leaves(5)
    root = root_of(leaves)
    proof = inclusion_proof(leaves, 2, 5)
    with pytest.raises(ProofError, match="wrong proof size"):
        verify_inclusion(leaves[2], 2, 5, [*proof, bytes(32)], root)
    with pytest.raises(ProofError, match="bytes"):
        verify_inclusion(leaves[2], 2, 5, [b"x" * 31, *proof[1:]], root)
    with pytest.raises(ProofError):
        verify_inclusion(b"short", 2, 5, proof, root)
    with pytest.raises(ProofError):
        verify_consistency(3, 2, root, root, [])
    with pytest.raises(ProofError, match="not empty"):
        verify_consistency(5, 5, root, root, [root])
    with pytest.raises(ProofError, match="empty proof"):
        verify_consistency(2, 5, root_of(leaves[:2]), root, [])
    with pytest.raises(ProofError, match="meaningless"):
        verify_consistency(0, 5, EMPTY_ROOT, root, [])
    with pytest.raises(ProofError):
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(ProofError):
        verify_consistency(-1, 5, EMPTY_ROOT, root, [])
