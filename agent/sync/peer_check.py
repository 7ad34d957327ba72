"""Who is on the other end of an agent-RPC connection: the checks after the TLS handshake. Pure.

OpenSSL has already verified the chain the peer sent against the trust
bundle (see tls.py for why both run); `check_peer` then decides with
gossamer's own rules (`proxy.ca.verify.verify_chain`) whether the peer is an
agent of this mesh:
- the chain verifies against the bundle at `now` for the purpose asked
  (client auth when we serve, server auth when we dial);
- its SPIFFE ID is an agent's (`.../agent/client/dc/<dc>/id/<node-id>`), of
  our trust domain — a service leaf of this very mesh is refused too;
- neither the agent nor any CA of its chain (its intermediate names the
  agent that signed it) is revoked.
Each refusal is a `PeerRefused` whose `reason` is one of the counter names
of refusals.py; `reason_of_verify_code` maps OpenSSL's verify codes onto the
same names, so a rogue certificate counts the same whichever check caught it.

The peer's node name is its certificate's CN (`sign_agent_certificate`
writes the node name there, signed like the SPIFFE ID); it says which
records the peer may push as their owner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from gossamer.agent.sync import refusals
from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca import errors
from gossamer.proxy.ca.verify import CLIENT_AUTH, verify_chain

# OpenSSL's X509_V_ERR_* codes that have a reason of their own; the rest are BAD_CERTIFICATE.
_VERIFY_CODES = {
    2: refusals.UNKNOWN_ISSUER,  # unable to get issuer certificate
    7: refusals.UNKNOWN_ISSUER,  # certificate signature failure
    9: refusals.NOT_YET_VALID,
    10: refusals.EXPIRED,
    18: refusals.UNKNOWN_ISSUER,  # self-signed leaf
    19: refusals.UNKNOWN_ISSUER,  # self-signed certificate in chain
    20: refusals.UNKNOWN_ISSUER,  # unable to get local issuer certificate
    21: refusals.UNKNOWN_ISSUER,  # unable to verify the first certificate
    26: refusals.WRONG_PURPOSE,
    47: refusals.FOREIGN_TRUST_DOMAIN,  # permitted subtree violation (name constraints)
    48: refusals.FOREIGN_TRUST_DOMAIN,  # excluded subtree violation
}
_ERRORS: tuple[tuple[type[errors.CertificateError], str], ...] = (
    (errors.CertificateExpired, refusals.EXPIRED),
    (errors.CertificateNotYetValid, refusals.NOT_YET_VALID),
    (errors.UnknownIssuer, refusals.UNKNOWN_ISSUER),
    (errors.ForeignTrustDomain, refusals.FOREIGN_TRUST_DOMAIN),
    (errors.WrongPurpose, refusals.WRONG_PURPOSE),
)


class PeerRefused(Exception):
    """The peer is not a verified agent of this mesh; `reason` is a refusals.py counter name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PeerAgent:
    """A verified peer: its agent ID, its node name (the certificate's CN), its chain."""

    agent: AgentId
    node: str
    chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class Trust:
    """What a peer is checked against: this agent's identity at one instant."""

    trust_domain: str
    bundle: Sequence[x509.Certificate]
    is_revoked: Callable[[AgentId, x509.Certificate], bool]


def check_peer(
    chain_der: Sequence[bytes],
    trust: Trust,
    now: datetime,
    *,
    purpose: x509.ObjectIdentifier = CLIENT_AUTH,
) -> PeerAgent:
    """The verified agent behind `chain_der` (leaf first), or PeerRefused saying why not."""
    if not chain_der:
        raise PeerRefused(refusals.NO_CERTIFICATE, "the peer presented no certificate")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError:
        raise PeerRefused(
            refusals.BAD_CERTIFICATE, "the peer's certificate is unreadable"
        ) from None
    try:
        verified = verify_chain(certs[0], certs[1:], trust.bundle, now, purpose=purpose)
    except errors.CertificateError as exc:
        raise PeerRefused(reason_of_certificate_error(exc), str(exc)) from None
    agent = verified.identity
    if not isinstance(agent, AgentId):
        raise PeerRefused(refusals.NOT_AN_AGENT, f"{agent.uri} is a service, not an agent")
    if agent.trust_domain != trust.trust_domain:
        raise PeerRefused(
            refusals.FOREIGN_TRUST_DOMAIN,
            f"{agent.uri} is not of this mesh's trust domain {trust.trust_domain!r}",
        )
    if any(trust.is_revoked(agent, ca) for ca in verified.chain[1:]):
        raise PeerRefused(refusals.REVOKED, f"{agent.uri} (or its intermediate) is revoked")
    return PeerAgent(agent, _node_name(verified.chain[0]), verified.chain)


def reason_of_certificate_error(exc: errors.CertificateError) -> str:
    for kind, reason in _ERRORS:
        if isinstance(exc, kind):
            return reason
    return refusals.BAD_CERTIFICATE


def reason_of_verify_code(code: int | None) -> str:
    """The refusal reason for an OpenSSL verify error code."""
    return _VERIFY_CODES.get(code or 0, refusals.BAD_CERTIFICATE)


def _node_name(leaf: x509.Certificate) -> str:
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
