"""The proxy's own identity: its leaf and the trust bundle, as TLS contexts.

Built from the agent's answers (`/v1/agent/connect/ca/leaf/<service>` and
`/v1/agent/connect/ca/roots`, Consul's JSON). A new leaf or new roots build
new contexts; each connection takes the contexts current when it starts,
so a renewed leaf or a rotated root is used for the next handshake at once
and no open connection is touched. During a root rotation the leaf goes
out with the new root cross-signed by the old one, so a peer whose bundle
has not caught up yet still verifies it.

Both contexts: TLS 1.3 only, a client certificate required and verified
by OpenSSL against the roots (then again by authorize.py), no hostname
check (the SPIFFE ID is checked instead). The server issues one TLS 1.3
session ticket per connection; the outbound side offers it back on its
next connection to that instance (outbound.py), which saves the signature
and most of a full handshake's CPU. A new identity builds new contexts,
and with them new ticket keys, so no session outlives a leaf or root change.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, replace
from typing import Any

from gossamer.intentions.spiffe import parse_identity
from gossamer.proxy.authorize import Trust
from gossamer.proxy.ca.cert_facts import cert_facts, pem_certificates

TUNNEL_ALPN = "gossamer-tunnel/2"  # mux.py's frames; a peer that does not know it ignores it


class IdentityError(ValueError):
    """The agent's leaf or roots answer cannot be used; the message says why."""


@dataclass(frozen=True)
class Identity:
    """One generation of the proxy's identity: contexts and the trust they check against."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    trust: Trust
    serial: str
    server_tunnel: ssl.SSLContext  # the same, agreeing to frames (ALPN, mux.py): inbound ports
    client_tunnel: ssl.SSLContext  # the same, offering frames: upstreams
    uri: str = ""  # the leaf's SPIFFE ID (the leaf answer's ServiceURI)


def build_identity(leaf: dict[str, Any], roots: dict[str, Any]) -> Identity:
    """Contexts for a leaf answer and a roots answer; IdentityError naming what is wrong."""
    try:
        cert_pem, key_pem = str(leaf["CertPEM"]), str(leaf["PrivateKeyPEM"])
        trust_domain = str(roots["TrustDomain"])
        root_pems = [str(r["RootCert"]) for r in roots["Roots"]]
    except (KeyError, TypeError) as exc:
        raise IdentityError(f"the agent's leaf or roots answer lacks {exc}") from None
    try:
        certs = [der for pem in root_pems for der in pem_certificates(pem)]
        for der in certs:
            cert_facts(der)  # readable, as every peer's chain will end at one of them
    except ValueError as exc:
        raise IdentityError(f"a root is not a PEM certificate: {exc}") from None
    if not certs:
        raise IdentityError("the agent has no CA root yet")
    cadata = "".join(root_pems)
    # The active root cross-signed by the old one (its IntermediateCerts) goes out with the
    # leaf: a peer that still trusts only the old root verifies a new leaf through it.
    cross = [str(pem) for r in roots["Roots"] if r.get("Active") for pem in
             r.get("IntermediateCerts") or []]  # fmt: skip
    cert_pem = cert_pem.rstrip("\n") + "\n" + "".join(cross) if cross else cert_pem
    return Identity(
        server=_context(ssl.PROTOCOL_TLS_SERVER, cert_pem, key_pem, cadata),
        client=_context(ssl.PROTOCOL_TLS_CLIENT, cert_pem, key_pem, cadata),
        trust=Trust(trust_domain, frozenset(certs), datacenter=_datacenter_of(cert_pem)),
        serial=str(leaf.get("SerialNumber", "")),
        uri=str(leaf.get("ServiceURI", "")),
        server_tunnel=_context(ssl.PROTOCOL_TLS_SERVER, cert_pem, key_pem, cadata, TUNNEL_ALPN),
        client_tunnel=_context(ssl.PROTOCOL_TLS_CLIENT, cert_pem, key_pem, cadata, TUNNEL_ALPN),
    )


def _datacenter_of(cert_pem: str) -> str:
    """The datacenter the leaf's SPIFFE ID names: upstreams must be of it (authorize.py);
    "" when the leaf names none (then no upstream's datacenter is checked)."""
    try:
        uris = cert_facts(pem_certificates(cert_pem)[0]).uris
        identity = parse_identity(uris[0]) if len(uris) == 1 else None
    except (ValueError, IndexError):  # (SpiffeError is a ValueError)
        return ""
    return identity.datacenter if identity is not None else ""


def with_revoked(identity: Identity, revoked: frozenset[bytes]) -> Identity:
    """The same contexts, checking peers against `revoked` too (a new Trust: caches start
    over). OpenSSL is not told: authorize.py refuses those chains after the handshake."""
    if identity.trust.revoked == revoked:
        return identity
    return replace(identity, trust=replace(identity.trust, revoked=revoked))


def _context(
    protocol: ssl._SSLMethod, cert_pem: str, key_pem: str, cadata: str, alpn: str = ""
) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    if alpn:
        context.set_alpn_protocols([alpn])
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    if protocol == ssl.PROTOCOL_TLS_SERVER:
        context.num_tickets = 1  # one ticket: the peer proxy resumes with it (tls_pipe.py)
    try:
        context.load_verify_locations(cadata=cadata)
        _load_chain(context, cert_pem, key_pem)
    except ssl.SSLError as exc:
        raise IdentityError(f"the leaf or roots do not load: {exc}") from None
    return context


def _load_chain(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """`load_cert_chain` reads files only: hand it two memory files on Linux (the key never
    touches a disk, and `tempfile` stays out of the process: ~0.6 MiB of RSS), else two
    files in a private temporary directory."""
    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        _load_chain_from_files(context, cert_pem, key_pem)
        return
    fds = [os.memfd_create(name, os.MFD_CLOEXEC) for name in ("gossamer-chain", "gossamer-key")]
    try:
        for fd, data in zip(fds, (cert_pem, key_pem), strict=True):
            os.write(fd, data.encode())
        context.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
    finally:
        for fd in fds:
            os.close(fd)


def _load_chain_from_files(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    import tempfile  # only where memory files are missing (not Linux)
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="gossamer-proxy-") as tmp:
        cert, key = Path(tmp, "chain.pem"), Path(tmp, "key.pem")
        for path, data in ((cert, cert_pem), (key, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(data)
        context.load_cert_chain(cert, key)
