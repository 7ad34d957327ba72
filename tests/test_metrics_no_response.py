"""A request that got no answer at all has one name everywhere: `none`.

The proxy counts it three ways: `gossamer_proxy_response_total{status_class}`
(and `/stats`, which `gossamer stat` reads), its `http.responses.<class>`
counter (`gossamer_proxy_events_total{event}` and SIGUSR1's log line, both
from `Tally.snapshot`). They used to disagree: `none` in the first,
`http.responses.0xx` in the other two. The end-to-end case is a gRPC call
that web's sidecar times out before db's app answers: db sees its client
reset the call, no status (tests/test_proxy_h2_timeouts.py).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gossamer.proxy.edge_metrics import CLASSES, EdgeMetrics, class_index
from gossamer.proxy.http_limits import Limits
from gossamer.proxy.metrics_families import families
from gossamer.proxy.prom_text import render
from tests.harness.poll import eventually_async
from tests.test_proxy_h2_timeouts import MESSAGE, _mesh, _unary

IN_EDGE = 'direction="inbound",source="web",destination="db"'


@pytest.mark.parametrize(("status", "name"), [
    (0, "none"), (42, "none"), (99, "none"), (100, "1xx"), (101, "1xx"), (200, "2xx"),
    (304, "3xx"), (403, "4xx"), (499, "4xx"), (500, "5xx"), (599, "5xx"), (600, "none"),
    (999, "none"), (1000, "none"),
])  # fmt: skip
def test_a_status_has_one_class_for_the_edge_and_the_counter(status: int, name: str) -> None:
    assert CLASSES[class_index(status)] == name
    m = EdgeMetrics("db")
    m.inbound("web").answered(status, 0.001, "/")
    assert m.inbound("web").routes["/"].by_class() == {name: 1}


@pytest.mark.parametrize("mode", ["mux", "tls"])
async def test_a_call_with_no_answer_is_none_in_every_count(mode: str) -> None:
    async with _mesh(mode, web=Limits(0.5, 0.0, 0.0)) as mesh:
        code, details, _ = await asyncio.to_thread(_unary, mesh.target, "/t.T/Silent", 20)
        assert (code, details) == (grpc.StatusCode.DEADLINE_EXCEEDED, MESSAGE)

        def counted() -> bool:
            return mesh.db.tally.snapshot().get("http.responses.none") == 1

        await eventually_async(counted, 5)
        snapshot = mesh.db.tally.snapshot()  # what SIGUSR1 logs and events_total renders
        assert "http.responses.0xx" not in snapshot
        text = render(families([(mesh.db.metrics, mesh.db.tally)], 0.0))
        assert 'gossamer_proxy_events_total{service="db",event="http.responses.none"} 1' in text
        assert "0xx" not in text
        responses = [line for line in text.splitlines()
                     if line.startswith(f"gossamer_proxy_response_total{{{IN_EDGE}")]  # fmt: skip
        assert responses and all('status_class="none"' in line for line in responses), responses
