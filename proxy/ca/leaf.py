"""Service leaf certificates, signed by an agent's intermediate (or the root).

A leaf: EC P-256 key (made here, or the requester's from a checked CSR, see
csr.py), URI SAN `spiffe://<td>/ns/default/dc/<dc>/svc/<service>`, CN the
service name, EKU ClientAuth+ServerAuth, CA:FALSE, SKI/AKI, NotBefore one
minute before `now` (peers' clocks differ), NotAfter `now + ttl` but never
past the issuer's NotAfter. The TTL must lie within 1h and 1 year
(settings.py); 72h by default.

Whether the asking agent may have a leaf for that service (it must be
registered there) is the caller's check: this module only signs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from gossamer.intentions.spiffe import ServiceId, SpiffeError, parse_service_uri
from gossamer.proxy.ca.csr import check_csr, load_csr
from gossamer.proxy.ca.errors import LeafRequestError
from gossamer.proxy.ca.keys import KeySpec, PrivateKey, PublicKey, generate_key
from gossamer.proxy.ca.profile import Issuer, common_name, end_entity_builder, sign
from gossamer.proxy.ca.settings import LEAF_TTL_DEFAULT, leaf_ttl_problems

LEAF_KEY = KeySpec("ec", 256)


@dataclass(frozen=True)
class Leaf:
    """A signed leaf; `private_key` is None when signed for a CSR (the requester keeps it)."""

    certificate: x509.Certificate
    service: ServiceId
    private_key: PrivateKey | None = None


def service_id(issuer: Issuer, datacenter: str, service: str) -> ServiceId:
    """The checked SPIFFE ID of `service` in this trust domain and datacenter."""
    wanted = ServiceId(trust_domain=issuer.trust_domain, datacenter=datacenter, service=service)
    try:
        return parse_service_uri(wanted.uri)
    except SpiffeError as exc:
        raise LeafRequestError(f"service {service!r} in datacenter {datacenter!r}: {exc}") from None


def check_service_name(datacenter: str, service: str) -> None:
    """LeafRequestError when no SPIFFE ID can name `service` in `datacenter`."""
    probe = ServiceId(trust_domain="probe.consul", datacenter=datacenter, service=service)
    try:
        parse_service_uri(probe.uri)
    except SpiffeError as exc:
        raise LeafRequestError(f"service {service!r} in datacenter {datacenter!r}: {exc}") from None


def issue_leaf(
    issuer: Issuer,
    datacenter: str,
    service: str,
    now: datetime,
    ttl: timedelta = LEAF_TTL_DEFAULT,
    *,
    test_only_unbounded_ttl: bool = False,
) -> Leaf:
    """A new EC P-256 key and its leaf for `service`.

    `test_only_unbounded_ttl` lifts the 1 h minimum (the agent's
    `test_leaf_cert_ttl` key, so real-agent tests can watch renewals).
    """
    identity = service_id(issuer, datacenter, service)
    key = generate_key(LEAF_KEY)
    certificate = _sign(issuer, key.public_key(), identity, now, ttl, test_only_unbounded_ttl)
    return Leaf(certificate, identity, key)


def sign_leaf_csr(
    issuer: Issuer,
    csr_pem: str | bytes,
    datacenter: str,
    service: str,
    now: datetime,
    ttl: timedelta = LEAF_TTL_DEFAULT,
) -> Leaf:
    """A leaf for the key of a CSR that passes csr.check_csr."""
    identity = service_id(issuer, datacenter, service)
    public_key = check_csr(load_csr(csr_pem), identity.trust_domain, datacenter, service)
    return Leaf(_sign(issuer, public_key, identity, now, ttl), identity)


def _sign(
    issuer: Issuer,
    public_key: PublicKey,
    identity: ServiceId,
    now: datetime,
    ttl: timedelta,
    unbounded: bool = False,
) -> x509.Certificate:
    problems = [] if unbounded and ttl > timedelta(0) else leaf_ttl_problems(ttl)
    if problems:
        raise LeafRequestError(*problems)
    builder = end_entity_builder(common_name(identity.service), public_key, identity.uri)
    return sign(builder, issuer, now, ttl)
