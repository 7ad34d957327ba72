"""An operator's own root (Consul's connect.ca_config PrivateKey / RootCert), checked.

Nothing is used until every check passes; each refusal is a CaConfigError
naming the field and the problem, and all problems are reported at once:
- the key must be an EC (P-256/384/521) or RSA (2048/4096) key and the
  private half of RootCert's public key;
- RootCert must be a CA (BasicConstraints CA:TRUE; KeyUsage, if present,
  allows keyCertSign);
- it must be valid at `now` (neither expired nor not yet valid);
- it must name exactly one SPIFFE trust domain (URI SAN `spiffe://<td>`),
  and that trust domain must be the cluster's when the cluster has one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from cryptography import x509

from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.keys import (
    key_matches,
    load_certificate,
    load_private_key,
    spec_of,
)
from gossamer.proxy.ca.profile import Issuer, trust_domain_of, utc

T = TypeVar("T")


def load_operator_root(
    root_pem: str, key_pem: str, now: datetime, trust_domain: str | None = None
) -> Issuer:
    """The operator's root and key as an Issuer; CaConfigError listing every problem."""
    problems: list[str] = []
    key = _read(lambda: load_private_key(key_pem, "PrivateKey"), problems)
    cert = _read(lambda: load_certificate(root_pem, "RootCert"), problems)
    if cert is None:
        raise CaConfigError(*problems)
    if key is not None and not key_matches(key, cert):
        problems.append("PrivateKey: does not match RootCert's public key")
    problems.extend(root_problems(cert, now, trust_domain))
    if problems or key is None:
        raise CaConfigError(*problems)
    return Issuer(cert, key)


def root_problems(cert: x509.Certificate, now: datetime, trust_domain: str | None) -> list[str]:
    """Why `cert` cannot serve as this mesh's root at `now` (empty when it can)."""
    problems = [*_ca_problems(cert)]
    at = utc(now)
    if at > cert.not_valid_after_utc:
        problems.append(f"RootCert: expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    if at < cert.not_valid_before_utc:
        problems.append(
            f"RootCert: not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"
        )
    found = trust_domain_of(cert)
    if found is None:
        problems.append(
            "RootCert: has no SPIFFE trust domain (one URI SAN spiffe://<trust-domain>)"
        )
    elif trust_domain is not None and found != trust_domain:
        problems.append(
            f"RootCert: trust domain {found!r} is not this cluster's ({trust_domain!r})"
        )
    try:
        spec_of(cert.public_key(), "RootCert")
    except CaConfigError as exc:
        problems.extend(exc.problems)
    return problems


def _ca_problems(cert: x509.Certificate) -> list[str]:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return ["RootCert: not a CA certificate (no BasicConstraints)"]
    if not constraints.ca:
        return ["RootCert: not a CA certificate (BasicConstraints CA:FALSE)"]
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    return [] if usage.key_cert_sign else ["RootCert: KeyUsage does not allow certificate signing"]


def _read(load: Callable[[], T], problems: list[str]) -> T | None:
    try:
        return load()
    except CaConfigError as exc:
        problems.extend(exc.problems)
        return None
