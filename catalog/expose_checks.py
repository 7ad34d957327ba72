"""`Expose.Checks: true`: the parent service's HTTP and gRPC checks go through its sidecar. Pure.

As Consul's agent does it (agent.go rerouteExposedChecks, listenerPortLocked;
xds parseCheckPath), for a registration whose `Connect.SidecarService`
proxy sets `Expose.Checks`:
- each HTTP and gRPC check of the service gets a listener port of the
  expose range (21500-21755, `EXPOSE_RANGE`): the one it had when the
  service was registered before, else the lowest one that no exposed path
  of this agent holds; `ExposedPort` shows it;
- the check is then run against the sidecar, on that port (its URL's
  host:port, or its gRPC target's, replaced by the sidecar's address and
  the port), so a service that listens on 127.0.0.1 only is checked
  through the proxy, as an outside prober would reach it;
- the sidecar's `Expose.Paths` gains one path per check, marked
  `ParsedFromCheck` (as Consul's proxy config has them): the URL's path
  ("/" when it has none) to 127.0.0.1 at the URL's port, `http`; a gRPC
  check's health method (`/grpc.health.v1.Health/Check`) at its target's
  port, `http2`. The proxy reads them as any other exposed path.
A check registered on its own (`/v1/agent/check/register`) for the service
is exposed the same way (`expose_all`, with the service's own checks).
Not followed: a check over TLS (an `https` URL, `GRPCUseTLS`) is left to
run against its own target, since the exposed listener speaks plain HTTP.
No port left in the range is a RegistrationConflict. When the sidecar is
deregistered alone (Nomad does so first), the checks go back to their own
targets (`unexposed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from gossamer.catalog.check_definition import CheckDefinition
from gossamer.catalog.registration_fields import RegistrationConflict
from gossamer.catalog.registration_service import ServiceRegistration
from gossamer.gossip.addresses import AddressError, format_host_port, split_host_port

EXPOSE_RANGE: Final = (21500, 21755)  # Consul's expose_min_port, expose_max_port
GRPC_HEALTH: Final = "/grpc.health.v1.Health/Check"


def wants_checks(reg: ServiceRegistration) -> bool:
    """Does the registration's sidecar ask for its service's checks to be exposed?"""
    expose = reg.sidecar.proxy.get("Expose") if reg.sidecar is not None else None
    return isinstance(expose, Mapping) and expose.get("Checks") is True


def expose_checks(
    reg: ServiceRegistration,
    taken: set[int],
    previous: Mapping[str, int],
    *,
    port_range: tuple[int, int] = EXPOSE_RANGE,
) -> ServiceRegistration:
    """`reg` with its checks exposed through its sidecar (the module's rules). `taken`: the
    ports exposed paths of the agent's other services listen on; `previous`: check id ->
    the port it had."""
    if not wants_checks(reg):
        return reg
    return expose_all(reg, (), taken, previous, port_range=port_range)[0]


def expose_all(
    reg: ServiceRegistration,
    bound: Sequence[CheckDefinition],
    taken: set[int],
    previous: Mapping[str, int],
    *,
    port_range: tuple[int, int] = EXPOSE_RANGE,
) -> tuple[ServiceRegistration, tuple[CheckDefinition, ...]]:
    """`reg` and the checks registered on their own for its service (`bound`), exposed as
    `expose_checks` does (its rules); both put back on their own targets when `reg` no
    longer asks for it. `bound` comes back in its order."""
    if not wants_checks(reg) or reg.sidecar is None:
        return unexposed(reg), tuple(_own_target(c) for c in bound)
    sidecar = reg.sidecar
    proxy = dict(sidecar.proxy)
    expose = dict(proxy["Expose"])
    given = [p for p in expose.get("Paths", []) if not p.get("ParsedFromCheck")]
    used = set(taken) | {p["ListenerPort"] for p in given} | {sidecar.port}
    used |= {u["LocalBindPort"] for u in proxy.get("Upstreams", [])}
    host = _proxy_host(sidecar.address, proxy)
    checks: list[CheckDefinition] = []
    paths: list[dict[str, Any]] = []
    for check in (*reg.checks, *bound):
        made = _path_of(check)
        if made is None:
            checks.append(_own_target(check))
            continue
        port = _port(check.check_id, used, previous, port_range)
        used.add(port)
        checks.append(replace(check, exposed_host=host, exposed_port=port))
        paths.append({"ListenerPort": port, **made, "ParsedFromCheck": True})
    if given or paths:
        expose["Paths"] = given + paths
    else:  # the last check's path goes with it
        expose.pop("Paths", None)
    proxy["Expose"] = expose
    n = len(reg.checks)
    made_reg = replace(reg, checks=tuple(checks[:n]), sidecar=replace(sidecar, proxy=proxy))
    return made_reg, tuple(checks[n:])


def _own_target(check: CheckDefinition) -> CheckDefinition:
    if not check.exposed_port:
        return check
    return replace(check, exposed_host="", exposed_port=0)


def unexposed(reg: ServiceRegistration) -> ServiceRegistration:
    """`reg` with its checks on their own targets again: its sidecar was deregistered alone
    (Consul's resetExposedChecks), and a probe of its listener would fail for good."""
    if not any(c.exposed_port for c in reg.checks):
        return reg
    checks = tuple(_own_target(c) for c in reg.checks)
    return replace(reg, checks=checks)


def exposed_ports(reg: ServiceRegistration) -> set[int]:
    """The listener ports of every exposed path of a registration (its sidecar's too)."""
    return {
        p["ListenerPort"]
        for s in reg.services()
        for p in (s.proxy.get("Expose") or {}).get("Paths", [])
    }


def _proxy_host(address: str, proxy: Mapping[str, Any]) -> str:
    """Where the sidecar's listeners are reached: its bind address, else its address, else
    this host (a sidecar bound to every address answers on 127.0.0.1 too). Bound to `::`
    it listens on IPv6 alone, so this host reaches it at ::1, not 127.0.0.1; bound to
    0.0.0.0, at 127.0.0.1 whatever its address (which may be IPv6, not listened on)."""
    bind = (proxy.get("Config") or {}).get("bind_address")
    if bind == "::":
        return "::1"
    if bind == "0.0.0.0":
        return "127.0.0.1"
    for each in (bind, address):
        if isinstance(each, str) and each and each not in ("0.0.0.0", "::"):
            return each
    return "127.0.0.1"


def _path_of(check: CheckDefinition) -> dict[str, Any] | None:
    """The exposed path a check needs (without its ListenerPort); None: not exposed."""
    if check.kind == "http" and check.http is not None:
        url = urlsplit(check.http.url)
        if url.scheme != "http" or url.port is None:
            return None
        return {"Path": url.path or "/", "LocalPathPort": url.port, "Protocol": "http"}
    if check.kind == "grpc" and check.grpc is not None and not check.grpc.use_tls:
        try:
            _, port = split_host_port(check.grpc.address)
        except AddressError:
            return None
        if port is None:
            return None
        return {"Path": GRPC_HEALTH, "LocalPathPort": port, "Protocol": "http2"}
    return None


def _port(check_id: str, used: set[int], previous: Mapping[str, int],
          port_range: tuple[int, int]) -> int:  # fmt: skip
    low, high = port_range
    had = previous.get(check_id)
    if had is not None and low <= had <= high and had not in used:
        return had
    port = next((p for p in range(low, high + 1) if p not in used), None)
    if port is None:
        raise RegistrationConflict(
            "Connect.SidecarService.Proxy.Expose.Checks",
            f"no free port left in the expose range [{low}, {high}] for check {check_id!r}",
        )
    return port


def probe_url(check: CheckDefinition, url: str) -> str:
    """The URL an exposed HTTP check asks: `url` with the sidecar's host:port."""
    if not check.exposed_port:
        return url
    parts = urlsplit(url)
    netloc = format_host_port(check.exposed_host, check.exposed_port)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def probe_address(check: CheckDefinition, address: str) -> str:
    """The host:port an exposed gRPC check dials: the sidecar's listener."""
    if not check.exposed_port:
        return address
    return format_host_port(check.exposed_host, check.exposed_port)
