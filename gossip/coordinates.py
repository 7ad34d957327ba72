"""Round-trip estimates from Serf's Vivaldi network coordinates. Pure.

Serf's formula (its `coordinate.DistanceTo`): the Euclidean distance of the
vectors plus both heights, then both adjustments added when that keeps the
estimate positive. Units are seconds.
"""

from __future__ import annotations

import math

from gossamer.gossip.rpc_records import Coordinate


def rtt(a: Coordinate, b: Coordinate) -> float:
    if len(a.vec) != len(b.vec):
        return math.inf  # coordinates from different serf versions do not compare
    distance = math.dist(a.vec, b.vec) + a.height + b.height
    adjusted = distance + a.adjustment + b.adjustment
    return adjusted if adjusted > 0 else distance
