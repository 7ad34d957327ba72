"""The line of each sidecar's certificate: what its TLS listener presented, judged. Pure.

"Up" means a proxy that answers TLS with the leaf it serves now, for its
service, of this mesh: a URI that merely ends in `/svc/<service>` is not
enough, since peers verify the chain against this mesh's roots and want
this trust domain and datacenter (proxy/authorize.py); so the full SPIFFE
ID and the chain are checked with the CA's own `verify_chain`, or a stale
proxy of another cluster holding the port would pass. Each failure's hint
says what to run (`connect proxy --sidecar-for`, `ss -ltnp` for a port
held by something else). The probe that fills `Presented` is
agent_probe.py's; what to dial, proxy_checks.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from gossamer.agent.preflight.identity_checks import judge_validity
from gossamer.agent.preflight.proxy_checks import PROXY, MeshTrust, Presented
from gossamer.agent.preflight.result import Result, Status, fail, warn
from gossamer.intentions.spiffe import ServiceId
from gossamer.proxy.ca.errors import (
    CertificateError,
    CertificateExpired,
    CertificateNotYetValid,
    NotSpiffeCertificate,
)
from gossamer.proxy.ca.verify import SERVER_AUTH, verify_chain


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
        return _not_presented(name, address, shown, service_id, start)
    refused = _identity_refusal(name, service, address, shown, now, trust, service_id, start)
    if refused is not None:
        return refused
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


def _not_presented(name: str, address: str, shown: Presented, service_id: str, start: str
                   ) -> Result:  # fmt: skip
    """No certificate came: nothing listens (start it), or something holds the port that does
    not answer as a proxy (say how to find it)."""
    if not shown.listening:
        return fail(PROXY, name, shown.error or "no certificate presented", start)
    port = address.rpartition(":")[2]
    held = (
        f"something holds port {port} and does not answer as a proxy (one stopped "
        f"with SIGSTOP or hung, or another program): `ss -ltnp 'sport = :{port}'` "
        f"names it; restart or stop it, then gossamer connect proxy --sidecar-for "
        f"{service_id}"
    )
    return fail(PROXY, name, shown.error or "no certificate presented", held)


def _identity_refusal(
    name: str,
    service: str,
    address: str,
    shown: Presented,
    now: datetime,
    trust: MeshTrust | None,
    service_id: str,
    start: str,
) -> Result | None:
    """The line's failure when the certificate names another service, or is not this mesh's
    (its SPIFFE ID or its chain), or None. Without `trust`, only the name is checked."""
    foreign = (
        "not issued by this mesh's CA: a stale proxy from another cluster holds the port? "
        f"`ss -ltnp` names the process on {address}; stop it and run "
        f"`gossamer connect proxy --sidecar-for {service_id}`"
    )
    if trust is None:
        if not any(u.endswith(f"/svc/{service}") for u in shown.uris):
            return _wrong_service(name, service, shown.uris, start)
        return None
    wanted = ServiceId(trust.trust_domain, trust.datacenter, service).uri
    if wanted not in shown.uris:
        ours = f"spiffe://{trust.trust_domain}/ns/default/dc/{trust.datacenter}/svc/"
        if any(u.startswith(ours) for u in shown.uris):
            return _wrong_service(name, service, shown.uris, start)
        listed = ", ".join(shown.uris) or "no SPIFFE ID"
        return fail(PROXY, name, f"presents {listed}, not {wanted}", foreign)
    refused = chain_refusal(shown, trust, now)
    if refused is None:
        return None
    timely = isinstance(refused, (CertificateExpired, CertificateNotYetValid))
    hint = "see `CA and roots valid` above; check this host's clock" if timely else foreign
    return fail(PROXY, name, f"its chain does not verify: {refused}", hint)


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
