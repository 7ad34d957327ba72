"""A sidecar registration with `service-defaults` applied, as the agent serves it. Pure.

Consul's agent merges central config into a sidecar's registration before
any proxy reads it, so the proxy needs no second source: here the
`Protocol` of a `service-defaults` entry fills `Proxy.Config.protocol` for
the sidecar's own service (`Proxy.DestinationServiceName`) and
`Upstreams[i].Config.protocol` for each upstream's service, in both cases
only where the registration does not set one (a sidecar's own config
wins, as in Consul). Anything else is returned unchanged; the input is
never modified (it may be a cached answer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProtocolOf = Callable[[str], str | None]  # service name -> its service-defaults Protocol


def with_service_defaults(body: dict[str, Any], protocol_of: ProtocolOf) -> dict[str, Any]:
    """`body` (a service as `/v1/agent/service/<id>` shows it) with defaults filled in."""
    proxy = body.get("Proxy")
    if body.get("Kind") != "connect-proxy" or not isinstance(proxy, dict):
        return body
    merged = dict(proxy)
    config = _filled(proxy.get("Config"), protocol_of(str(proxy.get("DestinationServiceName"))))
    if config is not None:
        merged["Config"] = config
    upstreams = proxy.get("Upstreams")
    if isinstance(upstreams, list):
        merged["Upstreams"] = [_upstream(u, protocol_of) for u in upstreams]
    return body | {"Proxy": merged}


def _upstream(upstream: Any, protocol_of: ProtocolOf) -> Any:
    if (
        not isinstance(upstream, dict)
        or (upstream.get("DestinationType") or "service") != "service"
    ):
        return upstream
    config = _filled(upstream.get("Config"), protocol_of(str(upstream.get("DestinationName"))))
    return upstream if config is None else upstream | {"Config": config}


def _filled(config: Any, protocol: str | None) -> dict[str, Any] | None:
    """`config` with `protocol` set when it has none; None when nothing changes."""
    if protocol is None or (config is not None and not isinstance(config, dict)):
        return None
    held = config or {}
    if "protocol" in held:
        return None
    return {**held, "protocol": protocol}
