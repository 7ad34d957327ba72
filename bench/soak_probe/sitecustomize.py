"""bench/soak.py's probe: what grows inside each proxy process, written as JSON lines.

    PYTHONPATH=bench/soak_probe SOAK_PROBE_DIR=/tmp/probe \\
        GOSSAMER_NATIVE=0 .venv/bin/python bench/soak.py

Python imports `sitecustomize` at start in every process it runs with that
PYTHONPATH (agents and proxies inherit the soak's environment); in the
proxy's (`-m gossamer.proxy`: each worker) this starts a thread writing to
`$SOAK_PROBE_DIR/<pid>.jsonl`, every `SOAK_PROBE_EVERY` seconds (60): RSS,
glibc's mallinfo2 (`used`: the C heap in chunks in use, which counts Python
objects over 512 bytes and OpenSSL's; `free`: its free chunks, which a
fragmented heap keeps in the RSS), the count of every type of object the
cyclic GC tracks (after a collection), and with `SOAK_PROBE_TRACEMALLOC=N`
(frames) the 15 tracebacks whose allocations grew most since the last line
(slows the proxy several times). RSS up with `used` and the counts level:
free space, not a leak; `used` up with the counts level and nothing in
tracemalloc: C memory. The thread holds the GIL for a moment each time.
"""

from __future__ import annotations

import os
import threading


def _cmdline() -> list[bytes]:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _probe(out_dir: str) -> None:  # pragma: no cover (a bench helper)
    import collections
    import ctypes
    import gc
    import json
    import time

    names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
             "uordblks", "fordblks", "keepcost")  # fmt: skip

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in names]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    frames = int(os.environ.get("SOAK_PROBE_TRACEMALLOC", "0"))
    if frames:
        import tracemalloc

        tracemalloc.start(frames)
    every = float(os.environ.get("SOAK_PROBE_EVERY", "60"))
    path = os.path.join(out_dir, f"{os.getpid()}.jsonl")
    before = None
    while True:
        time.sleep(every)
        gc.collect()
        counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
        info = libc.mallinfo2()
        with open("/proc/self/status") as status:
            rss = next(int(x.split()[1]) for x in status if x.startswith("VmRSS"))
        row = {"t": time.time(), "rss_kib": rss, "used_kib": info.uordblks // 1024,
               "free_kib": info.fordblks // 1024, "mapped_kib": info.hblkhd // 1024,
               "types": dict(counts.most_common(80))}  # fmt: skip
        if frames:
            snap = tracemalloc.take_snapshot()
            if before is not None:
                grew = snap.compare_to(before, "traceback")[:15]
                row["grew"] = [
                    [s.size_diff, s.count_diff, [f"{f.filename}:{f.lineno}" for f in s.traceback]]
                    for s in grew
                ]
            before = snap
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


if b"gossamer.proxy" in _cmdline() and os.environ.get("SOAK_PROBE_DIR"):
    threading.Thread(target=_probe, args=(os.environ["SOAK_PROBE_DIR"],), daemon=True,
                     name="soak-probe").start()  # fmt: skip
