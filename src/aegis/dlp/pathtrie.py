"""Matching params paths (with ``*`` wildcards) during a single walk of the params.

Paths are compiled once into a trie; the walk carries the set of trie nodes that
the current position may still extend, so wildcard paths cost nothing where they
cannot match, and nothing is expanded or re-walked. Segment semantics follow
:func:`aegis.core.paths.expand`: ``*`` matches any key or index, an integer
segment on an object matches the key of its decimal form, and a digit-string key
on a list matches that index.
"""

from __future__ import annotations

from collections.abc import Iterable

from aegis.core.paths import WILDCARD, ParamPath, Segment


class PathTrie:
    """One node; ``leaf`` marks the end of a path (everything below is covered)."""

    __slots__ = ("children", "leaf")

    def __init__(self) -> None:
        self.children: dict[Segment, PathTrie] = {}
        self.leaf = False

    @classmethod
    def build(cls, paths: Iterable[ParamPath]) -> PathTrie:
        root = cls()
        for path in paths:
            node = root
            for seg in path.segments:
                if node.leaf:  # a shorter path already covers this one
                    break
                node = node.children.setdefault(seg, cls())
            else:
                node.leaf = True
                node.children.clear()
        return root


Active = tuple[PathTrie, ...]


def step(active: Active, key: Segment) -> tuple[Active, bool]:
    """Advance every active node by one key: (still-open nodes, whether a path ended)."""
    if isinstance(key, int):
        segs: tuple[Segment, ...] = (key, str(key), WILDCARD)
    elif key == WILDCARD:  # a literal "*" key: looking it up twice would duplicate nodes
        segs = (key,)
    elif key.isascii() and key.isdigit():
        segs = (key, int(key), WILDCARD)
    else:
        segs = (key, WILDCARD)
    nxt: list[PathTrie] = []
    for node in active:
        children = node.children
        for seg in segs:
            child = children.get(seg)
            if child is not None:
                if child.leaf:
                    return (), True
                nxt.append(child)
    return tuple(nxt), False
