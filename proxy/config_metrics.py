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
from gossamer.proxy.config import ProxyConfig, share_port
from gossamer.proxy.config_error import ConfigError

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


def metrics_key(options: Mapping[str, Any], where: str = "Proxy.Config") -> str:
    """The key `metrics_addr_of` reads the metrics listener from, as `where.key`."""
    key = next((k for k in METRICS_KEYS if options.get(k)), METRICS_KEYS[0])
    return f"{where}.{key}"


def metrics_apart(config: ProxyConfig, where: str) -> ProxyConfig:
    """`config`, once its metrics listener is known to share no port with its inbound or
    upstream listeners (as `config.distinct` judges two of those); else ConfigError naming
    `where` (the key or flag that set it) and the other. Unchecked, both were opened: one
    failed, and an upstream was tried again every 5 s for good, "address already in use"."""
    if not config.metrics_addr:
        return config
    host, _, port = config.metrics_addr.rpartition(":")
    mine = (host.strip("[]"), int(port))
    others = [("the inbound listener", config.bind_address, config.bind_port)]
    others += [(f"upstream {u.name!r}", u.bind_address, u.bind_port) for u in config.upstreams]
    for what, address, bound in others:
        if bound and share_port(mine, (address, bound)):
            raise ConfigError(where, f"{config.metrics_addr} clashes with {what} on "
                              f"{address}:{bound}")  # fmt: skip
    return config


def with_metrics(config: ProxyConfig, addr: str | None, enabled: bool = True) -> ProxyConfig:
    """`config` with `--metrics-addr` (wins over the registration's key) and `--no-metrics`."""
    if not addr and enabled:
        return config
    where = metrics_addr(addr, "--metrics-addr") if addr else config.metrics_addr
    pinned = replace(config, metrics_addr=where, metrics=config.metrics and enabled,
                     metrics_pinned=True)  # fmt: skip
    return metrics_apart(pinned, "--metrics-addr") if addr else pinned
