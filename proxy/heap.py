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

With the timer there, glibc's own giving back is turned down (`tune`): by
default every free that leaves more than 128 KiB at the heap's top shrinks
it, and the next allocation grows it again with fresh zeroed pages. With 1
MiB bodies db's L7 sidecar made ~250 `brk` calls a second that way (none
at L4). A trim threshold of 16 MiB leaves the top to the timer: no `brk`
call under the same load, and the same RSS after it. What that saves is
within the pair's run-to-run spread (CPU per MiB -11 % to +5 % over five
interleaved A/B runs, bench/README.md "Proxy RSS"). Setting a threshold
turns off glibc's own raising of the mmap threshold (from 128 KiB up to
the largest mapped buffer freed so far), so that one is set too: 1 MiB, so
a buffer of a few hundred KiB stays in the heap instead of being mapped,
faulted in and unmapped each time.

Without the compiled build (scripts/build_native.py) or off glibc there is
no extension, and nothing is trimmed or tuned.
"""

from __future__ import annotations

import asyncio
from types import ModuleType

EVERY_S = 2.0
ABOVE = 256 * 1024  # free heap bytes worth a trim: below it the pages are mostly in use
TRIM_THRESHOLD = 16 * 1024 * 1024  # glibc's own trim of the heap's top (its default: 128 KiB)
MMAP_THRESHOLD = 1024 * 1024  # larger allocations are mapped apart (its default: 128 KiB)


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
    """glibc's thresholds tuned and the process's trimmer started; None without the
    extension."""
    heap = extension()
    if heap is None:
        return None
    heap.tune(TRIM_THRESHOLD, MMAP_THRESHOLD)
    trimmer = HeapTrimmer(heap)
    trimmer.start()
    return trimmer
