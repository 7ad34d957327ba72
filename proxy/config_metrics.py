"""Where a sidecar proxy's metrics listener is, and whether it counts, from either source. Pure.

Both sources name the listener (`Proxy.Config.gossamer_metrics_bind_addr`,
else Envoy's `envoy_prometheus_bind_addr`; `--metrics-addr`), and both go
through one check of `ADDR:PORT`, so it lives here rather than in either.
The agent reads the registration's key too, to find each proxy's `/stats`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gossamer.proxy import config_fields as fields
from gossamer.proxy.config import ProxyConfig

METRICS_KEYS = ("gossamer_metrics_bind_addr", "envoy_prometheus_bind_addr")  # ours wins


def metrics_addr_of(options: Mapping[str, Any], where: str = "Proxy.Config") -> str:
    """The metrics listener a registration's `Proxy.Config` names, as ADDR:PORT, or ""."""
    for key in METRICS_KEYS:
        if text := fields.text(options.get(key), f"{where}.{key}"):
            return metrics_addr(text, f"{where}.{key}")
    return ""


def metrics_addr(text: str, where: str) -> str:
    """`ADDR:PORT` checked (a bare `:PORT` listens on 127.0.0.1), ConfigError naming `where`
    and what was written (`::1:9102` is an address and a port, not a bare port)."""
    if text.startswith(":") and ":" not in text[1:]:
        return f"127.0.0.1:{fields.port(text[1:], where)}"
    host, port = fields.host_port(text, where)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def with_metrics(config: ProxyConfig, addr: str | None, enabled: bool = True) -> ProxyConfig:
    """`config` with `--metrics-addr` (wins over the registration's key) and `--no-metrics`."""
    if not addr and enabled:
        return config
    where = metrics_addr(addr, "--metrics-addr") if addr else config.metrics_addr
    return replace(config, metrics_addr=where, metrics=config.metrics and enabled,
                   metrics_pinned=True)  # fmt: skip
