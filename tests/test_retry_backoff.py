"""The wait before an HTTP retry (proxy/retry_backoff.py), as a pure core: by table, and by
Hypothesis for what holds for any retry number, draw and base; and whether an upstream has
elsewhere to send at once a try that reached no app (HttpUpstream.elsewhere)."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.proxy.http_codec import Exchange
from gossamer.proxy.http_upstream import HttpUpstream
from gossamer.proxy.retry_backoff import BASE_S, CAP_S, delay_s, interval_s

INF = math.inf


@pytest.mark.parametrize(
    ("retry", "longest_ms"),
    [(0, 0.0), (-3, 0.0), (1, 25.0), (2, 75.0), (3, 175.0), (4, 250.0), (5, 250.0),
     (59, 250.0), (60, 250.0), (1000, 250.0)],
)  # fmt: skip
def test_the_longest_wait_grows_as_envoy_s_until_its_cap(retry: int, longest_ms: float) -> None:
    assert interval_s(retry) * 1000 == pytest.approx(longest_ms)


@pytest.mark.parametrize(
    ("retry", "draw", "left_s", "at_once", "wait_s"),
    [
        (1, 0.0, INF, False, 0.0),  # full jitter: a wait of nothing may be drawn
        (1, 1.0, INF, False, 0.025),
        (2, 0.5, INF, False, 0.0375),
        (3, 0.5, INF, False, 0.0875),
        (9, 0.5, INF, False, 0.125),
        (9, 7.0, INF, False, 0.25),  # a draw out of [0, 1] is clamped into it
        (9, -1.0, INF, False, 0.0),
        (3, 0.9, INF, True, 0.0),  # it reached no app and another instance may take it
        (3, 0.5, 0.0875, False, None),  # the wait would end at the deadline: no retry
        (3, 0.5, 0.09, False, 0.0875),
        (1, 0.5, 0.0, True, None),  # the deadline has passed: no retry, even at once
        (1, 0.5, -1.0, False, None),
    ],
)
def test_the_wait_before_a_retry(retry: int, draw: float, left_s: float, at_once: bool,
                                 wait_s: float | None) -> None:  # fmt: skip
    got = delay_s(retry, draw, left_s, at_once=at_once)
    assert got == (None if wait_s is None else pytest.approx(wait_s))


retries = st.integers(min_value=-5, max_value=5000)
draws = st.floats(min_value=-2.0, max_value=3.0, allow_nan=False)
bases = st.floats(min_value=1e-4, max_value=1.0)


@settings(max_examples=500, deadline=None)
@given(retries, draws, bases)
def test_a_wait_is_never_negative_nor_past_its_cap(retry: int, draw: float, base: float) -> None:
    wait = delay_s(retry, draw, INF, base_s=base, cap_s=10 * base)
    assert wait is not None and 0.0 <= wait <= 10 * base
    assert wait <= interval_s(retry, base, 10 * base)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=200), bases)
def test_the_longest_wait_grows_until_the_cap_then_stays(retry: int, base: float) -> None:
    cap = 10 * base
    now, after = interval_s(retry, base, cap), interval_s(retry + 1, base, cap)
    assert now <= after <= cap
    if now < cap:
        assert after > now  # still growing: the next one is longer
    else:
        assert after == cap


@settings(max_examples=300, deadline=None)
@given(retries, draws, st.floats(min_value=-1.0, max_value=1.0, allow_nan=False))
def test_a_wait_that_is_made_ends_before_the_deadline(retry: int, draw: float,
                                                      left_s: float) -> None:  # fmt: skip
    wait = delay_s(retry, draw, left_s)
    assert wait is None or 0.0 <= wait < left_s
    assert (wait is None) == (delay_s(retry, draw, INF) >= left_s)  # type: ignore[operator]


def test_the_defaults_are_envoy_s() -> None:
    assert (BASE_S, CAP_S) == (0.025, 0.25)


class _Listener:
    """What HttpUpstream reads of its listener to tell whether a retry has elsewhere to go."""

    def __init__(self, instances: list[str]) -> None:
        self.instances = instances
        self.outliers = SimpleNamespace(ejected=lambda now_ms: set())  # (none ejected)
        self.upstream = SimpleNamespace(name="db", request_timeout_s=15.0, request_idle_s=300.0,
                                        client_idle_s=3600.0, retry_ratio=0.2,
                                        retry_min_per_s=10.0)  # fmt: skip

    def instances_for(self, service: str) -> list[str]:
        return self.instances if service == "db" else []


def test_a_retry_has_elsewhere_to_go_where_its_next_try_would_go() -> None:
    """A try that reached no app is sent again at once when its next try goes to another
    instance: one it has not failed on, even one set aside (a failure of another request's
    skips it for a second), as the pick goes there (balance.choose_for_request). Only the
    outlier-free, unskipped ones counted, a retry waited its back-off when the other
    instance had just failed some other request."""
    host = HttpUpstream(_Listener(["a", "b"]))  # type: ignore[arg-type]
    ex = Exchange("POST", b"/", True, False, None, 0.0, False)
    ex.target = "db"
    assert host.elsewhere(ex)
    ex.failed_on = ("a",)
    host.avoid["b"] = time.monotonic() + 60  # "b" set aside after someone else's failure
    assert host.elsewhere(ex)
    ex.failed_on = ("a", "b")
    assert not host.elsewhere(ex)  # its next try goes back where it failed: it waits
    assert not HttpUpstream(_Listener(["a"])).elsewhere(  # type: ignore[arg-type]
        _failed_on(("a",))
    )


def _failed_on(where: tuple[str, ...]) -> Exchange:
    ex = Exchange("GET", b"/", True, False, None, 0.0, False)
    ex.target, ex.failed_on = "db", where
    return ex
