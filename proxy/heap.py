"""Giving the C heap's free pages back to the kernel after a burst (proxy/_heap.c).

Large bodies pass through a proxy as reads of up to 64 KiB, each a bytes
object glibc carves from its heap. Freed, those chunks stay mapped: after a
burst of 1 MiB bodies an L7 sidecar kept ~1.1 MiB of heap that no object
used, counted in its RSS until the next burst reused it. glibc gives pages
back by itself only from the top of the heap, and only past a threshold that
large frees raise. Knot DNS calls malloc_trim for the same reason; here a
timer checks how much of the heap is free every `EVERY_S` and trims when it
is more than `ABOVE`.

The check is a mallinfo2() call (~0.2 us on a small heap); a trim that
finds pages madvises them away, and a later burst faults them back in
(~1 MiB of page faults per trim at most: noise next to a burst).
Without the compiled build (scripts/build_native.py) or off glibc there is
no extension, and nothing is trimmed.
"""

from __future__ import annotations

import asyncio
from types import ModuleType

EVERY_S = 2.0
ABOVE = 256 * 1024  # free heap bytes worth a trim: below it the pages are mostly in use


def extension() -> ModuleType | None:
    """The compiled `_heap` module when the build is in use (native.use()), else None."""
    try:
        from gossamer.proxy import _heap
    except ImportError:
        return None
    return _heap


class HeapTrimmer:
    """A timer on the running loop: every `every_s`, trim when more than `above` is free."""

    def __init__(self, heap: ModuleType, every_s: float = EVERY_S, above: int = ABOVE) -> None:
        self.heap = heap
        self.every_s = every_s
        self.above = above
        self.trims = 0  # trims that gave pages back
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.every_s, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        if self.heap.free_bytes() > self.above and self.heap.trim():
            self.trims += 1
        self.start()


def start_trimming() -> HeapTrimmer | None:
    """The process's trimmer, started; None without the extension."""
    heap = extension()
    if heap is None:
        return None
    trimmer = HeapTrimmer(heap)
    trimmer.start()
    return trimmer
