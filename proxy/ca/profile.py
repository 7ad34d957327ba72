"""What every certificate gossamer signs carries, and who signs it (an Issuer).

Rules this module keeps:
- CA certificates (roots, cross-signed roots, intermediates): BasicConstraints
  CA:TRUE (critical; intermediates pathlen 0), KeyUsage keyCertSign, cRLSign
  and digitalSignature (critical), URI SAN `spiffe://<td>`, and Name
  Constraints permitting only URIs whose host is the trust domain (critical,
  as RFC 5280 asks), so a CA of this mesh cannot vouch for another mesh.
- End-entity certificates (service leaves, agent certificates): CA:FALSE,
  KeyUsage digitalSignature (+ keyEncipherment for RSA keys), EKU ClientAuth
  and ServerAuth, exactly one URI SAN, CN the service or node name. The SAN
  is not critical because the subject is not empty (RFC 5280 4.2.1.6).
  Only the agent's own HTTPS server certificate (agent_server.py) adds DNS
  and IP SANs (`hosts`) beside its URI; the roots' Name Constraints permit
  URIs of the trust domain only, which leaves other name types unconstrained.
- Every certificate has SubjectKeyIdentifier and AuthorityKeyIdentifier
  (SHA-256 key ids, keys.key_id), so chains build by key, not only by name.
- Serials are random (62 bits of entropy from `secrets`, positive, under 2**63
  so Consul's uint64 `SerialNumber` of a root holds them).
- A certificate never outlives its issuer: NotAfter is clamped to the
  issuer's NotAfter.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gossamer.proxy.ca.keys import PrivateKey, PublicKey, key_id, signature_hash
from gossamer.proxy.ca.spiffe_leaf import trust_domain_in

CLOCK_SKEW = timedelta(minutes=1)  # NotBefore is set this far back: peers' clocks differ


@dataclass(frozen=True)
class Issuer:
    """A CA that can sign: its certificate and the private key of that certificate."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def trust_domain(self) -> str:
        found = trust_domain_of(self.certificate)
        if found is None:
            raise ValueError("issuer certificate has no spiffe://<trust-domain> URI SAN")
        return found


def utc(now: datetime) -> datetime:
    """`now` as an aware UTC datetime; a naive one is refused (its zone is a guess)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def new_serial() -> int:
    return secrets.randbits(62) | (1 << 62)


def uri_sans(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    """The URI SubjectAltNames (empty when there is no SAN extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def trust_domain_of(cert: x509.Certificate) -> str | None:
    """The trust domain a CA certificate names in its `spiffe://<td>` URI SAN, if exactly one."""
    return trust_domain_in(uri_sans(cert))


def common_name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text[:64])])


def ca_builder(
    subject: x509.Name, public_key: PublicKey, trust_domain: str, path_length: int | None
) -> x509.CertificateBuilder:
    """A builder with the CA extensions above; issuer, validity and serial still to set."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(cert_sign=True, encipherment=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_id(public_key)), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
            ),
            critical=False,
        )
        .add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.UniformResourceIdentifier(trust_domain)],
                excluded_subtrees=None,
            ),
            critical=True,
        )
    )


def end_entity_builder(
    subject: x509.Name, public_key: PublicKey, uri: str, *, hosts: Sequence[x509.GeneralName] = ()
) -> x509.CertificateBuilder:
    """A builder with the end-entity extensions above; issuer, validity and serial still to set.

    `hosts` is for agent_server.py alone (see the rules above)."""
    rsa_key = isinstance(public_key, rsa.RSAPublicKey)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False, encipherment=rsa_key), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier(key_id(public_key)), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri), *hosts]),
            critical=False,
        )
    )


def sign(
    builder: x509.CertificateBuilder,
    issuer: Issuer,
    now: datetime,
    ttl: timedelta,
    *,
    not_before: datetime | None = None,
) -> x509.Certificate:
    """Finish `builder` as issued by `issuer`: issuer name, AKI, serial, validity, signature."""
    start = not_before if not_before is not None else utc(now) - CLOCK_SKEW
    end = min(utc(now) + ttl, issuer.certificate.not_valid_after_utc)
    return (
        builder.issuer_name(issuer.certificate.subject)
        .add_extension(
            x509.AuthorityKeyIdentifier(key_id(issuer.key.public_key()), None, None),
            critical=False,
        )
        .serial_number(new_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(issuer.key, signature_hash(issuer.key))
    )


def _key_usage(*, cert_sign: bool, encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
