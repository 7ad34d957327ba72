"""Whether figures have the shape of a proxy's `/stats` answer, as `gossamer stat` reads it. Pure.

Two readers check the same shape: the agent, before it passes a proxy's
figures on (agent/http/proxy_stats_routes.py), and `gossamer stat`
(stat_rows.edges_of), whose input is whatever the agent at the address
answered. The agent needs only this check, not the rows, so it lives apart.
Anything else (another program on a proxy's metrics port, another version)
is `Malformed`, with a message that says where, which each reader turns
into that one proxy's error: it never costs the other proxies' rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class Malformed(ValueError):
    """Figures not shaped as a proxy's `/stats` answer; the message says where."""


def check_stats(stats: object) -> None:
    """Raise `Malformed` unless `stats` is shaped as a proxy's `/stats` answer, as far as the
    rows read it: {"Proxies": [{"Service", "UptimeSeconds", "Edges": [...]}]}, each edge with
    its direction, source and destination, its counts (non-negative integers), its setup
    histogram and its routes. The agent checks what it passes on (proxy_stats_routes.py);
    `edges_of` checks again, as its input is whatever the agent at the address answered."""
    proxies = _field(stats, "Proxies", list, "the answer")
    for i, proxy in enumerate(proxies):
        at = f"Proxies[{i}]"
        _field(proxy, "Service", str, at)
        uptime = _field(proxy, "UptimeSeconds", (int, float), at)
        if not 0.0 <= uptime < math.inf:
            raise Malformed(f"{at}.UptimeSeconds is {uptime!r}, not a number of seconds")
        for j, edge in enumerate(_field(proxy, "Edges", list, at)):
            _check_edge(edge, f"{at}.Edges[{j}]")


def _check_edge(edge: object, at: str) -> None:
    for name in ("Direction", "Source", "Destination"):
        _field(edge, name, str, at)
    for name in ("Opened", "Failed", "Open", "Denied", "Terminated"):
        _count(edge, name, at)
    _check_histogram(_field(edge, "Setup", dict, at), f"{at}.Setup")
    for route, figures in _field(edge, "Routes", dict, at).items():
        where = f"{at}.Routes[{route!r}]"
        _count(figures, "Requests", where)
        for cls in _field(figures, "Responses", dict, where):
            _count(figures["Responses"], cls, f"{where}.Responses")
        _check_histogram(_field(figures, "Latency", dict, where), f"{where}.Latency")


def _check_histogram(h: Mapping[str, Any], at: str) -> None:
    bounds = _field(h, "Bounds", list, at)
    if not all(_number(b) and math.isfinite(b) for b in bounds):
        raise Malformed(f"{at}.Bounds holds something other than finite numbers")
    counts = _field(h, "Counts", list, at)
    if len(counts) != len(bounds) + 1 or not all(_whole(n) for n in counts):
        raise Malformed(f"{at}.Counts is not {len(bounds) + 1} non-negative integers")


def _field(obj: object, name: str, kind: type | tuple[type, ...], at: str) -> Any:
    if not isinstance(obj, Mapping):
        raise Malformed(f"{at} is {what(obj)}, not an object")
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Malformed(f"{at}.{name} is {what(value)}")
    return value


def _count(obj: object, name: str, at: str) -> None:
    value: int = _field(obj, name, int, at)
    if value < 0:
        raise Malformed(f"{at}.{name} is {value}, not a count")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def what(value: object) -> str:
    """A short description of a JSON value, for a message."""
    if value is None:
        return "missing or null"
    shown = repr(value)
    return shown if len(shown) <= 40 else f"{shown[:37]}..."
