"""`Connect.SidecarService`: the second service a registration asks for, expanded. Pure.

Consul's sidecar_service.go, as followed here:
- The sidecar is `<parent id>-sidecar-proxy`, named `<parent name>-sidecar-proxy`
  unless a Name is given; its ID cannot be set. It is always a connect-proxy
  and cannot be native or have a sidecar of its own.
- Tags, address and meta default to the parent's; the proxy's destination to
  the parent, its local service to 127.0.0.1 and the parent's port.
- Without a `Port`, the first port of the sidecar range not used by another
  service is taken (a re-registered sidecar keeps its port if still in range).
- Without checks, it gets Consul's two: "Connect Sidecar Listening" (TCP on
  its own address and port, every 10s) and "Connect Sidecar Aliasing <parent>".
"""

from __future__ import annotations

from typing import Any

from gossamer.catalog.check_definition import CheckDefinition
from gossamer.catalog.check_kinds import DEFAULT_TIMEOUT_S
from gossamer.catalog.model import Service
from gossamer.catalog.registration_draft import SIDECAR_SUFFIX, Draft, read_draft, service_checks
from gossamer.catalog.registration_expose import port_clash
from gossamer.catalog.registration_fields import RegistrationConflict, RegistrationError, shown
from gossamer.gossip.addresses import format_host_port

SIDECAR_PORT_RANGE = (21000, 21255)
LISTENING_INTERVAL_S = 10.0


def free_sidecar_port(
    taken: set[int], port_range: tuple[int, int], previous: int | None
) -> int | None:
    """The sidecar's port when none is given: its previous one if in range, else the first free."""
    low, high = port_range
    if previous is not None and low <= previous <= high:
        return previous
    return next((p for p in range(low, high + 1) if p not in taken), None)


def expand_sidecar(
    parent: Service,
    raw: object,
    path: str,
    free_port: int | None,
    port_range: tuple[int, int],
    node_address: str,
    allow_script: bool,
) -> tuple[Service, tuple[CheckDefinition, ...]]:
    """The sidecar service and its checks (see the module rules)."""
    d = read_draft(raw, path, nested=True)
    _refuse(d, path)
    proxy, local_address = _sidecar_proxy(parent, d.proxy or {})
    port = d.port or free_port
    if not port:
        low, high = port_range
        raise RegistrationConflict(  # valid, but the other sidecars hold every port
            f"{path}.Port", f"not given and no free port left in the sidecar range [{low}, {high}]"
        )
    port_clash(proxy, port, f"{path}.Proxy")
    sidecar = Service(
        id=parent.id + SIDECAR_SUFFIX,
        name=d.name or parent.name + SIDECAR_SUFFIX,
        tags=d.tags or parent.tags,
        address=d.address or parent.address,
        port=port,
        meta=d.meta or dict(parent.meta),
        tagged_addresses=d.tagged,
        weights=d.weights,
        kind="connect-proxy",
        proxy=proxy,
        enable_tag_override=d.enable_tag_override,
        locality=d.locality or dict(parent.locality),  # as Consul: the parent's by default
    )
    checks = service_checks(d, sidecar, allow_script)
    if checks:
        return sidecar, checks
    return sidecar, _default_checks(
        parent, sidecar, sidecar.address or local_address or node_address
    )


def _refuse(d: Draft, path: str) -> None:
    if d.kind not in ("", "connect-proxy"):
        raise d.f.error("Kind", f"a sidecar is a connect-proxy, got {shown(d.kind)}")
    if d.sidecar is not None:
        raise RegistrationError(f"{path}.Connect.SidecarService", "sidecars cannot be nested")
    if d.native:
        raise RegistrationError(f"{path}.Connect.Native", "a sidecar proxy cannot be native")


def _sidecar_proxy(parent: Service, given: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The sidecar's proxy block with Consul's defaults, and its local service address."""
    proxy: dict[str, Any] = {
        "DestinationServiceName": given.get("DestinationServiceName", parent.name),
        "DestinationServiceID": given.get("DestinationServiceID", parent.id),
    }
    local_address = given.get("LocalServiceAddress", "")
    local_port = given.get("LocalServicePort", 0)
    if not local_address or not local_port:
        local_address, local_port = local_address or "127.0.0.1", local_port or parent.port
    proxy["LocalServiceAddress"] = local_address
    if local_port:
        proxy["LocalServicePort"] = local_port
    proxy |= {k: v for k, v in given.items() if k not in proxy}
    return proxy, local_address


def _default_checks(
    parent: Service, sidecar: Service, check_address: str
) -> tuple[CheckDefinition, ...]:
    return (
        CheckDefinition(
            check_id=f"service:{sidecar.id}:1",
            name="Connect Sidecar Listening",
            kind="tcp",
            service_id=sidecar.id,
            tcp=format_host_port(check_address, sidecar.port),
            interval_s=LISTENING_INTERVAL_S,
            timeout_s=DEFAULT_TIMEOUT_S,
        ),
        CheckDefinition(
            check_id=f"service:{sidecar.id}:2",
            name=f"Connect Sidecar Aliasing {parent.id}",
            kind="alias",
            service_id=sidecar.id,
            alias_service=parent.id,
        ),
    )
