"""The keys of a sidecar registration's `Config` maps that gossamer's proxy does not read. Pure.

Consul accepts any key in `Proxy.Config` and an upstream's `Config` (they
are opaque to it, and its Envoy bootstrap reads many: `limits`,
`passive_health_check`, `max_inbound_connections`, `envoy_*` overrides).
gossamer's proxy reads the keys below and ignores the rest, as Consul
would; the proxy says once which of a registration's keys it ignores, so
a setting an operator relies on is not silently without effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gossamer.proxy.config_metrics import METRICS_KEYS

PROXY_KEYS: Final = frozenset({
    "protocol", "bind_address", "bind_port", "handshake_timeout_ms", "local_connect_timeout_ms",
    "drain_timeout_s", "request_headers_timeout_ms", "max_request_header_bytes",
    "local_request_timeout_ms", "local_idle_timeout_ms", "idle_timeout_ms", "gossamer_metrics",
    *METRICS_KEYS,
})  # fmt: skip
UPSTREAM_KEYS: Final = frozenset({
    "protocol", "connect_timeout_ms", "request_timeout_ms", "request_idle_timeout_ms",
    "max_idle_connections", "idle_timeout_ms", "retry_ratio", "retry_min_per_second",
    "gossamer_remote_clients", "gossamer_balance_calls",
})  # fmt: skip


def unused_keys(registration: Mapping[str, Any]) -> list[str]:
    """Where each ignored key is (`Proxy.Config.limits`, `Proxy.Upstreams[0].Config.x`), in
    the registration's order; a map that is not one is the config checks' to refuse."""
    proxy = registration.get("Proxy")
    if not isinstance(proxy, Mapping):
        return []
    found = _unused(proxy.get("Config"), PROXY_KEYS, "Proxy.Config")
    upstreams = proxy.get("Upstreams")
    for i, upstream in enumerate(upstreams if isinstance(upstreams, list) else []):
        if isinstance(upstream, Mapping):
            where = f"Proxy.Upstreams[{i}].Config"
            found += _unused(upstream.get("Config"), UPSTREAM_KEYS, where)
    return found


def _unused(options: object, known: frozenset[str], where: str) -> list[str]:
    if not isinstance(options, Mapping):
        return []
    return [f"{where}.{key}" for key in options if key not in known]
