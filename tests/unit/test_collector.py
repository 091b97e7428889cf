"""The collector's schedule: automatic collection off, cycles still reclaimed on time."""

from __future__ import annotations

import gc
import weakref

from probo.infra import collector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_scheduled_collections_reclaim_cycles_young_and_frozen() -> None:
    was_enabled = gc.isenabled()
    try:
        collector.settle_heap()
        assert not gc.isenabled()
        young = _cycle()
        for _ in range(100_000):  # allocations alone no longer trigger a collection
            _Node()
        assert young() is not None
        assert collector.collect(full=False) >= 2
        assert young() is None

        # A cycle made before a young collection is frozen with the survivors...
        survivor = _Node()
        survivor.other = survivor
        old = weakref.ref(survivor)
        collector.collect(full=False)
        del survivor
        assert collector.collect(full=False) == 0 and old() is not None
        # ...and only a full collection reaches it.
        assert collector.collect(full=True) >= 1
        assert old() is None
    finally:
        collector.restore()
        if not was_enabled:
            gc.disable()
