"""Service registration bodies (`PUT /v1/agent/service/register`, config `services:`), no I/O.

Follows Consul's agent (agent_endpoint.go AgentRegisterService,
structs.NodeService.Validate):
- `ID` defaults to `Name`; `Address` stays empty when not given (clients
  then use the node's address). The object itself is read by
  registration_draft.py, its `Proxy` by registration_proxy.py.
- `Proxy` only on connect-proxy and gateway kinds; a connect-proxy needs
  `Proxy.DestinationServiceName` and a `Port`; gateways other than ingress
  need a `Port` and take no destination or upstreams.
- `Connect.SidecarService` registers a second service (registration_sidecar.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from gossamer.catalog.check_definition import CheckDefinition
from gossamer.catalog.model import Check, Service
from gossamer.catalog.registration_draft import (
    GATEWAYS,
    KINDS,
    SERVICE_FIELDS,
    SIDECAR_SUFFIX,
    Draft,
    read_draft,
    service_checks,
)
from gossamer.catalog.registration_expose import port_clash
from gossamer.catalog.registration_fields import RegistrationError
from gossamer.catalog.registration_proxy import PROXY_FIELDS, UPSTREAM_FIELDS
from gossamer.catalog.registration_sidecar import (
    SIDECAR_PORT_RANGE,
    expand_sidecar,
    free_sidecar_port,
)

__all__ = [
    "KINDS",
    "PROXY_FIELDS",
    "SERVICE_FIELDS",
    "SIDECAR_PORT_RANGE",
    "SIDECAR_SUFFIX",
    "UPSTREAM_FIELDS",
    "ServiceRegistration",
    "parse_service_registration",
]


@dataclass(frozen=True)
class ServiceRegistration:
    """A parsed service body: the service, its checks, and the sidecar it asked for."""

    service: Service
    checks: tuple[CheckDefinition, ...] = ()
    sidecar: Service | None = None
    sidecar_checks: tuple[CheckDefinition, ...] = ()

    def services(self) -> tuple[Service, ...]:
        return (self.service,) if self.sidecar is None else (self.service, self.sidecar)

    def initial_checks(self) -> tuple[Check, ...]:
        """Every check's starting state (the service's, then the sidecar's)."""
        own = tuple(c.to_check(self.service) for c in self.checks)
        if self.sidecar is None:
            return own
        return own + tuple(c.to_check(self.sidecar) for c in self.sidecar_checks)


def parse_service_registration(
    body: object,
    *,
    node_address: str,
    used_sidecar_ports: set[int],
    sidecar_port_range: tuple[int, int] = SIDECAR_PORT_RANGE,
    allow_script: bool = False,
    previous_sidecar_port: int | None = None,
) -> ServiceRegistration:
    """Parse and validate a service registration body; raises RegistrationError.

    `used_sidecar_ports`: ports of the other services on this agent (the
    parent's own port is added here). `previous_sidecar_port`: the port of
    this sidecar if it is already registered; kept when inside the range,
    as Consul does. `node_address` is the last fallback for the sidecar's
    listening check. `allow_script`: whether `Args` checks are allowed for
    this source (enable_script_checks, or enable_local_script_checks for
    config files).
    """
    d = read_draft(body, "", nested=False)
    _validate_kind(d)
    service = _service(d)
    checks = service_checks(d, service, allow_script)
    if d.sidecar is None:
        return ServiceRegistration(service, checks)
    taken = set(used_sidecar_ports) | {service.port}
    free = free_sidecar_port(taken, sidecar_port_range, previous_sidecar_port)
    sidecar, sidecar_checks = expand_sidecar(
        service,
        d.sidecar,
        "Connect.SidecarService",
        free,
        sidecar_port_range,
        node_address,
        allow_script,
    )
    return ServiceRegistration(service, checks, sidecar, sidecar_checks)


def _service(d: Draft) -> Service:
    return Service(
        id=d.id or d.name,
        name=d.name,
        tags=d.tags,
        address=d.address,
        port=d.port,
        meta=d.meta,
        tagged_addresses=d.tagged,
        weights=d.weights,
        kind=d.kind,
        proxy=d.proxy or {},
        connect={"Native": True} if d.native else {},
        enable_tag_override=d.enable_tag_override,
        locality=d.locality,
    )


def _validate_kind(d: Draft) -> None:
    f, proxy = d.f, d.proxy or {}
    if d.kind == "connect-proxy":
        if not proxy.get("DestinationServiceName"):
            raise RegistrationError(
                f"{f.at('Proxy')}.DestinationServiceName",
                "missing required field for connect-proxy",
            )
        if d.port == 0:
            raise f.error("Port", "must be set for a connect-proxy")
        port_clash(proxy, d.port, f.at("Proxy"))
    elif d.kind in GATEWAYS:
        if d.port == 0 and d.kind != "ingress-gateway":
            raise f.error("Port", f"must be set for a {d.kind}")
        for key in ("DestinationServiceName", "Upstreams", "Expose"):
            if key in proxy:
                raise RegistrationError(f"{f.at('Proxy')}.{key}", f"not valid for a {d.kind}")
    elif d.proxy:
        raise f.error("Proxy", 'only valid when Kind is "connect-proxy" or a gateway')
    if d.kind and (d.native or d.sidecar is not None):
        what = "Native" if d.native else "SidecarService"
        raise RegistrationError(f"{f.at('Connect')}.{what}", f"not valid for a {d.kind}")
