"""Keeping a reload from stalling the event loop that serves decisions."""

from __future__ import annotations

import gc
import sys
import threading
from typing import Final

#: The GIL switch interval while a reload compiles (CPython's default is 5 ms).
RELOAD_SWITCH_INTERVAL: Final = 0.0005


class QuietLoad:
    """Keep a reload from stalling the event loop that serves decisions.

    A reload compiles in a worker thread, but the GIL is shared. Two things
    measured under load (benchmarks/reload, 5,000 rules) stall the loop:

    - CPython hands the GIL over every ``sys.getswitchinterval()`` (5 ms), and
      the loop releases it at every poll for I/O, so each of its turns waited up
      to 5 ms: decisions per second fell to a third. 0.5 ms turns keep most of
      the throughput.
    - The compile allocates ~300k long-lived objects, which set off full
      collections of 150--200 ms each, holding the GIL throughout. A load makes
      no cyclic garbage (measured: a collection after it frees nothing, and a
      dropped policy is freed by reference counting), so with ``quiet_gc`` the
      collector is paused for the load and the result frozen out of later full
      collections (``gc.freeze``, as the gateway does with its start-up heap).
      The load is also faster: 0.72 s instead of 1.1--1.4 s.

    Process-wide settings, so nested loads (several tenants) share one change,
    undone by the last to finish.
    """

    def __init__(self, quiet_gc: bool) -> None:
        self.quiet_gc = quiet_gc
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = 0.0
        self._gc_was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, RELOAD_SWITCH_INTERVAL))
                if self.quiet_gc:
                    self._gc_was_enabled = gc.isenabled()
                    gc.disable()
            self._depth += 1

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                sys.setswitchinterval(self._saved)
                if self.quiet_gc and self._gc_was_enabled:
                    gc.freeze()
                    gc.enable()
