"""Resolving overlapping matches from several detectors into redaction regions.

Two detectors can claim overlapping text: a phone pattern inside a card number,
an email whose local part holds digits. Dropping the loser would leave the part
of it outside the winner in clear text, so overlapping spans are merged: each
connected group of overlapping spans becomes one region covering their union,
and is labelled by its longest span, ties broken by detector priority (lower
index first). Spans that merely touch (one ends where the next starts) stay apart.
The result depends only on the spans, never on the order they were found in.
"""

from __future__ import annotations

#: (start, end, detector index)
Labelled = tuple[int, int, int]


def resolve(spans: list[Labelled]) -> list[Labelled]:
    """Disjoint labelled regions, sorted by start, covering every input span."""
    if len(spans) <= 1:
        return list(spans)
    ordered = sorted(spans)
    regions: list[Labelled] = []
    start, end, label = ordered[0]
    best = (start - end, label)
    for s, e, index in ordered[1:]:
        if s < end:  # overlaps the current region
            end = max(end, e)
            best = min(best, (s - e, index))
        else:
            regions.append((start, end, best[1]))
            start, end = s, e
            best = (s - e, index)
    regions.append((start, end, best[1]))
    return regions
