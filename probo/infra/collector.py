"""When the process pays for CPython's cycle collector: on a timer, not on allocation.

Once the engine has recovered, the order path makes no cyclic garbage (a young
collection under load finds none), yet CPython's automatic collections still scan
every young object, and under load the young objects are mostly live requests
(coroutines, frames, futures): 4-10 ms pauses, a dozen a second at saturation, each
landing on whatever requests are in flight (BENCHMARKS.md). So after recovery the
loaded heap is frozen out of every scan, automatic collection is turned off, and
`run` collects instead:

- every `YOUNG_INTERVAL_S`, what was allocated since the last run and is still alive
  (at 2,000 orders/s about 10,000 objects, half of them the last request of each
  keep-alive connection: a pause of about 4 ms); the survivors are then frozen, so no
  later young collection scans them again. Shorter intervals mean shorter pauses
  (about 7 ms at 2 s) at a little more collector time in all;
- every `FULL_INTERVAL_S`, everything, frozen objects included, so that a cycle among
  long-lived objects is still reclaimed. Such cycles wait for it: a closed WebSocket
  leaves about 30 objects in one (uvicorn's protocol that upgraded it; the feeds unlink
  litestar's own), so 10 reconnects a second hold some 100,000 objects for up to an
  hour.

Pauses, what they found and what is frozen are metrics (`probo_gc_pause_seconds`,
`probo_gc_collected_total`, `probo_gc_frozen_objects`): a young collection that keeps
finding garbage means some path makes cycles.
"""

from __future__ import annotations

import asyncio
import gc
import time

from probo.infra import metrics

YOUNG_INTERVAL_S = 0.5
FULL_INTERVAL_S = 3600.0


def settle_heap() -> None:
    """After recovery: the loaded objects live as long as the process."""
    gc.collect()
    gc.freeze()
    gc.disable()


def restore() -> None:
    """The interpreter's own policy again (the app is stopping)."""
    gc.unfreeze()
    gc.enable()


def collect(*, full: bool) -> int:
    """One scheduled collection; how many unreachable objects it found."""
    started = time.perf_counter()
    if full:
        gc.unfreeze()
        found = gc.collect()
    else:
        found = gc.collect(1)  # the two young generations: everything not frozen
    gc.freeze()
    if full:  # counting walks every frozen object: not on every young collection
        metrics.GC_FROZEN_OBJECTS.set(gc.get_freeze_count())
    kind = "full" if full else "young"
    metrics.GC_PAUSE_SECONDS.labels(kind).observe(time.perf_counter() - started)
    metrics.GC_COLLECTED.labels(kind).inc(found)
    return found


async def run() -> None:
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(YOUNG_INTERVAL_S)
        full = time.monotonic() - last_full >= FULL_INTERVAL_S
        collect(full=full)
        if full:
            last_full = time.monotonic()
