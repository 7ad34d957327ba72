"""Consul's JSON shapes for the CA: roots, a leaf, the CA configuration. Pure dict builders.

Formats follow Consul's API documentation (connect/ca, agent/connect):
- a root's `ID` is the SHA-1 fingerprint of its DER in lower-case colon hex
  (Consul's CalculateCertFingerprint), `ActiveRootID` the active root's ID;
- `SigningKeyID` is the root's SubjectKeyIdentifier in colon hex;
- a root's `SerialNumber` is a JSON integer (Consul's uint64), a leaf's is
  colon hex (Consul's HexString of the serial's bytes);
- times are RFC 3339 in UTC with a "Z" ("2018-05-25T21:39:23Z");
- `IntermediateCerts` is null when there are none, as Consul writes it; a
  cross-signed copy of a new root goes there so old-root clients can chain;
- `ExternalTrustDomain` is the cluster id the trust domain was made from;
- configuration TTLs are Go durations; the configuration never carries a
  private key or a root certificate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gossamer.catalog.durations import format_seconds as format_duration
from gossamer.intentions.spiffe import ServiceId
from gossamer.proxy.ca.keys import certificate_pem, colon_hex, signing_key_id, spec_of
from gossamer.proxy.ca.profile import trust_domain_of
from gossamer.proxy.ca.root import cluster_id_of
from gossamer.proxy.ca.settings import CaSettings

ROOT_NAME = "gossamer CA Root Cert"
PROVIDER = "consul"


@dataclass(frozen=True)
class RootEntry:
    """One root of the trust bundle with what the roots endpoint shows about it."""

    certificate: x509.Certificate
    active: bool
    create_index: int
    modify_index: int
    intermediates: tuple[x509.Certificate, ...] = ()
    name: str = ROOT_NAME


def root_id(cert: x509.Certificate) -> str:
    """Consul's root ID: SHA-1 fingerprint of the DER, colon hex."""
    return colon_hex(cert.fingerprint(hashes.SHA1()))  # an identifier, as Consul's


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def root_json(entry: RootEntry) -> dict[str, Any]:
    cert = entry.certificate
    spec = spec_of(cert.public_key(), "RootCert")
    domain = trust_domain_of(cert) or ""
    return {
        "ID": root_id(cert),
        "Name": entry.name,
        "SerialNumber": cert.serial_number,
        "SigningKeyID": signing_key_id(cert),
        "ExternalTrustDomain": cluster_id_of(domain),
        "NotBefore": rfc3339(cert.not_valid_before_utc),
        "NotAfter": rfc3339(cert.not_valid_after_utc),
        "RootCert": certificate_pem(cert),
        "IntermediateCerts": [certificate_pem(c) for c in entry.intermediates] or None,
        "Active": entry.active,
        "PrivateKeyType": spec.key_type,
        "PrivateKeyBits": spec.bits,
        "CreateIndex": entry.create_index,
        "ModifyIndex": entry.modify_index,
    }


def roots_json(trust_domain: str, entries: Sequence[RootEntry]) -> dict[str, Any]:
    """The /v1/connect/ca/roots body: active root first, then the others oldest first."""
    ordered = sorted(entries, key=lambda e: (not e.active, e.certificate.not_valid_before_utc))
    active = next((root_id(e.certificate) for e in ordered if e.active), "")
    return {
        "ActiveRootID": active,
        "TrustDomain": trust_domain,
        "Roots": [root_json(e) for e in ordered],
    }


def leaf_json(
    cert: x509.Certificate,
    private_key_pem: str,
    service: ServiceId,
    create_index: int,
    modify_index: int,
    chain: Sequence[x509.Certificate] = (),
) -> dict[str, Any]:
    """The /v1/agent/connect/ca/leaf/<service> body.

    `chain`: the intermediates between the leaf and the root, appended to
    CertPEM after the leaf (as Consul does), so a TLS peer gets the chain.
    """
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8 or 1, "big")
    return {
        "SerialNumber": colon_hex(serial),
        "CertPEM": "".join(certificate_pem(c) for c in (cert, *chain)),
        "PrivateKeyPEM": private_key_pem,
        "Service": service.service,
        "ServiceURI": service.uri,
        "ValidAfter": rfc3339(cert.not_valid_before_utc),
        "ValidBefore": rfc3339(cert.not_valid_after_utc),
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }


def ca_config_json(settings: CaSettings, create_index: int, modify_index: int) -> dict[str, Any]:
    """The /v1/connect/ca/configuration body: provider and TTLs, never a key."""
    return {
        "Provider": PROVIDER,
        "Config": {
            "LeafCertTTL": format_duration(settings.leaf_cert_ttl.total_seconds()),
            "IntermediateCertTTL": format_duration(settings.intermediate_cert_ttl.total_seconds()),
            "RootCertTTL": format_duration(settings.root_cert_ttl.total_seconds()),
            "PrivateKeyType": settings.key.key_type,
            "PrivateKeyBits": settings.key.bits,
        },
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }
