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
from typing import Any

from cryptography import x509

from gossamer.agent.preflight.result import Result, fail, ok
from gossamer.gossip.addresses import format_host_port
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_registration import config_from_registration

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


def judge_upstreams(
    proxy_id: str,
    healthy: Sequence[tuple[str, int | None]],
    splits: Sequence[SplitTarget] = (),
) -> Result:
    """`healthy`: each upstream and its passing sidecar instances (None: the query failed);
    `splits`: the other services their splitters send a share to. A split target with no
    instance fails its share of requests (503, as Envoy's weighted clusters do), so it
    fails the line as an upstream with none does."""
    name = f"upstreams of {proxy_id}"
    if not healthy:
        return ok(PROXY, name, "none configured")
    down = [n for n, count in healthy if not count]
    down += [t.service for t in splits if t.weight > 0 and not t.healthy]
    shown = ", ".join(
        f"{n} ({'?' if c is None else c} healthy{_split_text(n, splits)})" for n, c in healthy
    )
    if down:
        return fail(
            PROXY,
            name,
            shown,
            f"start {', '.join(down)} with a sidecar, or read `gossamer catalog "
            "services` and the health checks of their proxies",
        )
    return ok(PROXY, name, shown)


def _split_text(upstream: str, splits: Sequence[SplitTarget]) -> str:
    """`; split: api-canary 10% (0 healthy)` for the targets of `upstream`'s splitter."""
    mine = [t for t in splits if t.upstream == upstream and t.weight > 0]
    if not mine:
        return ""
    return "; split: " + ", ".join(
        f"{t.service} {t.weight / 100:g}% ({'?' if t.healthy is None else t.healthy} healthy)"
        for t in mine
    )
