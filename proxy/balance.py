"""Which instance a new upstream connection goes to: power of two choices. Pure.

Why p2c over outstanding connections (and not Consul's uniform random, nor
Linkerd's peak-EWMA): the proxy is L4, so the one load signal it sees for
every instance at once, without probing, is how many connections it holds
open to each. Picking two instances at random and taking the one with
fewer open connections keeps the busiest instance's load within
O(log log n) of the mean (Mitzenmacher 2001), where uniform random gives
O(log n / log log n); a slow instance holds its connections longer and so
gets fewer new ones, which is most of what latency-EWMA buys for long-lived
L4 connections, without its decay constants. Ties go to the first draw.

Instances excluded by the caller (already tried for this connection, or
set aside by outlier.py) are never chosen; when only one is left it is
chosen without a draw. The random source is passed in, so tests are
repeatable.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from typing import TypeVar

K = TypeVar("K")


def choose(
    candidates: Sequence[K],
    outstanding: Mapping[K, float],  # or any load: peak_ewma.py passes latency costs
    rng: random.Random,
    exclude: Collection[K] = (),
) -> K | None:
    """The instance for the next connection, or None when every candidate is excluded."""
    pool = [c for c in candidates if c not in exclude] if exclude else list(candidates)
    if not pool:
        return None
    if len(pool) == 1:
        return pool[0]
    first, second = rng.sample(pool, 2)
    if outstanding.get(second, 0) < outstanding.get(first, 0):
        return second
    return first


def choose_for_request(
    candidates: Sequence[K],
    costs: Mapping[K, float],
    rng: random.Random,
    set_aside: Collection[K],  # outliers, instances that just failed, ones tried this attempt
    failed_here: Collection[K],  # where this request's earlier attempts failed
) -> K | None:
    """The instance for one HTTP request (or its retry): among those neither set aside nor
    failed for it; when that leaves none, the least bad where it has not failed; when it
    failed everywhere, anywhere (a new connection may do better than the failed one)."""
    instance = choose(candidates, costs, rng, {*set_aside, *failed_here})
    if instance is None:
        instance = choose(candidates, costs, rng, failed_here)
    if instance is None:
        instance = choose(candidates, costs, rng)
    return instance
