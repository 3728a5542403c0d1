"""`Redactor`: apply a sanitize obligation to a call's params.

Two mechanisms, applied in one walk over the params that also builds the copy:

* **named fields** -- every value a field path reaches (wildcards allowed) is
  replaced whole by ``"[REDACTED]"`` and recorded with detector ``"field"``;
* **detectors** -- every string under the scan paths (all of params when ``scan``
  is None) is searched, and each match replaced by ``"[REDACTED:<name>]"``.
  Integers and floats are searched as their JSON text (``str``/``repr``), since a
  card number sent as a number leaks just as well; a number with a match becomes
  the redacted string.

Object *keys* are kept as they are and never scanned: a key is structure the
tool relies on, and rewriting it would change the call's meaning. A value inside
a redacted field is not also scanned (it is gone). Detectors never see the
markers: every detector searches the original text and the regions are merged
(:mod:`aegis.dlp.overlap`) before anything is replaced.

Records name a path and a detector, never what was replaced. The path is
rendered from the keys, which are not redacted (they are in the output anyway).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from aegis.core.call import JsonValue, Params
from aegis.core.decision import Redaction
from aegis.core.paths import ParamPath, Segment, render
from aegis.core.regex import PatternSet
from aegis.dlp.detector import Detector
from aegis.dlp.names import BUILTIN_DETECTOR_NAMES
from aegis.dlp.overlap import Labelled, resolve
from aegis.dlp.pathtrie import Active, PathTrie, step
from aegis.errors import PatternError

FIELD_MARKER: Final = "[REDACTED]"
FIELD_DETECTOR: Final = "field"

_PRIORITY: Final = {name: i for i, name in enumerate(BUILTIN_DETECTOR_NAMES)}


def marker(detector_name: str) -> str:
    return f"[REDACTED:{detector_name}]"


def _priority(detector: Detector) -> tuple[int, str]:
    """Built-ins in :data:`BUILTIN_DETECTOR_NAMES` order, then custom ones by name."""
    return _PRIORITY.get(detector.name, len(_PRIORITY)), detector.name


class Redactor:
    """An immutable, reusable sanitize step; :meth:`apply` is safe to call concurrently.

    ``fields`` are redacted whole; ``detectors`` run over strings (and numbers)
    under ``scan`` (None: all of params). Duplicate fields are dropped, and of two
    detectors with the same name the first is kept. Detectors are held in priority
    order (built-ins first, see :data:`BUILTIN_DETECTOR_NAMES`, then custom ones
    by name), which is the tie-break for overlapping matches of equal length.
    """

    __slots__ = (
        "_detectors",
        "_field_trie",
        "_fields",
        "_gate",
        "_markers",
        "_scan",
        "_scan_trie",
    )

    def __init__(
        self,
        fields: Sequence[ParamPath] = (),
        detectors: Sequence[Detector] = (),
        scan: Sequence[ParamPath] | None = None,
    ) -> None:
        self._fields: tuple[ParamPath, ...] = tuple(dict.fromkeys(fields))
        if any(not p.segments for p in self._fields):
            raise ValueError("a redacted field path must not be empty (params stays an object)")
        unique: dict[str, Detector] = {}
        for detector in detectors:
            unique.setdefault(detector.name, detector)
        self._detectors: tuple[Detector, ...] = tuple(sorted(unique.values(), key=_priority))
        self._scan: tuple[ParamPath, ...] | None = (
            None if scan is None else tuple(dict.fromkeys(scan))
        )
        self._markers = tuple(marker(d.name).encode("ascii") for d in self._detectors)
        self._gate = _gate(self._detectors)
        self._field_trie: Active = (PathTrie.build(self._fields),) if self._fields else ()
        self._scan_trie: Active = () if scan is None else (PathTrie.build(self._scan or ()),)

    @property
    def fields(self) -> tuple[ParamPath, ...]:
        return self._fields

    @property
    def detectors(self) -> tuple[Detector, ...]:
        return self._detectors

    @property
    def scan(self) -> tuple[ParamPath, ...] | None:
        return self._scan

    def __repr__(self) -> str:
        fields = [str(p) for p in self._fields]
        names = [d.name for d in self._detectors]
        scan = None if self._scan is None else [str(p) for p in self._scan]
        return f"Redactor(fields={fields}, detectors={names}, scan={scan})"

    def apply(self, params: Params) -> tuple[dict[str, JsonValue], tuple[Redaction, ...]]:
        """A sanitized deep copy of ``params`` (which is not touched) and what was redacted.

        Redactions are unique and sorted by (path, detector).
        """
        scan_all = False
        scan_trie: Active = ()
        if self._detectors:
            scan_all, scan_trie = self._scan is None, self._scan_trie
            if scan_trie and scan_trie[0].leaf:  # an empty scan path: everything
                scan_all, scan_trie = True, ()
        walk = _Walk(self._detectors, self._markers, self._gate)
        out = walk.object(params, self._field_trie, scan_trie, scan_all)
        return out, tuple(Redaction(path, det) for path, det in sorted(walk.records))


class _Walk:
    """The state of one :meth:`Redactor.apply`: where we are, and what was redacted."""

    __slots__ = ("detectors", "gate", "markers", "path", "records")

    def __init__(
        self, detectors: tuple[Detector, ...], markers: tuple[bytes, ...], gate: PatternSet | None
    ) -> None:
        self.detectors = detectors
        self.markers = markers
        self.gate = gate
        self.path: list[Segment] = []
        self.records: set[tuple[str, str]] = set()

    def value(self, value: JsonValue, fields: Active, scan: Active, scan_all: bool) -> JsonValue:
        if isinstance(value, str):
            return self.text(value) if scan_all else value
        if isinstance(value, Mapping | list | tuple):
            if not (fields or scan or scan_all):
                return _copy(value)
            if scan_all and not fields:
                return self.scan_copy(value)
            if isinstance(value, Mapping):
                return self.object(value, fields, scan, scan_all)
            return [
                self.child(item, index, fields, scan, scan_all) for index, item in enumerate(value)
            ]
        return self.number(value) if scan_all else value

    def object(
        self, value: Mapping[str, JsonValue], fields: Active, scan: Active, scan_all: bool
    ) -> dict[str, JsonValue]:
        return {key: self.child(item, key, fields, scan, scan_all) for key, item in value.items()}

    def child(
        self, value: JsonValue, key: Segment, fields: Active, scan: Active, scan_all: bool
    ) -> JsonValue:
        child_fields: Active = ()
        if fields:
            child_fields, hit = step(fields, key)
            if hit:
                self.records.add((render([*self.path, key]), FIELD_DETECTOR))
                return FIELD_MARKER
        child_scan: Active = ()
        if scan and not scan_all:
            child_scan, scan_all = step(scan, key)
        self.path.append(key)
        try:
            return self.value(value, child_fields, child_scan, scan_all)
        finally:
            self.path.pop()

    def scan_copy(self, value: JsonValue) -> JsonValue:
        """Copy and scan a whole subtree with no field paths below: the hot loop."""
        if isinstance(value, str):
            return self.text(value)
        path = self.path
        if isinstance(value, Mapping):
            out: dict[str, JsonValue] = {}
            for key, item in value.items():
                path.append(key)
                out[key] = self.scan_copy(item)
                path.pop()
            return out
        if isinstance(value, list | tuple):
            items: list[JsonValue] = []
            for index, item in enumerate(value):
                path.append(index)
                items.append(self.scan_copy(item))
                path.pop()
            return items
        return self.number(value)

    def number(self, value: JsonValue) -> JsonValue:
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            text = str(value)
        elif isinstance(value, float):
            text = repr(value)  # what json.dumps writes, so what would leak
        else:
            return value
        redacted = self.text(text)
        return value if redacted is text else redacted

    def text(self, text: str) -> str:
        """``text`` itself when nothing matched (no copy), else the redacted string."""
        data = text.encode("utf-8")
        candidates: Sequence[int]
        if self.gate is not None:
            # One RE2::Set pass names the detectors whose pattern matches at all;
            # only those scan (and validate) -- usually none, rarely more than one.
            candidates = self.gate.matching(data)
            if not candidates:
                return text
        else:
            candidates = range(len(self.detectors))
        ascii_only = len(data) == len(text)
        found: list[Labelled] = []
        for index in candidates:
            detector = self.detectors[index]
            if detector._may_match(text):
                found.extend((s, e, index) for s, e in detector._scan_utf8(data, ascii_only))
        if not found:
            return text
        pieces: list[bytes] = []
        last = 0
        rendered = render(self.path)
        for start, end, index in resolve(found):
            pieces.append(data[last:start])
            pieces.append(self.markers[index])
            last = end
            self.records.add((rendered, self.detectors[index].name))
        pieces.append(data[last:])
        return b"".join(pieces).decode("utf-8")


def _gate(detectors: tuple[Detector, ...]) -> PatternSet | None:
    """An RE2::Set of the detectors' patterns: one pass tells which could match.

    Most strings in params hold no candidate at all, and the rest usually one
    kind; the set settles that instead of one search per detector. It only
    gates: the detectors it names still scan and validate, so labels and
    validation are unchanged. A set too large to build (many custom patterns)
    is not an error -- there is just no gate.
    """
    if len(detectors) < 2:
        return None
    try:
        return PatternSet([d.pattern for d in detectors])
    except PatternError:
        return None


def _copy(value: JsonValue) -> JsonValue:
    """Deep copy of plain JSON data (far cheaper than :func:`copy.deepcopy`)."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def combine(redactors: Sequence[Redactor]) -> Redactor:
    """One Redactor doing what all of ``redactors`` do (several sanitize rules fired).

    The union of fields and of detectors (by name; the first of a name wins), and
    of scan paths -- contributed only by redactors that have detectors, since a
    scan scope without detectors means nothing. If any of those scans everything
    (None), so does the result. The union can apply one rule's detector under
    another rule's scan path: over-redaction is the safe side of the trade.
    """
    fields: list[ParamPath] = []
    detectors: list[Detector] = []
    scan: list[ParamPath] | None = []
    for redactor in redactors:
        fields.extend(redactor.fields)
        detectors.extend(redactor.detectors)
        if redactor.detectors:
            if redactor.scan is None:
                scan = None
            elif scan is not None:
                scan.extend(redactor.scan)
    return Redactor(fields, detectors, scan if detectors else None)
