"""Traffic splitting: what a split costs the HTTP path, and how soon a changed split applies.

Printed, not asserted. On the canary mesh of tests/split_support.py (two
real agents, `connect proxy --node` on each, two aiohttp apps `api` and
`api-canary` on s1, `web`'s HTTP upstream of `api` on s2):

- cost: requests/s of sequential GETs over one keep-alive client
  connection through web's HTTP upstream, with no splitter entry and with
  a 90/10 split, in interleaved rounds (`--rounds`, `--requests` each);
  medians and the ratio split/unsplit (1.0: the draw costs nothing you can
  see end to end). Each switch waits until web's proxy has logged it.
- apply time: a split written on s1 (py-consul), the clock stopped at the
  first request through s2's proxy that the new split routes (0/100 and
  100/0 alternating, `--changes`): replication between agents, the blocking
  watch's wake-up and the proxy's apply, as a client sees them.

    .venv/bin/python bench/split_apply.py [--rounds 5] [--requests 1000] [--changes 10]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.poll import eventually  # noqa: E402
from tests.split_support import Mesh, one, split_mesh  # noqa: E402


def splits(api: float, canary: float) -> dict[str, object]:
    return {"Splits": [{"Weight": api, "Service": "api"},
                       {"Weight": canary, "Service": "api-canary"}]}  # fmt: skip


def applied_lines(mesh: Mesh) -> int:
    return mesh.client_proxy.log().count("proxy: upstream api split:")


def switch(mesh: Mesh, split: tuple[float, float] | None) -> None:
    """Write (or delete) the splitter and wait until web's proxy logs that it applied it
    (the first delete changes nothing: there is no entry yet)."""
    before = applied_lines(mesh)
    if split is None and before == 0:
        return
    if split is None:
        mesh.writer.config.delete("service-splitter", "api")
    else:
        mesh.writer.config.set("service-splitter", "api", splits(*split))
    eventually(lambda: applied_lines(mesh) > before, 20, what="web's proxy to apply it")


def rate(mesh: Mesh, n: int) -> float:
    conn = http.client.HTTPConnection(*mesh.http_up, timeout=10)
    start = time.perf_counter()
    for _ in range(n):
        conn.request("GET", "/echo/bench")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def cost(mesh: Mesh, rounds: int, requests: int) -> None:
    plain: list[float] = []
    split: list[float] = []
    for _ in range(rounds):
        switch(mesh, None)
        plain.append(rate(mesh, requests))
        switch(mesh, (90, 10))
        split.append(rate(mesh, requests))
    p, s = statistics.median(plain), statistics.median(split)
    print(f"requests/s, one keep-alive connection, {requests} sequential GETs x {rounds} rounds")
    print(f"  no splitter: median {p:,.0f}  (rounds {', '.join(f'{x:,.0f}' for x in plain)})")
    print(f"  90/10 split: median {s:,.0f}  (rounds {', '.join(f'{x:,.0f}' for x in split)})")
    print(f"  ratio split / unsplit: {s / p:.3f}")


def apply_times(mesh: Mesh, changes: int) -> None:
    conn = http.client.HTTPConnection(*mesh.http_up, timeout=10)
    times: list[float] = []
    for i in range(changes):
        target, weights = ("api-canary", (0, 100)) if i % 2 == 0 else ("api", (100, 0))
        mesh.writer.config.set("service-splitter", "api", splits(*weights))
        start = time.perf_counter()
        while one(mesh, conn) != target:
            pass
        times.append(time.perf_counter() - start)
    conn.close()
    ms = sorted(t * 1000 for t in times)
    print(f"write on s1 -> first request routed by it through s2's proxy ({changes} changes)")
    print(f"  median {statistics.median(ms):.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="split-bench-") as tmp, split_mesh(Path(tmp)) as mesh:
        cost(mesh, args.rounds, args.requests)
        apply_times(mesh, args.changes)


if __name__ == "__main__":
    main()
