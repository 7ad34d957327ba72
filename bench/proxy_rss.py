"""What a proxy's RSS is made of: imports, then a sidecar pair idle and through proxy_pair's load.

Printed, not asserted (tests/test_proxy_footprint.py guards the import set).
1. Imports: VmRSS of a fresh interpreter after importing, in turn, the big
   pieces of the proxy's import set (the standard library's, uvloop,
   httptools, gossamer's packages), each line the growth it caused.
2. A pair as bench/proxy_pair.py starts it (a real agent, nginx, the db and
   web sidecars pinned to one CPU, L4 or `--http`): each proxy's VmRSS, and
   its anonymous and file-backed parts (/proc/<pid>/smaps_rollup), idle and
   after each of proxy_pair's loads in turn (c1, c64, 1 MiB bodies, new
   connections with `Connection: close`; private and proportional (PSS)
   parts too, what each process holds alone and its share of the pages the
   processes share), then again after `--repeat` more
   rounds of new connections and a rest, and once more past the pool's
   idle timeout (every pooled connection closed): a figure that keeps
   growing with the connections served is a leak, not a working set.
   `--workers N`: each sidecar with N worker processes, every one shown.

    .venv/bin/python bench/proxy_rss.py [--http] [--seconds 3] [--repeat 2] [--workers N]
        [--installed]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.installed import FLAG, reexec_if_asked  # noqa: E402
from bench.proxy_pair import gossamer_pair, wrk  # noqa: E402
from gossamer.proxy.protocol import POOL_IDLE_TIMEOUT_S  # noqa: E402

STEPS = ("logging", "dataclasses", "json", "asyncio", "ssl", "uvloop", "httptools",
         "gossamer.intentions", "gossamer.catalog.config_entries", "gossamer.proxy.authorize",
         "gossamer.proxy.runtime", "gossamer.proxy.__main__")  # fmt: skip
_STEP_SCRIPT = """
import sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
last = rss()
print(f"  {'interpreter':34} {last:5.1f} MiB")
for name in sys.argv[1:]:
    __import__(name)
    now = rss()
    print(f"  {name:34} {now:5.1f} MiB  +{now - last:4.1f}")
    last = now
"""


def rss_parts(pid: int) -> str:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    rss, anon, pss = fields["Rss"], fields["Anonymous"], fields["Pss"]
    private = fields["Private_Clean"] + fields["Private_Dirty"]
    return (f"{rss:5.1f} MiB (anon {anon:4.1f}, file {rss - anon:4.1f}; "
            f"private {private:4.1f}, PSS {pss:4.1f})")  # fmt: skip


def show(label: str, pids: list[int]) -> None:
    print(f"  {label:28}" + "   ".join(rss_parts(pid) for pid in pids), flush=True)


def main() -> None:
    reexec_if_asked(sys.argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(FLAG, action="store_true", help="as `pip install .` runs (installed.py)")
    parser.add_argument("--http", action="store_true", help="both sidecars parse HTTP (L7)")
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="more rounds of new connections")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per sidecar")
    args = parser.parse_args()
    how = "installed" if args.installed else "editable install"
    print(f"Imports (Python {sys.version.split()[0]}, {how}):")
    subprocess.run([sys.executable, "-c", _STEP_SCRIPT, *STEPS], check=True)
    s = args.seconds
    with gossamer_pair("proxy-rss-", ("0", "1"), args.http, args.workers) as pair:
        pids, port = pair.pids, pair.ports[1]
        print(f"{'L7' if args.http else 'L4'} pair, db sidecar then web sidecar"
              + (", then db's workers, then web's:" if args.workers > 1 else ":"))  # fmt: skip
        show("idle", pids)
        for label, conns, path, extra in (
            ("c1", 1, "/small", ()), ("c64", 64, "/small", ()), ("1 MiB bodies", 4, "/big", ()),
            ("new connections", 16, "/small", ("-H", "Connection: close")),
        ):  # fmt: skip
            wrk(port, path, conns, s, "0", *extra)
            show(f"after {label}", pids)
        for _ in range(args.repeat):
            wrk(port, "/small", 16, s, "0", "-H", "Connection: close")
        time.sleep(5)
        show(f"+{args.repeat} new-conn rounds, rest", pids)
        # past the pool's idle timeout every pooled connection is closed: what a finished
        # stream or session still holds now is a leak, not the pool's working set
        time.sleep(POOL_IDLE_TIMEOUT_S + 3 - 5)
        show(f"{POOL_IDLE_TIMEOUT_S + 3:.0f} s idle, pool closed", pids)


if __name__ == "__main__":
    main()
