"""What the proxies still run as bytecode per request, with the data path compiled.

Printed, not asserted. Compiled functions (proxy/native.py) make no Python
frames, so a profile hook (`sys.setprofile`) sees only what is interpreted:
a dataclass's generated `__init__`, a NamedTuple's `__new__`, a standard
library method written in Python. Each costs a frame (~0.3 µs cold), and
at one connection, where every wake-up starts cold, they add up.

The pair of bench/proxy_pair.py (agent, nginx, the db and web sidecars as
the product runs them), started with a `sitecustomize` on PYTHONPATH that
installs a counting hook in the processes running `gossamer.proxy` (the
agent and the CLI are left alone) and writes its counts on SIGUSR2. For L4
and L7, one keep-alive connection and then `Connection: close`; each
function called at least `--min` times a request, per sidecar.

    .venv/bin/python bench/interpreted_calls.py [--seconds 3] [--min 0.5]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.proxy_pair import _requests, gossamer_pair, wrk  # noqa: E402
from tests.harness.poll import eventually  # noqa: E402

# Installed in the proxy processes only; counts interpreted calls by function (and, for code
# made by exec or eval, by the class it builds); SIGUSR2 writes the counts and starts afresh.
HOOK = """
import os, signal, sys
if "gossamer.proxy" in sys.orig_argv and os.environ.get("INTERPRETED_OUT"):
    counts = {}
    def _count(frame, event, arg):
        if event == "call":
            code = frame.f_code
            key = f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno} {code.co_name}"
            if code.co_filename.startswith("<"):
                made = frame.f_locals.get("self", frame.f_locals.get("_cls"))
                key += " of " + (made.__qualname__ if isinstance(made, type)
                                 else type(made).__qualname__)
            counts[key] = counts.get(key, 0) + 1
    def _write(*_):
        sys.setprofile(None)
        seen = dict(counts)
        counts.clear()
        path = f"{os.environ['INTERPRETED_OUT']}.{os.getpid()}"
        with open(path + ".tmp", "w") as out:
            for key, n in sorted(seen.items(), key=lambda kv: -kv[1]):
                out.write(f"{n}\\t{key}\\n")
        os.replace(path + ".tmp", path)
        sys.setprofile(_count)
    signal.signal(signal.SIGUSR2, _write)
    sys.setprofile(_count)
"""


def counts(out: Path, pid: int) -> dict[str, int]:
    rows = (
        line.split("\t", 1) for line in out.with_name(f"{out.name}.{pid}").read_text().splitlines()
    )
    return {key: int(n) for n, key in rows}


def snapshot(out: Path, pids: list[int]) -> list[dict[str, int]]:
    """Each proxy's counts since the last snapshot (the hook starts afresh on each signal)."""
    for pid in pids:
        out.with_name(f"{out.name}.{pid}").unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR2)
    eventually(lambda: all(out.with_name(f"{out.name}.{p}").exists() for p in pids), 10,
               what="the proxies' counts")  # fmt: skip
    return [counts(out, pid) for pid in pids]


RUNS = (("keep-alive, c1", 1, ()), ("Connection: close, c16", 16, ("-H", "Connection: close")))


def one_pair(http: bool, out: Path, cpus: tuple[str, str], seconds: int, least: float) -> None:
    with gossamer_pair("interpreted-", cpus, http) as pair:
        port = pair.ports[1]
        for label, conns, extra in RUNS:
            wrk(port, "/small", conns, 1, cpus[0], *extra)  # warm-up
            snapshot(out, pair.pids)
            requests = _requests(wrk(port, "/small", conns, seconds, cpus[0], *extra))
            seen = snapshot(out, pair.pids)
            print(f"{'L7' if http else 'L4'}, {label}: {requests:,.0f} requests")
            for role, calls in zip(("db", "web"), seen, strict=True):
                hot = sorted(((n / requests, key) for key, n in calls.items()
                              if n / requests >= least), reverse=True)  # fmt: skip
                print(f"  {role}: {len(hot)} interpreted at >= {least} a request")
                for per, key in hot:
                    print(f"    {per:6.2f}  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--min", type=float, default=0.5, help="calls a request to list")
    parser.add_argument("--cpus", default="0,1", help="wrk and nginx's CPU, the pair's CPU")
    args = parser.parse_args()
    load_cpu, proxy_cpu = args.cpus.split(",")
    with tempfile.TemporaryDirectory(prefix="interpreted-") as raw:
        (Path(raw) / "sitecustomize.py").write_text(HOOK)
        out = Path(raw) / "counts"
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [raw, os.environ.get("PYTHONPATH")])
        )
        os.environ["INTERPRETED_OUT"] = str(out)
        for http in (False, True):
            one_pair(http, out, (load_cpu, proxy_cpu), args.seconds, args.min)


if __name__ == "__main__":
    main()
