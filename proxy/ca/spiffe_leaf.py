"""Whose certificate is it: the SPIFFE decisions on a certificate's names, in one place. Pure.

Two verifiers read certificates and must decide alike: verify.py (the
agent, on `cryptography` objects, signatures checked there) and the
proxy's verified_chain.py (OpenSSL checked the chain in the handshake,
cert_facts.py reads the fields). Each extracts the names and hands them
here, so the rules exist once:
- an end-entity certificate is not a CA, its EKU holds the purpose asked
  for (client auth to come in, server auth to be dialled), and its KeyUsage,
  if it has one, allows digitalSignature (TLS 1.3 signs with the leaf's key
  whichever side it is on);
- it carries exactly one URI SAN, a service or agent SPIFFE ID
  (intentions/spiffe.py parses it); a service leaf names no host (DNS or
  IP SAN): only an agent's HTTPS certificate may (agent_server.py);
- a CA's trust domain is the one `spiffe://<td>` among its URI SANs, and a
  leaf must be of the trust domain of the root its chain ends at.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from gossamer.intentions.spiffe import (
    AgentId,
    ServiceId,
    SpiffeError,
    parse_identity,
    parse_trust_domain_uri,
)
from gossamer.proxy.ca.errors import ForeignTrustDomain, NotSpiffeCertificate, WrongPurpose

CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"  # id-kp-clientAuth, dotted
SERVER_AUTH = "1.3.6.1.5.5.7.3.1"  # id-kp-serverAuth
_PURPOSES = {CLIENT_AUTH: "TLS client auth", SERVER_AUTH: "TLS server auth"}


def check_end_entity(who: str, *, is_ca: bool) -> None:
    """A leaf is not a CA: NotSpiffeCertificate if it is."""
    if is_ca:
        raise NotSpiffeCertificate(f"{who} is a CA, not a service or agent certificate")


def check_purpose(
    who: str, eku: Collection[str] | None, purpose: str, *, signs: bool = True
) -> None:
    """The leaf's EKU (dotted OIDs; None without one) holds `purpose`, and its KeyUsage allows
    digitalSignature (`signs`; True without a KeyUsage), or WrongPurpose."""
    if eku is None or purpose not in eku:
        raise WrongPurpose(f"{who} is not allowed for {_PURPOSES.get(purpose, purpose)} (its EKU)")
    if not signs:
        raise WrongPurpose(f"{who}: its KeyUsage lacks digitalSignature (TLS 1.3 signs with it)")


def leaf_identity(who: str, uris: Sequence[str], *, names_hosts: bool) -> ServiceId | AgentId:
    """The one SPIFFE ID of a leaf's URI SANs; NotSpiffeCertificate naming what is wrong."""
    if len(uris) != 1:
        raise NotSpiffeCertificate(f"{who} has {len(uris)} URI SANs; exactly one is needed")
    try:
        identity = parse_identity(uris[0])
    except SpiffeError as exc:
        raise NotSpiffeCertificate(f"{who}: URI SAN {uris[0]!r}: {exc}") from None
    if isinstance(identity, ServiceId) and names_hosts:
        raise NotSpiffeCertificate(f"{who}: a service certificate may not name hosts")
    return identity


def trust_domain_in(uris: Sequence[str]) -> str | None:
    """The trust domain a CA names as `spiffe://<td>` among its URI SANs, if exactly one."""
    found = set()
    for uri in uris:
        try:
            found.add(parse_trust_domain_uri(uri))
        except SpiffeError:
            continue
    return found.pop() if len(found) == 1 else None


def check_anchor(
    who: str, identity: ServiceId | AgentId, root: str, root_domain: str | None
) -> None:
    """The leaf `who` is of the trust domain of the root `root` its chain ends at."""
    if root_domain != identity.trust_domain:
        raise ForeignTrustDomain(
            f"{who} is of trust domain {identity.trust_domain!r}, but its root "
            f"{root} is of {root_domain or 'no trust domain'!r}"
        )
