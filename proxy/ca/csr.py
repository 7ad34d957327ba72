"""Checking a certificate signing request before a leaf is signed for it.

A CSR is signed only if all of these hold, else a LeafRequestError names the
first that fails:
- it is a PEM certificate request whose self-signature verifies (the
  requester holds the private key);
- its key is EC (P-256/384/521) or RSA (2048/4096);
- it carries exactly one SubjectAltName, a URI, and no other name kinds;
- that URI is a service SPIFFE ID (intentions/spiffe.py) of this trust
  domain and this datacenter, naming the service the leaf is asked for.
The subject and any other requested extensions are ignored: the leaf's
content comes from profile.py, never from the request.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gossamer.intentions.spiffe import ServiceId, SpiffeError, parse_service_uri
from gossamer.proxy.ca.errors import CaConfigError, LeafRequestError
from gossamer.proxy.ca.keys import PublicKey, spec_of


def load_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError:
        raise LeafRequestError("CSR: not a PEM certificate request") from None
    if not csr.is_signature_valid:
        raise LeafRequestError("CSR: its signature does not verify")
    return csr


def check_csr(
    csr: x509.CertificateSigningRequest, trust_domain: str, datacenter: str, service: str
) -> PublicKey:
    """The CSR's public key if a leaf for `service` may be signed for it."""
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise LeafRequestError(f"CSR: key must be EC or RSA, got {type(key).__name__}")
    try:
        spec_of(key, "CSR")
    except CaConfigError as exc:
        raise LeafRequestError(str(exc)) from None
    requested = _service_id(csr)
    if requested.trust_domain != trust_domain:
        raise LeafRequestError(
            f"CSR: trust domain {requested.trust_domain!r} is not this cluster's ({trust_domain!r})"
        )
    if requested.datacenter != datacenter:
        raise LeafRequestError(
            f"CSR: datacenter {requested.datacenter!r} is not this agent's ({datacenter!r})"
        )
    if requested.service != service:
        raise LeafRequestError(
            f"CSR: names service {requested.service!r}, but a leaf for {service!r} was asked for"
        )
    return key


def _service_id(csr: x509.CertificateSigningRequest) -> ServiceId:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise LeafRequestError(
            "CSR: has no SubjectAltName; exactly one URI SAN is required"
        ) from None
    except ValueError as exc:
        raise LeafRequestError(f"CSR: unreadable extensions ({exc})") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or len(san) != 1:
        raise LeafRequestError(
            f"CSR: must carry exactly one SubjectAltName, a URI; found {len(uris)} URI(s) "
            f"among {len(san)} name(s)"
        )
    try:
        return parse_service_uri(uris[0])
    except SpiffeError as exc:
        raise LeafRequestError(
            f"CSR: URI SAN {uris[0]!r} is not a service SPIFFE ID: {exc}"
        ) from None
