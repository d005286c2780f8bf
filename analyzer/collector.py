"""Fewer cyclic garbage collections while an analysis runs (`few_collections`).

An analysis allocates millions of short-lived objects (frames, records, events) that reference counting frees at
once, yet CPython's cyclic collector runs its youngest generation every 700 net allocations and, every so often, walks
every object the process holds: the imported modules, and after the shards of ``--jobs`` are merged, every tracker
they sent. Measured on the bench's 4x gateway capture (one process): 648 collections, ~0.12 s of 2.8 s; in the
``--jobs 2`` merge, 0.06-0.15 s of its 0.21-0.30 s.

Inside `few_collections` the objects that existed at its start (modules, keys, what the caller holds) are moved out of
the collector's reach (`gc.freeze`) and the youngest generation is collected every GEN0_THRESHOLD net allocations:
cycles made during the analysis are still collected, a collection later (memory stays flat: at most that many
tracked objects more between collections). Leaving the outermost block restores the thresholds and unfreezes.
Blocks nest and may be entered from several threads (the settings are the process's: the first block in sets them,
the last one out restores them); a process forked inside a block keeps them.
"""
from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: net allocations of tracked objects between two collections of the youngest generation inside `few_collections`
GEN0_THRESHOLD = 20_000

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, ...] = ()


@contextmanager
def few_collections() -> Iterator[None]:
    """Run the block with the objects that exist now frozen and rarer collections (see the module's text)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            if _saved[0]:  # 0: the caller has turned collections off; leave it so
                gc.set_threshold(max(GEN0_THRESHOLD, _saved[0]), *_saved[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
