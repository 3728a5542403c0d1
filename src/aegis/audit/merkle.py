"""RFC 6962 Merkle trees: hashes, roots, inclusion and consistency proofs.

The tree is the one of RFC 6962 §2.1 (restated in RFC 9162 §2.1): leaves are
hashed as ``SHA-256(0x00 || data)``, interior nodes as ``SHA-256(0x01 || l || r)``,
and a tree of ``n`` leaves splits at ``k``, the largest power of two below ``n``.

The verifiers follow the algorithms of RFC 9162 §2.1.3.2 (inclusion) and
§2.1.4.2 (consistency) in the bit-twiddling form of transparency-dev/merkle's
``proof`` package, so they give the same verdicts on its test vectors, edge
cases included (``size1 == size2``, ``size1 == 0``, empty proofs, proofs that
are too long or too short).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) -- RFC 6962 §2.1


class ProofError(ValueError):
    """A proof (or its arguments) does not verify."""


def leaf_hash(data: bytes) -> bytes:
    """MTH of a one-leaf tree: SHA-256(0x00 || data) -- RFC 6962 §2.1."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An interior node: SHA-256(0x01 || left || right) -- RFC 6962 §2.1."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1) -- RFC 6962 §2.1."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of already-hashed leaves, by the recursive definition of RFC 6962 §2.1."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(root_of(leaf_hashes[:k]), root_of(leaf_hashes[k:]))


class MerkleAccumulator:
    """The root of a growing tree in O(log n) memory (a "compact range").

    Holds the roots of the perfect subtrees the leaves so far decompose into,
    largest first -- one per set bit of ``size``. Appending a leaf merges equal
    sized subtrees like a binary counter carries.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        """Add a leaf *hash* (see :func:`leaf_hash`)."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        node = leaf
        size = self._size
        while size & 1:
            node = node_hash(self._stack.pop(), node)
            size >>= 1
        self._stack.append(node)
        self._size += 1

    def root(self) -> bytes:
        """MTH of the leaves so far: fold the subtree roots from the right."""
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


class MerkleTree:
    """Proof generation over a list of leaf hashes (RFC 6962 §2.1.1, §2.1.2).

    Subtree roots are memoized: every proof for one tree size uses the nodes of
    that tree only, so producing many proofs costs O(n) hashing once, then
    O(log n) per proof.
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self._leaves = leaf_hashes
        self._cache: dict[tuple[int, int], bytes] = {}

    def subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi])."""
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return self._leaves[lo]
        key = (lo, hi)
        found = self._cache.get(key)
        if found is None:
            k = _split(n)
            found = node_hash(self.subtree(lo, lo + k), self.subtree(lo + k, hi))
            self._cache[key] = found
        return found

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(m, D[n]) -- RFC 6962 §2.1.1, leaf-to-root order."""
        if not 0 <= index < size <= len(self._leaves):
            raise ProofError(f"no leaf {index} in a tree of size {size}")
        out: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                out.append(self.subtree(lo + k, hi))
                hi = lo + k
            else:
                out.append(self.subtree(lo, lo + k))
                lo += k
        out.reverse()
        return out

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """PROOF(m, D[n]) -- RFC 6962 §2.1.2 (SUBPROOF), empty when m is 0 or n."""
        if not 0 <= size1 <= size2 <= len(self._leaves):
            raise ProofError(f"no consistency proof from size {size1} to {size2}")
        if size1 in (0, size2):
            return []
        out: list[bytes] = []
        # SUBPROOF(m, D[lo:hi], b), unrolled; siblings collected root-to-leaf.
        lo, hi, m, complete = 0, size2, size1, True
        while True:
            n = hi - lo
            if m == n:
                if not complete:
                    out.append(self.subtree(lo, hi))
                break
            k = _split(n)
            if m <= k:
                out.append(self.subtree(lo + k, hi))
                hi = lo + k
            else:
                out.append(self.subtree(lo, lo + k))
                lo += k
                m -= k
                complete = False
        out.reverse()
        return out


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
    return MerkleTree(leaf_hashes).inclusion_proof(index, size)


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """Proof that the tree of ``size1`` leaves is a prefix of the one of ``size2``."""
    return MerkleTree(leaf_hashes).consistency_proof(size1, size2)


# -- verification: RFC 9162 §2.1.3.2 / §2.1.4.2, as in transparency-dev/merkle ------


def _decomp_incl_proof(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion proof's length into (inner, border) parts.

    ``inner`` nodes sit below the point where the leaf's path to the root of
    a tree of ``size`` leaves parts from the path of the last leaf; ``border``
    nodes are the left siblings on the right border above it.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = node_hash(seed, h) if (index >> i) & 1 == 0 else node_hash(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def _check_hashes(proof: Sequence[bytes]) -> None:
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise ProofError(f"proof hash {i} has {len(h)} bytes, want {HASH_SIZE}")


def _match(calculated: bytes, expected: bytes, what: str) -> None:
    if not hmac.compare_digest(calculated, expected):
        raise ProofError(f"calculated {what} {calculated.hex()} != expected {expected.hex()}")


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to -- RFC 9162 §2.1.3.2."""
    if index < 0 or size < 0:
        raise ProofError("index and size must not be negative")
    if index >= size:
        raise ProofError(f"index is beyond size: {index} >= {size}")
    if len(leaf) != HASH_SIZE:
        raise ProofError(f"leaf hash has {len(leaf)} bytes, want {HASH_SIZE}")
    inner, border = _decomp_incl_proof(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {inner + border}")
    _check_hashes(proof)
    node = _chain_inner(leaf, proof[:inner], index)
    return _chain_border_right(node, proof[inner:])


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf ``index`` is in ``root``."""
    _match(root_from_inclusion_proof(leaf, index, size, proof), root, "root")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless tree ``root1`` of ``size1`` is a prefix of ``root2``.

    RFC 9162 §2.1.4.2, with transparency-dev/merkle's edge cases: ``size1 == 0``
    is refused (a proof from the empty tree is meaningless); equal sizes need an
    empty proof and equal roots; otherwise the proof must not be empty.
    """
    if size1 < 0 or size2 < 0:
        raise ProofError("sizes must not be negative")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) < size1 ({size1})")
    if size1 == 0:
        # transparency-dev/merkle (testdata/consistency/additional): a proof
        # from the empty tree proves nothing, so it is refused, even 0 -> 0.
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError("size1 == size2, but the proof is not empty")
        _match(root1, root2, "root1")
        return
    if not proof:
        raise ProofError("empty proof")
    _check_hashes(proof)

    inner, border = _decomp_incl_proof(size1 - 1, size2)
    shift = ((size1 & -size1).bit_length()) - 1  # trailing zeros of size1
    inner -= shift  # shift < inner because size1 < size2
    # The proof starts with the root of the subtree of size 2^shift that
    # ends at size1 -- unless size1 is exactly 2^shift: then that is root1.
    if size1 == 1 << shift:
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {start + inner + border}")
    rest = proof[start:]
    mask = (size1 - 1) >> shift  # chaining starts at level `shift`

    hash1 = _chain_inner_right(seed, rest[:inner], mask)
    hash1 = _chain_border_right(hash1, rest[inner:])
    _match(hash1, root1, "root1")

    hash2 = _chain_inner(seed, rest[:inner], mask)
    hash2 = _chain_border_right(hash2, rest[inner:])
    _match(hash2, root2, "root2")
