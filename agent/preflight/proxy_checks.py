"""Judges of this agent's sidecar proxies: where they listen, what they present, upstreams.

Where: the inbound address is computed by the proxy's own config code
(`proxy.config_registration.config_from_registration`:
`Proxy.Config.bind_address`, else `Address`, else 0.0.0.0), so the check
dials where the proxy binds and not `Address` alone, which may be an address
peers dial through a NAT that this host does not have. A wildcard bind is dialled on loopback.

What: the probe opens a TLS connection to each sidecar's inbound port and
keeps the chain the proxy sends (TLS 1.3 sends it before the proxy asks for
ours), so "up" means a proxy that answers TLS with the leaf it serves now;
proxy_cert.py judges it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509

from gossamer.agent.preflight.result import Result, fail, ok
from gossamer.catalog.config_entries import SUBSET_SEP, Split, key_of
from gossamer.gossip.addresses import format_host_port
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_registration import config_from_registration

if TYPE_CHECKING:
    from gossamer.catalog.config_router import Route

PROXY = "proxy"
# A proxy bound on a wildcard answers on loopback too; the check runs on the agent's host.
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True)
class Presented:
    """What a sidecar's TLS listener showed: its leaf's window and URI SANs, the chain it
    sent (DER, leaf first), or an error."""

    error: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None
    uris: tuple[str, ...] = ()
    chain: tuple[bytes, ...] = ()
    listening: bool = False  # with an error: something took the connection (not the proxy)


@dataclass(frozen=True)
class Target:
    """Where a sidecar's inbound listener is dialled; `error`: the proxy refuses its
    registration (it cannot be running from it)."""

    address: str
    port: int
    error: str = ""

    @property
    def shown(self) -> str:
        return format_host_port(self.address, self.port)


@dataclass(frozen=True)
class MeshTrust:
    """What a sidecar's certificate must match: the mesh's trust domain, this agent's
    datacenter, the roots of `/v1/agent/connect/ca/roots` and their cross-signed copies."""

    trust_domain: str
    datacenter: str
    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()


def dial_target(registration: Mapping[str, Any]) -> Target:
    """Where the proxy of this sidecar registration listens, as the proxy computes it."""
    try:
        config = config_from_registration(registration, str(registration.get("ID", "")))
    except ConfigError as exc:
        return Target(str(registration.get("Address") or ""), 0, str(exc))
    return Target(LOOPBACK.get(config.bind_address, config.bind_address), config.bind_port)


def mesh_trust(roots: Mapping[str, Any] | None, datacenter: str) -> MeshTrust | None:
    """The trust a roots answer describes; None when there is none to check against (the
    roots check says why)."""
    if roots is None or not roots.get("TrustDomain"):
        return None
    try:
        listed = roots.get("Roots") or []
        certs = [c for r in listed for c in x509.load_pem_x509_certificates(r["RootCert"].encode())]
        cross = [
            c
            for r in listed
            for pem in r.get("IntermediateCerts") or []
            for c in x509.load_pem_x509_certificates(pem.encode())
        ]
    except (KeyError, TypeError, AttributeError, ValueError):
        return None
    if not certs:
        return None
    return MeshTrust(str(roots["TrustDomain"]), datacenter, tuple(certs), tuple(cross))


def judge_registration(proxy_id: str, service: str, target: Target) -> Result:
    """A sidecar registration the proxy refuses: no proxy can be running from it."""
    return fail(
        PROXY,
        f"proxy {proxy_id} up",
        f"the proxy refuses its registration: {target.error}",
        f"fix the registration of {service}'s sidecar and register it again",
    )


SIDECAR_SUFFIX = "-sidecar-proxy"


def sidecar_for(proxy: Mapping[str, Any]) -> str:
    """What `connect proxy --sidecar-for` takes to serve this registration: the service ID
    (`web-1` for `web-1-sidecar-proxy`), not the service name, which differs whenever the
    service was registered with an ID of its own."""
    proxy_id = str(proxy.get("ID", ""))
    if proxy_id.endswith(SIDECAR_SUFFIX) and len(proxy_id) > len(SIDECAR_SUFFIX):
        return proxy_id[: -len(SIDECAR_SUFFIX)]
    config = proxy.get("Proxy") or {}
    return str(config.get("DestinationServiceID") or config.get("DestinationServiceName", ""))


@dataclass(frozen=True)
class SplitTarget:
    """A service an upstream's service-splitter sends `weight` hundredths of a percent of its
    traffic to, and its passing sidecar instances (None: the query failed)."""

    upstream: str
    service: str
    weight: int
    healthy: int | None


@dataclass(frozen=True)
class RouteTarget:
    """Where route `index` of an upstream's service-router sends requests (`target`: a
    service, `service/subset`, or one split target of the destination's splitter), and its
    passing sidecar instances (None: the query failed)."""

    upstream: str
    index: int
    target: str
    healthy: int | None


def route_targets(upstream: str, routes: Sequence[Route],
                  splitters: Mapping[str, Sequence[Split]]) -> list[tuple[int, str]]:  # fmt: skip
    """`(route index, target key)` for each place `upstream`'s router sends requests other
    than the upstream itself (counted on its own): a destination subset as is, else the
    destination's split targets (weight above 0) when it has a splitter, else the service.
    A destination's own router is not followed (Consul's chain has one router)."""
    found: list[tuple[int, str]] = []
    for i, route in enumerate(routes):
        d = route.destination
        if d.service == upstream and not d.subset:
            continue
        if d.subset:
            keys = [key_of(d.service, d.subset)]
        else:
            keys = [s.service for s in splitters.get(d.service, ()) if s.weight > 0]
        for key in keys or [d.service]:
            if (i, key) not in found:
                found.append((i, key))
    return found


def judge_upstreams(
    proxy_id: str,
    healthy: Sequence[tuple[str, int | None]],
    splits: Sequence[SplitTarget] = (),
    routes: Sequence[RouteTarget] = (),
) -> Result:
    """`healthy`: each upstream and its passing sidecar instances (None: the query failed);
    `splits`: the other services their splitters send a share to; `routes`: where their
    service-routers send requests. A split target with no instance fails its share of
    requests (503, as Envoy's weighted clusters do), and a route's target with none fails
    the requests that route takes: either fails the line as an upstream with none does."""
    name = f"upstreams of {proxy_id}"
    if not healthy:
        return ok(PROXY, name, "none configured")
    down = [n for n, count in healthy if not count]
    down += [t.service for t in splits if t.weight > 0 and not t.healthy]
    down += [t.target for t in routes if not t.healthy and t.target not in down]
    shown = ", ".join(
        f"{n} ({'?' if c is None else c} healthy{_split_text(n, splits)}{_route_text(n, routes)})"
        for n, c in healthy
    )
    if down:
        return fail(
            PROXY,
            name,
            shown,
            f"{_to_start(down)}, or read `gossamer catalog services` and the health checks of "
            "their proxies",
        )
    return ok(PROXY, name, shown)


def _to_start(down: Sequence[str]) -> str:
    """What to start for targets with no passing instance: a service by its name, a subset
    (`api/v2`, no service's name) as an instance of its service that its Filter takes."""
    services = [n for n in down if SUBSET_SEP not in n]
    said = [f"start {', '.join(services)} with a sidecar"] if services else []
    for key in down:
        service, sep, subset = key.partition(SUBSET_SEP)
        if sep:
            said.append(f"start an instance of {service} matching subset {subset} (the Filter "
                        f"of service-resolver/{service}) with a sidecar")  # fmt: skip
    return "; ".join(said)


def _split_text(upstream: str, splits: Sequence[SplitTarget]) -> str:
    """`; split: api-canary 10% (0 healthy)` for the targets of `upstream`'s splitter."""
    mine = [t for t in splits if t.upstream == upstream and t.weight > 0]
    if not mine:
        return ""
    return "; split: " + ", ".join(
        f"{t.service} {t.weight / 100:g}% ({'?' if t.healthy is None else t.healthy} healthy)"
        for t in mine
    )


def _route_text(upstream: str, routes: Sequence[RouteTarget]) -> str:
    """`; routes: 0 -> api-next (0 healthy), 1 -> api/v2 (1 healthy)` for `upstream`'s
    router."""
    mine = [t for t in routes if t.upstream == upstream]
    if not mine:
        return ""
    return "; routes: " + ", ".join(
        f"{t.index} -> {t.target} ({'?' if t.healthy is None else t.healthy} healthy)" for t in mine
    )
