"""proxy/split.py: a service-splitter's pick, as a table and as properties (Hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.catalog.config_entries import WEIGHT_TOTAL, Split
from gossamer.proxy.split import choose

CANARY = (Split(9000, "api"), Split(1000, "api-canary"))


@pytest.mark.parametrize(
    ("splits", "draw", "service"),
    [
        (CANARY, 0.0, "api"),
        (CANARY, 0.89999, "api"),
        (CANARY, 0.9, "api-canary"),
        (CANARY, 0.99999999, "api-canary"),
        ((Split(0, "api"), Split(10000, "api-canary")), 0.0, "api-canary"),
        ((Split(10000, "api"), Split(0, "api-canary")), 0.9999999999, "api"),
        ((Split(3333, "a"), Split(3334, "b"), Split(3333, "c")), 0.3333, "b"),
        ((Split(3333, "a"), Split(3334, "b"), Split(3333, "c")), 0.6667, "c"),
    ],
)
def test_choose_table(splits: tuple[Split, ...], draw: float, service: str) -> None:
    assert choose(splits, draw) == service


@st.composite
def splitters(draw: st.DrawFn) -> tuple[Split, ...]:
    """Weights in hundredths summing to 10,000 over 1-5 services (zeros allowed)."""
    cuts = sorted(draw(st.lists(st.integers(0, WEIGHT_TOTAL), min_size=0, max_size=4)))
    bounds = [0, *cuts, WEIGHT_TOTAL]
    return tuple(Split(b - a, f"s{i}") for i, (a, b) in enumerate(itertools.pairwise(bounds)))


@given(splitters(), st.floats(0.0, 1.0, exclude_max=True))
def test_a_draw_lands_on_a_weighted_service(splits: tuple[Split, ...], draw: float) -> None:
    chosen = choose(splits, draw)
    assert next(s for s in splits if s.service == chosen).weight > 0


@given(splitters())
def test_every_hundredth_of_the_range_goes_where_its_weight_says(splits: tuple[Split, ...]) -> None:
    """Walking every point of the 10,000 gives each service exactly its weight: no bias."""
    counts: dict[str, int] = {}
    for point in range(WEIGHT_TOTAL):
        service = choose(splits, point / WEIGHT_TOTAL)
        counts[service] = counts.get(service, 0) + 1
    assert counts == {s.service: s.weight for s in splits if s.weight}
