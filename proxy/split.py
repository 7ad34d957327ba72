"""Which service a request (or an L4 connection) to a split upstream goes to. Pure.

A `service-splitter` entry (catalog/config_entries.py) gives each target
service a weight in hundredths of a percent, summing to 10,000. A draw
`u` in [0, 1) picks the target whose cumulative range holds `u * 10,000`,
in the entry's order, so a target of weight `w` is picked with probability
`w / 10,000` exactly and a zero weight never. The draw is passed in
(`random.Random.random()` in the proxy), so tests are repeatable.

A target with no healthy instance still gets its share and those requests
fail (503), as Envoy's weighted clusters do: quietly moving a canary's
traffic onto the stable service would hide that the canary is down.
"""

from __future__ import annotations

from collections.abc import Sequence

from gossamer.catalog.config_entries import WEIGHT_TOTAL, Split


def choose(splits: Sequence[Split], draw: float) -> str:
    """The target service for one draw `u` in [0, 1); `splits` must be a checked entry's."""
    upto = 0
    for split in splits:
        upto += split.weight
        if draw < upto / WEIGHT_TOTAL:  # the bound computed as a draw of k/10,000 is: exact
            return split.service
    return next(s.service for s in reversed(splits) if s.weight > 0)  # float edge: the last
