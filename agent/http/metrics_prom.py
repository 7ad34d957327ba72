"""`/v1/agent/metrics?format=prometheus`: the JSON answer's figures in Prometheus's text. Pure.

One source for both forms, as Consul's in-memory and Prometheus sinks see
the same figures: each JSON entry becomes one sample. Names: dots become
underscores (`consul.api.http` -> `consul_api_http`); a gauge keeps its
name; a counter gets `_total`; a sample (a timing, in ms as Consul's) is a
summary with `_sum` and `_count`, and with a line per quantile where the
caller kept them (request timings: metrics_figures.Recent). Labels are
sorted by name, `quantile` last as Prometheus's clients put it, so a
scrape reads the same series in the same order every time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gossamer.agent.http.metrics_figures import QUANTILES, SeriesKey
from gossamer.proxy.prom_text import Family, number, render, safe_name


def prometheus_text(
    body: dict[str, Any], quantiles: Mapping[SeriesKey, Sequence[float]] | None = None
) -> str:
    families: dict[str, Family] = {}

    def family(name: str, kind: str, help_text: str) -> Family:
        found = families.get(name)
        if found is None:
            found = families[name] = Family(name, kind, help_text)
        return found

    for g in body["Gauges"]:
        family(safe_name(g["Name"]), "gauge", f"{g['Name']} (gauge)").add(g["Value"], _labels(g))
    for c in body["Counters"]:
        name = safe_name(c["Name"]) + "_total"
        family(name, "counter", f"{c['Name']} (counter)").add(c["Sum"], _labels(c))
    for s in body["Samples"]:
        f = family(safe_name(s["Name"]), "summary", f"{s['Name']} (sample, ms)")
        kept = (quantiles or {}).get((s["Name"], tuple(sorted(s["Labels"].items()))))
        for q, value in zip(QUANTILES, kept or (), strict=False):
            f.add(value, [*_labels(s), ("quantile", number(q))])
        f.add(s["Sum"], _labels(s), "_sum")
        f.add(s["Count"], _labels(s), "_count")
    return render(families[name] for name in sorted(families))


def _labels(entry: dict[str, Any]) -> list[tuple[str, str]]:
    return [(safe_name(k), str(v)) for k, v in sorted(entry["Labels"].items())]
