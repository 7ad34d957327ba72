"""The agent's `/v1/agent/metrics`, JSON and Prometheus, read as an operator reads them.

One real agent. Its JSON answer has Consul's shape (`Gauges` with `Value`,
`Counters` and `Samples` as summaries with a per-second `Rate`), its
`?format=prometheus` twin carries the same series with the same types, and
`promtool check metrics` finds nothing to say about it.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.proxy.prom_text import safe_name
from tests.harness.binaries import find_binary, needs
from tests.harness.cluster import AgentProc, Cluster

pytestmark = needs("serf")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentProc, float]]:
    """The agent and a time (monotonic) before it started."""
    c = Cluster(Path(tmp_path_factory.mktemp("metrics-agent")))
    before = time.monotonic()
    try:
        (a,) = c.start(1)
        yield a, before
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def _text(a: AgentProc) -> str:
    url = f"{a.http}/v1/agent/metrics?format=prometheus"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text: str = answer.read().decode()
    return text


def _types(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def test_a_running_total_is_a_counter_in_both_forms(agent: tuple[AgentProc, float]) -> None:
    """`gossamer.monitor.dropped_lines` counts the lines dropped since the agent started: a
    counter (Prometheus's `rate()` reads it), not a gauge, as it was."""
    a, _ = agent
    body = a.get("/v1/agent/metrics")
    assert "gossamer.monitor.dropped_lines" in {c["Name"] for c in body["Counters"]}
    assert "gossamer.monitor.dropped_lines" not in {g["Name"] for g in body["Gauges"]}
    types = _types(_text(a))
    assert types.get("gossamer_monitor_dropped_lines_total") == "counter"
    assert "gossamer_monitor_dropped_lines" not in types


def test_a_summarys_rate_is_its_sum_per_second(agent: tuple[AgentProc, float]) -> None:
    """Consul's `Rate` is `Sum` per second of the interval; here the interval is the agent's
    life so far. It was always 0."""
    a, before = agent
    for _ in range(4):
        a.get("/v1/agent/self")
    body = a.get("/v1/agent/metrics")
    alive = time.monotonic() - before  # at least as long as the agent has counted
    for entry in body["Counters"] + body["Samples"]:
        if entry["Sum"]:
            assert entry["Rate"] > 0, entry
            assert entry["Sum"] / entry["Rate"] <= alive, (entry, alive)
        else:
            assert entry["Rate"] == 0, entry


def test_the_prometheus_twin_has_every_json_figure(agent: tuple[AgentProc, float]) -> None:
    a, _ = agent
    body: dict[str, Any] = a.get("/v1/agent/metrics")
    types = _types(_text(a))
    wanted = {safe_name(g["Name"]): "gauge" for g in body["Gauges"]}
    wanted |= {safe_name(c["Name"]) + "_total": "counter" for c in body["Counters"]}
    wanted |= {safe_name(s["Name"]): "summary" for s in body["Samples"]}
    assert {name: types.get(name) for name in wanted} == wanted


def test_request_timings_carry_consuls_quantiles(agent: tuple[AgentProc, float]) -> None:
    """Consul's Prometheus sink serves each timing summary with 0.5, 0.9 and 0.99 quantiles
    over its last 10 s; they were missing, so dashboards reading them showed nothing."""
    a, _ = agent
    for _ in range(5):
        a.get("/v1/agent/self")
    text = _text(a)
    found = dict(re.findall(r'^consul_api_http\{method="GET",path="v1_agent_self",'
                            r'quantile="([0-9.]+)"\} (\S+)$', text, re.MULTILINE))  # fmt: skip
    assert sorted(found) == ["0.5", "0.9", "0.99"], text
    values = [float(found[q]) for q in ("0.5", "0.9", "0.99")]
    assert 0 < values[0] <= values[1] <= values[2], values
    total = re.search(r'^consul_api_http_sum\{method="GET",path="v1_agent_self"\} (\S+)$', text,
                      re.MULTILINE)  # fmt: skip
    assert total is not None and values[2] <= float(total.group(1))


@needs("promtool")
def test_promtool_finds_nothing_to_say(agent: tuple[AgentProc, float]) -> None:
    a, _ = agent
    done = subprocess.run([find_binary("promtool") or "promtool", "check", "metrics"],
                          input=_text(a), capture_output=True, text=True, timeout=30)  # fmt: skip
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
