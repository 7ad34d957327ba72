"""The CA's exception types, so the HTTP edge and the TLS layer map them in one place.

Each carries `http_status`, the answer the HTTP edge gives (Consul answers bad
configuration and bad requests with 400, a refused identity with 403). Every
message names the problem; none ever contains key material.
"""

from __future__ import annotations


class CaError(Exception):
    """Base of every CA refusal."""

    http_status = 400


class CaConfigError(CaError):
    """A CA setting, key or operator-supplied root that cannot be used.

    `problems` lists every problem found ("LeafCertTTL: ..."), so one answer
    reports them all; the message joins them.
    """

    def __init__(self, *problems: str) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(problems))


class LeafRequestError(CaError):
    """A request for a leaf (a CSR, a service, a TTL) that must not be signed."""


class CertificateError(CaError):
    """A certificate chain that does not verify against the trust bundle."""

    http_status = 403


class CertificateExpired(CertificateError):
    """A certificate in the chain is past its NotAfter."""


class CertificateNotYetValid(CertificateError):
    """A certificate in the chain is before its NotBefore."""


class UnknownIssuer(CertificateError):
    """No chain from the certificate to any root of the bundle."""


class ForeignTrustDomain(CertificateError):
    """The certificate names another trust domain than its root's."""


class NotSpiffeCertificate(CertificateError):
    """The certificate carries no (or more than one) SPIFFE ID we accept."""


class NotACa(CertificateError):
    """A certificate used as an issuer is not a CA (or may not sign at that depth)."""


class WrongPurpose(CertificateError):
    """The certificate's extended key usage does not allow this use."""
