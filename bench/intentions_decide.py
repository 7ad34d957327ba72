"""Decisions per second of the pure `decide()` with 10, 1,000 and 10,000 intentions.

Printed, not asserted. Each set holds random, realistic service names, half
L4 and half L7 intentions (three permissions each, on paths, methods and a
header), plus a few wildcard rules. Queries mix pairs that hit an exact
intention, pairs that fall to a wildcard and pairs that match nothing, half
of them with an HTTP request. The figure should barely move with the set's
size: the index makes a decision at most four dict look-ups, not a scan.
Two query mixes are timed: "spread" (random pairs over the whole set, the
worst case for CPU caches: at 10,000 intentions most look-ups miss them, which
is what slows that column down) and "hot" (12 exact pairs, 6 L4 and 6 L7,
cycling, as one proxy enforcing for one destination sees), which shows the look-up cost itself.

    .venv/bin/python bench/intentions_decide.py [--decisions 50000] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossamer.intentions import (  # noqa: E402
    HeaderMatch,
    HTTPMatch,
    HttpRequest,
    Intention,
    IntentionSet,
    Permission,
    decide,
)

SIZES = (10, 1_000, 10_000)
# Space-separated for brevity; the formatter would put one name per line.
TEAMS = "billing checkout search catalog auth orders payments users inventory".split()  # noqa: SIM905
ROLES = "api web worker db cache gateway indexer cron grpc admin reviews".split()  # noqa: SIM905
REQUESTS = (
    HttpRequest("GET", "/v1/items/42", {"x-tenant": "acme"}),
    HttpRequest("POST", "/v1/orders", {"x-tenant": "globex"}),
    HttpRequest("GET", "/healthz"),
    HttpRequest("DELETE", "/admin/users/7", {"x-debug": "1"}),
)


def service_names(rnd: random.Random, count: int) -> list[str]:
    """Distinct names like `payments-api-3`."""
    names: set[str] = set()
    while len(names) < count:
        names.add(f"{rnd.choice(TEAMS)}-{rnd.choice(ROLES)}-{rnd.randrange(1000)}")
    return sorted(names)


def l7_permissions(rnd: random.Random) -> tuple[Permission, ...]:
    """Deny /admin, allow GET/POST on a versioned resource, allow /healthz without x-debug."""
    resource = rnd.choice(("items", "orders"))
    no_debug = (HeaderMatch("x-debug", present=True, invert=True),)
    return (
        Permission("deny", HTTPMatch(path_prefix="/admin")),
        Permission(
            "allow", HTTPMatch(path_regex=rf"/v[0-9]+/{resource}.*", methods=("GET", "POST"))
        ),
        Permission("allow", HTTPMatch(path_exact="/healthz", headers=no_debug)),
    )


def build(rnd: random.Random, size: int) -> tuple[list[Intention], list[str]]:
    """`size` intentions over about sqrt-many services, and the services' names."""
    names = service_names(rnd, max(8, int(size**0.5) * 3))
    pairs: set[tuple[str, str]] = {("*", "*")}
    for _ in range(max(1, size // 100)):  # a few wildcard rules, as real policies have
        pairs.add(("*", rnd.choice(names)))
        pairs.add((rnd.choice(names), "*"))
    while len(pairs) < size:
        pairs.add((rnd.choice(names), rnd.choice(names)))
    ixns = []
    for k, (src, dst) in enumerate(sorted(pairs)[:size]):
        if k % 2 and dst != "*":
            ixns.append(Intention(src, dst, None, l7_permissions(rnd)))
        else:
            ixns.append(Intention(src, dst, rnd.choice(("allow", "deny"))))
    return ixns, names


Query = tuple[str, str, HttpRequest | None]


def queries(rnd: random.Random, ixns: list[Intention], names: list[str], count: int) -> list[Query]:
    """Two thirds existing exact pairs, one third random pairs; half with a request."""
    exact = [i.pair for i in ixns if "*" not in i.pair]
    out = []
    for k in range(count):
        pair = rnd.choice(exact) if k % 3 and exact else (rnd.choice(names), rnd.choice(names))
        out.append((*pair, rnd.choice(REQUESTS) if k % 2 else None))
    return out


def run(iset: IntentionSet, qs: list[Query]) -> float:
    """Decisions per second over `qs`."""
    start = time.perf_counter()
    for src, dst, req in qs:
        decide(iset, src, dst, request=req, default_allow=False)
    return len(qs) / (time.perf_counter() - start)


def hot(ixns: list[Intention], count: int) -> list[Query]:
    """`count` queries cycling over up to 6 exact L4 and 6 L7 pairs, as one proxy sees.

    The same shape at every size (alternating L4/L7, every other query with a
    request), so the columns differ only by the size of the set.
    """
    exact = [i for i in ixns if "*" not in i.pair]
    l4 = [i.pair for i in exact if not i.permissions][:6]
    l7 = [i.pair for i in exact if i.permissions][:6]
    mix = [p for pair in zip(l4, l7, strict=False) for p in pair]
    return [(*mix[k % len(mix)], REQUESTS[k % 4] if k % 4 >= 2 else None) for k in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=50_000, help="per run")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rnd = random.Random(5)
    rows: list[tuple[int, float, float, float]] = []
    for size in SIZES:
        ixns, names = build(rnd, size)
        t0 = time.perf_counter()
        iset = IntentionSet(ixns)
        build_ms = (time.perf_counter() - t0) * 1000
        spread = queries(rnd, ixns, names, args.decisions)
        local = hot(ixns, args.decisions)
        rates = [
            statistics.median(run(iset, qs) for _ in range(args.runs)) for qs in (spread, local)
        ]
        rows.append((size, build_ms, rates[0], rates[1]))
    print(
        f"decide(): decisions per second, median of {args.runs} runs of {args.decisions:,}; "
        "half L4 / half L7 intentions, half the queries with an HTTP request"
    )
    print("  spread: random pairs over the whole set; hot: 12 exact pairs, as one proxy sees")
    print(
        f"{'intentions':>10}  {'build':>9}  {'spread/s':>11}  {'vs 10':>5}  "
        f"{'hot/s':>11}  {'vs 10':>5}"
    )
    for size, build_ms, spread_rate, hot_rate in rows:
        print(
            f"{size:>10,}  {build_ms:>7.1f}ms  {spread_rate:>11,.0f}  "
            f"{spread_rate / rows[0][2]:>5.2f}  {hot_rate:>11,.0f}  {hot_rate / rows[0][3]:>5.2f}"
        )


if __name__ == "__main__":
    main()
