"""A proxy's `Expose` block (Consul's ExposeConfig) parsed and checked. Pure.

`Paths[i]` = {ListenerPort, Path, LocalPathPort, Protocol}: the sidecar opens
a plain HTTP listener on `ListenerPort` that passes a request for exactly
`Path` to 127.0.0.1:`LocalPathPort`, without mTLS or intentions (for probes
and scrapers outside the mesh). `Checks: true` asks the agent to expose the
parent service's HTTP and gRPC checks that way (catalog/expose_checks.py).

Rules kept, as Consul's validation has them (each refusal names the field):
- `Path` starts with '/'; both ports are 1-65535;
- `Protocol` is "http" (the default) or "http2";
- no two paths share a `ListenerPort`, and none takes the port of one of the
  proxy's upstreams or of the sidecar itself (`port_clash`, called where the
  service's port is known).
The result keeps Consul's JSON names, empty fields left out, with each
path's `Protocol` filled in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gossamer.catalog.registration_fields import Fields, RegistrationError, shown

EXPOSE_FIELDS: Final = ("Checks", "Paths")
PATH_FIELDS: Final = ("ListenerPort", "Path", "LocalPathPort", "Protocol", "ParsedFromCheck")
PROTOCOLS: Final = ("http", "http2")


def parse_expose(raw: object, path: str) -> dict[str, Any]:
    """`Expose` checked; RegistrationError naming the first bad field."""
    if raw is None:
        return {}
    e = Fields(raw, path, EXPOSE_FIELDS)
    out: dict[str, Any] = {}
    if e.bool_("Checks"):
        out["Checks"] = True
    raw_paths = e.values.get("Paths") or []
    if not isinstance(raw_paths, list):
        raise e.error("Paths", f"must be a list, got {shown(raw_paths)}")
    paths = [_path(p, f"{e.at('Paths')}[{i}]") for i, p in enumerate(raw_paths)]
    seen: dict[int, int] = {}
    for i, p in enumerate(paths):
        port = p["ListenerPort"]
        if port in seen:
            said = f"{port} is the listener port of Paths[{seen[port]}] too"
            raise RegistrationError(f"{e.at('Paths')}[{i}].ListenerPort", said)
        seen[port] = i
    if paths:
        out["Paths"] = paths
    return out


def _path(raw: object, at: str) -> dict[str, Any]:
    p = Fields(raw, at, PATH_FIELDS)
    value = p.str_("Path")
    if not value.startswith("/"):
        raise p.error("Path", f"must start with '/', got {shown(value)}")
    protocol = p.str_("Protocol") or "http"
    if protocol not in PROTOCOLS:
        raise p.error("Protocol", f'must be "http" or "http2", got {shown(protocol)}')
    return {
        "ListenerPort": p.int_("ListenerPort", 1, 65535, what="1-65535 (required)"),
        "Path": value,
        "LocalPathPort": p.int_("LocalPathPort", 1, 65535, what="1-65535 (required)"),
        "Protocol": protocol,
    }


def port_clash(proxy: Mapping[str, Any], own_port: int, path: str) -> None:
    """RegistrationError when an exposed path listens on `own_port` (the proxy's inbound
    port) or on an upstream's `LocalBindPort`: two listeners of one proxy on one port."""
    paths = (proxy.get("Expose") or {}).get("Paths") or []
    taken: dict[int, str] = {own_port: "the proxy's own port"} if own_port else {}
    for u in proxy.get("Upstreams") or []:
        taken.setdefault(
            u["LocalBindPort"], f"the LocalBindPort of upstream {u['DestinationName']!r}"
        )
    for i, p in enumerate(paths):
        if (what := taken.get(p["ListenerPort"])) is not None:
            raise RegistrationError(f"{path}.Expose.Paths[{i}].ListenerPort",
                                    f"{p['ListenerPort']} is {what}")  # fmt: skip
