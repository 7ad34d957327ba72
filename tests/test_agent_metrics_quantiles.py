"""The quantile lines of the agent's Prometheus summaries (metrics_figures.Recent). Pure.

Consul's Prometheus sink serves each timing summary with 0.5, 0.9 and 0.99
quantiles over the last 10 s; dashboards built on Consul read them. Here:
nearest rank over the window, NaN when it is empty, memory bounded.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from gossamer.agent.http.metrics_figures import (
    HTTP_SAMPLE,
    WINDOW_MOST,
    WINDOW_S,
    Figures,
    HttpFigures,
    Recent,
    metrics_json,
)
from gossamer.agent.http.metrics_prom import prometheus_text


def test_nearest_rank_of_one_to_a_hundred() -> None:
    r = Recent()
    for v in range(100, 0, -1):  # (order of arrival does not matter)
        r.add(float(v), 0.0)
    assert r.quantiles(1.0) == [50.0, 90.0, 99.0]


def test_one_observation_is_every_quantile() -> None:
    r = Recent()
    r.add(7.5, 3.0)
    assert r.quantiles(3.0) == [7.5, 7.5, 7.5]


def test_an_empty_window_is_nan_and_old_observations_leave_it() -> None:
    r = Recent()
    assert all(math.isnan(q) for q in r.quantiles(0.0))
    r.add(1000.0, 0.0)
    r.add(1.0, 5.0)
    assert r.quantiles(9.9) == [1.0, 1000.0, 1000.0]
    assert r.quantiles(WINDOW_S + 0.1) == [1.0, 1.0, 1.0]  # the first is past its 10 s
    assert all(math.isnan(q) for q in r.quantiles(5.0 + WINDOW_S))


def test_a_busy_series_keeps_only_its_newest() -> None:
    r = Recent()
    for v in range(WINDOW_MOST * 4):
        r.add(float(v), 1.0)
    assert r.quantiles(1.0)[0] >= WINDOW_MOST * 3  # the oldest three quarters are gone


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=300))
def test_quantiles_are_ordered_and_within_what_was_seen(values: list[float]) -> None:
    r = Recent()
    for v in values:
        r.add(v, 0.0)
    q50, q90, q99 = r.quantiles(0.0)
    kept = values[-WINDOW_MOST:]
    assert min(kept) <= q50 <= q90 <= q99 <= max(kept)
    assert q99 in kept


def test_the_prometheus_text_has_a_line_per_quantile_then_sum_and_count() -> None:
    http = HttpFigures()
    for ms in (1.0, 2.0, 3.0, 4.0):
        http.record("GET", "agent_self", 200, ms, 100.0)
    body = metrics_json("t", Figures(), http, 1.0)
    text = prometheus_text(body, http.quantiles(100.5))
    lines = [line for line in text.splitlines() if line.startswith("consul_api_http")]
    assert lines == [
        'consul_api_http{method="GET",path="agent_self",quantile="0.5"} 2',
        'consul_api_http{method="GET",path="agent_self",quantile="0.9"} 4',
        'consul_api_http{method="GET",path="agent_self",quantile="0.99"} 4',
        'consul_api_http_sum{method="GET",path="agent_self"} 10',
        'consul_api_http_count{method="GET",path="agent_self"} 4',
    ]
    later = prometheus_text(body, http.quantiles(100.0 + WINDOW_S))  # a quiet 10 s: NaN
    assert 'consul_api_http{method="GET",path="agent_self",quantile="0.99"} NaN' in later
    assert HTTP_SAMPLE == "consul.api.http"


def test_a_sample_without_a_window_has_no_quantile_lines() -> None:
    """Durations the agent keeps as count and sum only (sync rounds) stay as they were."""
    figures = Figures(samples=[{"Name": "consul.sync", "Count": 2, "Sum": 3.0, "Labels": {}}])
    text = prometheus_text(metrics_json("t", figures, HttpFigures(), 1.0), {})
    assert "quantile" not in text
    assert "consul_sync_sum 3" in text
