"""The mesh's trust domain and its roots: create one, and cross-sign a successor.

- The trust domain is `<cluster-id>.consul`, as Consul's, the cluster id made
  once when the CA is created and kept with it.
- A root is self-signed, CA:TRUE with no path length limit (a cross-signed
  successor sits between it and the intermediates during a rotation), and
  carries the CA profile of profile.py. Default lifetime 10 years.
- Rotation: the new root is cross-signed by the old root's key. The cross-signed
  copy has the new root's subject and key, so whatever the new root (or its
  intermediates) signs also chains to the old root; agents that still trust
  only the old root keep verifying new leaves, and a bundle holding both
  roots verifies old and new leaves alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509

from gossamer.intentions.spiffe import check_trust_domain
from gossamer.proxy.ca.keys import PrivateKey, colon_hex, key_id, signature_hash
from gossamer.proxy.ca.profile import CLOCK_SKEW, Issuer, ca_builder, common_name, new_serial, utc
from gossamer.proxy.ca.settings import ROOT_TTL_DEFAULT

TRUST_DOMAIN_SUFFIX = ".consul"


def trust_domain(cluster_id: str) -> str:
    """`<cluster-id>.consul`; SpiffeError when the cluster id cannot name a trust domain."""
    return check_trust_domain(f"{cluster_id}{TRUST_DOMAIN_SUFFIX}")


def cluster_id_of(trust_domain_name: str) -> str:
    """The cluster id a trust domain was made from (Consul's ExternalTrustDomain)."""
    return trust_domain_name.removesuffix(TRUST_DOMAIN_SUFFIX)


def root_name(key: PrivateKey, trust_domain_name: str) -> x509.Name:
    """A subject unique per root key, so an old and a new root never share a name."""
    short_key = colon_hex(key_id(key.public_key())[:4]).replace(":", "")
    return common_name(f"pri-{short_key}.gossamer.ca.{trust_domain_name[:8]}.consul")


def create_root(
    key: PrivateKey,
    trust_domain_name: str,
    now: datetime,
    ttl: timedelta = ROOT_TTL_DEFAULT,
) -> Issuer:
    """A self-signed root for `trust_domain_name`, valid from a minute before `now`."""
    check_trust_domain(trust_domain_name)
    name = root_name(key, trust_domain_name)
    start = utc(now) - CLOCK_SKEW
    cert = (
        ca_builder(name, key.public_key(), trust_domain_name, path_length=None)
        .issuer_name(name)
        .add_extension(x509.AuthorityKeyIdentifier(key_id(key.public_key()), None, None), False)
        .serial_number(new_serial())
        .not_valid_before(start)
        .not_valid_after(utc(now) + ttl)
        .sign(key, signature_hash(key))
    )
    return Issuer(cert, key)


def cross_sign(new_root: x509.Certificate, old: Issuer, now: datetime) -> x509.Certificate:
    """The new root re-issued by the old one: same subject, key and extensions.

    Valid from `now` (less the skew allowance) until whichever root expires first.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(new_root.subject)
        .issuer_name(old.certificate.subject)
        .public_key(new_root.public_key())
        .serial_number(new_serial())
        .not_valid_before(utc(now) - CLOCK_SKEW)
        .not_valid_after(min(new_root.not_valid_after_utc, old.certificate.not_valid_after_utc))
    )
    for extension in new_root.extensions:
        if isinstance(extension.value, x509.AuthorityKeyIdentifier):
            continue
        builder = builder.add_extension(extension.value, extension.critical)
    aki = x509.AuthorityKeyIdentifier(key_id(old.key.public_key()), None, None)
    return builder.add_extension(aki, critical=False).sign(old.key, signature_hash(old.key))
