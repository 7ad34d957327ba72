"""Giving the C heap's free pages back (proxy/heap.py, proxy/_heap.c).

The extension is part of the compiled build: each test runs in a fresh
interpreter that calls native.use() as the proxy does, so the extension is
the one a sidecar loads. Under CI the build must be there (`scripts/setup.sh
test` makes it); elsewhere these tests skip without one.
"""

from __future__ import annotations

import subprocess
import sys

from gossamer.proxy import native
from tests.harness.binaries import cannot_run
from tests.harness.cli import cli_env

# Each script's start (run() puts it first): the build in use as the proxy uses it, the RSS.
PRELUDE = """
from gossamer.proxy import native
assert native.use() == "fresh", native.MODE
from gossamer.proxy import heap

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
"""
# Large chunks freed between small ones that stay: the heap cannot shrink from its top, so
# only a trim (MADV_DONTNEED on the free pages in the middle) gives the pages back.
FRAGMENT = """
big, keep = [], []
for _ in range(1000):
    big.append(b"x" * 60_000)
    keep.append(b"k" * 600)
del big
"""
TRIM_ONCE = """
ext = heap.extension()
free, before = ext.free_bytes(), rss_kib()
print(free, ext.trim(), before - rss_kib(), ext.free_bytes())
"""
TIMER = """
import asyncio
import sys

async def main():
    ext = heap.extension()
    free_at_start = ext.free_bytes()
    high = heap.HeapTrimmer(ext, every_s=0.01, above=1 << 40)
    high.start()
    low = heap.HeapTrimmer(ext, every_s=0.01, above=1 << 20)
    low.start()
    deadline = asyncio.get_running_loop().time() + 10
    while not low.trims and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    if not low.trims:  # what to look at when it fails (stderr shows too, and any traceback)
        sys.exit(f"no trim in 10 s: {free_at_start} bytes free at the start, "
                 f"{ext.free_bytes()} now, and a trim now says {ext.trim()}")
    high._tick()  # one more look with plenty free: still under its threshold
    low.stop()
    high.stop()
    print(high.trims, low.trims >= 1, low._timer is None, high._timer is None)

asyncio.run(main())
"""
TUNED = """
ext = heap.extension()
took = ext.tune(heap.TRIM_THRESHOLD, heap.MMAP_THRESHOLD)
before = ext.free_bytes()
buffer = b"x" * 400_000
del buffer
kept, rss = ext.free_bytes() - before, rss_kib()
ext.trim()
print(took, kept, rss - rss_kib())
"""


def run(script: str) -> list[str]:
    if native.state() != "fresh":
        cannot_run(f"the compiled build is {native.state()} (scripts/build_native.py)")
    done = subprocess.run([sys.executable, "-c", PRELUDE + script], capture_output=True, text=True,
                          env=cli_env(), timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_trim_gives_the_free_pages_of_a_fragmented_heap_back() -> None:
    out = run(FRAGMENT + TRIM_ONCE)
    free, trimmed, given_kib, free_after = int(out[0]), out[1], int(out[2]), int(out[3])
    assert free > 30_000_000  # most of ~1,000 chunks of 60 KB, free but mapped
    assert trimmed == "True"
    assert given_kib > 25_000  # RSS fell by most of it
    assert free_after > free * 0.9  # still free heap to malloc: the pages went, not the chunks


def test_the_timer_trims_only_above_its_threshold_and_stops() -> None:
    out = run(FRAGMENT + TIMER)
    assert out == ["0", "True", "True", "True"]


def test_tuned_glibc_keeps_a_large_freed_buffer_in_the_heap_for_the_timer() -> None:
    """Past 128 KiB glibc maps a buffer apart and unmaps it when freed, and it shrinks the
    heap's top at every free past 128 KiB: tuned, both stay in the heap until a trim."""
    out = run(TUNED)
    assert out[0] == "True"
    kept, given = int(out[1]), int(out[2])
    assert kept >= 300_000  # freed into the heap, not unmapped or trimmed by glibc
    assert given >= 200  # KiB: the timer's trim gives it back


def test_without_the_build_there_is_no_trimmer() -> None:
    script = (
        "from gossamer.proxy import heap, native\n"
        "print(native.use(), heap.extension(), heap.start_trimming())\n"
    )
    env = cli_env(env={"GOSSAMER_NATIVE": "0"})
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=60, check=True).stdout.split()  # fmt: skip
    assert out == ["off", "None", "None"]
