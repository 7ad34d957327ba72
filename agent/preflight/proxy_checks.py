"""Judges of this agent's sidecar proxies: where they listen, what they present, upstreams.

Where: the inbound address is computed by the proxy's own config code
(`proxy.config_registration.config_from_registration`:
`Proxy.Config.bind_address`, else `Address`, else 0.0.0.0), so the check
dials where the proxy binds and not `Address` alone, which may be an address
peers dial through a NAT that this host does not have. A wildcard bind is dialled on loopback.

What: the probe opens a TLS connection to each sidecar's inbound port and
keeps the chain the proxy sends (TLS 1.3 sends it before the proxy asks for
ours), so "up" means a proxy that answers TLS with the leaf it serves now.
A URI that merely ends in `/svc/<service>` is not enough: peers verify the
chain against this mesh's roots and want this trust domain and datacenter
(proxy/authorize.py), so the judge checks the full SPIFFE ID and the chain
with the CA's own `verify_chain`; otherwise a stale proxy of another cluster
holding the port would pass as up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from gossamer.agent.preflight.identity_checks import judge_validity
from gossamer.agent.preflight.result import Result, Status, fail, ok, warn
from gossamer.gossip.addresses import format_host_port
from gossamer.intentions.spiffe import ServiceId
from gossamer.proxy.ca.errors import (
    CertificateError,
    CertificateExpired,
    CertificateNotYetValid,
    NotSpiffeCertificate,
)
from gossamer.proxy.ca.verify import SERVER_AUTH, verify_chain
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


def judge_proxy(
    proxy_id: str,
    service: str,
    address: str,
    shown: Presented,
    now: datetime,
    trust: MeshTrust | None,
    serve_id: str | None = None,
    agent_addr: str = "",
) -> Result:
    """Up, presenting a leaf of `service` of this mesh (`trust`; None: the roots could not be
    read, so only the name and the window are checked), valid now. `serve_id` is what the
    hints give `--sidecar-for` (sidecar_for; default `service`); `agent_addr`, when the agent
    is not at the CLI's default address, goes with it as `--http-addr` (a proxy started by
    the hint asked the default agent, or none)."""
    name = f"proxy {proxy_id} up at {address}"
    service_id = service if serve_id is None else serve_id
    if agent_addr:
        service_id = f"{service_id} --http-addr {agent_addr}"
    start = f"start it: gossamer connect proxy --sidecar-for {service_id}"
    if shown.error or shown.not_before is None or shown.not_after is None:
        if shown.listening:  # a proxy started now could not bind: say what holds the port
            port = address.rpartition(":")[2]
            held = (
                f"something holds port {port} and does not answer as a proxy (one stopped "
                f"with SIGSTOP or hung, or another program): `ss -ltnp 'sport = :{port}'` "
                f"names it; restart or stop it, then gossamer connect proxy --sidecar-for "
                f"{service_id}"
            )
            return fail(PROXY, name, shown.error or "no certificate presented", held)
        return fail(PROXY, name, shown.error or "no certificate presented", start)
    foreign = (
        "not issued by this mesh's CA: a stale proxy from another cluster holds the port? "
        f"`ss -ltnp` names the process on {address}; stop it and run "
        f"`gossamer connect proxy --sidecar-for {service_id}`"
    )
    if trust is None:
        if not any(u.endswith(f"/svc/{service}") for u in shown.uris):
            return _wrong_service(name, service, shown.uris, start)
    else:
        wanted = ServiceId(trust.trust_domain, trust.datacenter, service).uri
        if wanted not in shown.uris:
            ours = f"spiffe://{trust.trust_domain}/ns/default/dc/{trust.datacenter}/svc/"
            if any(u.startswith(ours) for u in shown.uris):
                return _wrong_service(name, service, shown.uris, start)
            listed = ", ".join(shown.uris) or "no SPIFFE ID"
            return fail(PROXY, name, f"presents {listed}, not {wanted}", foreign)
        refused = chain_refusal(shown, trust, now)
        if refused is not None:
            timely = isinstance(refused, (CertificateExpired, CertificateNotYetValid))
            hint = "see `CA and roots valid` above; check this host's clock" if timely else foreign
            return fail(PROXY, name, f"its chain does not verify: {refused}", hint)
    result = judge_validity(
        name,
        shown.not_before,
        shown.not_after,
        now,
        "the proxy takes renewed leaves from its agent: read the proxy's "
        "and the agent's logs; SIGHUP asks the agent again",
    )
    detail = f"certificate of {service}, {result.detail}"
    if trust is None and result.status is Status.OK:
        return warn(
            PROXY,
            name,
            f"{detail}; its chain is not checked: the agent's roots could not be read",
            "see `CA and roots valid` above",
        )
    return Result(PROXY, name, result.status, detail, result.hint)


def chain_refusal(shown: Presented, trust: MeshTrust, now: datetime) -> CertificateError | None:
    """Why the chain the proxy sent does not lead to one of this mesh's roots, as its peers
    check it (server auth), or None. Checked at a moment inside the leaf's window: an expired
    leaf is a chain of this mesh all the same, and its own line says so with its own hint."""
    if not shown.chain:
        return NotSpiffeCertificate("no certificate chain was presented")
    try:
        leaf, *sent = [x509.load_der_x509_certificate(der) for der in shown.chain]
    except ValueError:
        return NotSpiffeCertificate("the certificate presented is unreadable")
    at = min(max(now, leaf.not_valid_before_utc), leaf.not_valid_after_utc)
    try:
        verify_chain(leaf, [*sent, *trust.intermediates], trust.roots, at, purpose=SERVER_AUTH)
    except CertificateError as exc:
        return exc
    return None


def _wrong_service(name: str, service: str, uris: Sequence[str], start: str) -> Result:
    return fail(
        PROXY,
        name,
        f"presents a certificate for {', '.join(uris) or '?'}, not for {service}",
        f"restart it; {start}",
    )


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
