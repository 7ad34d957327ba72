"""Verify a certificate chain against the trust bundle and say whose it is.

`verify_chain(leaf, intermediates, roots, now)` returns the leaf's SPIFFE ID
(a service or an agent) or raises one CertificateError subclass naming why:
expired, not yet valid, unknown issuer, foreign trust domain, not a SPIFFE
certificate, not a CA, wrong purpose.

Why not cryptography's `x509.verification`: its chain builder (50.x) refuses
any CA carrying a URI name constraint ("unsupported name constraint"), and
URI constraints are how a gossamer root binds its trust domain. So the
checks are made here, by hand, with RFC 5280's rules for what a mesh needs:
- the leaf: not a CA, inside its validity window at `now`, exactly one URI
  SAN that is a service or agent SPIFFE ID, EKU holding the purpose asked
  for, KeyUsage (if present) allowing digitalSignature; a service leaf names
  no host (DNS or IP SAN): only an agent's HTTPS certificate may
  (agent_server.py);
- each issuer: names match, the signature verifies
  (`verify_directly_issued_by`), and AKI/SKI agree when both are present;
  CA:TRUE, KeyUsage (if present) allows keyCertSign, the path length limit
  holds, inside its validity window; roots of the bundle are tried first,
  then the given intermediates (at most 4 deep, a certificate never twice);
- no certificate has a critical extension these checks do not understand;
- every Name Constraints extension on the path holds for the URI SANs of the
  certificates below it (host match, a leading "." for subdomains); a
  constraint of a kind not checked here fails closed;
- the leaf's trust domain is the trust domain of the root it chains to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from gossamer.intentions.spiffe import AgentId, ServiceId
from gossamer.proxy.ca.agent_server import names_hosts
from gossamer.proxy.ca.errors import (
    CertificateError,
    CertificateExpired,
    CertificateNotYetValid,
    ForeignTrustDomain,
    NotACa,
    NotSpiffeCertificate,
    UnknownIssuer,
)
from gossamer.proxy.ca.profile import trust_domain_of, uri_sans, utc
from gossamer.proxy.ca.spiffe_leaf import (
    check_anchor,
    check_end_entity,
    check_purpose,
    leaf_identity,
)

E = TypeVar("E", bound=x509.ExtensionType)
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
MAX_INTERMEDIATES = 4
_UNDERSTOOD_CRITICAL = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.NAME_CONSTRAINTS,
}


@dataclass(frozen=True)
class Verified:
    """Whose certificate it is, and the chain that proved it (leaf first, root last)."""

    identity: ServiceId | AgentId
    chain: tuple[x509.Certificate, ...]


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
    *,
    purpose: x509.ObjectIdentifier = CLIENT_AUTH,
) -> Verified:
    """The leaf's SPIFFE ID if it chains to one of `roots` at `now`; else a CertificateError."""
    at = utc(now)
    identity = _check_end_entity(leaf, at, purpose)
    chain = _build_path(leaf, list(intermediates), list(roots), at)
    _check_name_constraints(chain)
    check_anchor(_describe(leaf), identity, _describe(chain[-1]), trust_domain_of(chain[-1]))
    return Verified(identity, tuple(chain))


def load_pem_chain(pem: str | bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM text, in order; NotSpiffeCertificate when there is none."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise NotSpiffeCertificate("not a PEM certificate") from None


def _check_end_entity(
    leaf: x509.Certificate, at: datetime, purpose: x509.ObjectIdentifier
) -> ServiceId | AgentId:
    extensions = _extensions(leaf)
    constraints = _find(extensions, x509.BasicConstraints)
    check_end_entity(_describe(leaf), is_ca=constraints is not None and constraints.ca)
    _check_validity(leaf, at)
    identity = leaf_identity(_describe(leaf), uri_sans(leaf), names_hosts=names_hosts(leaf))
    usage = _find(extensions, x509.ExtendedKeyUsage)
    eku = None if usage is None else {oid.dotted_string for oid in usage}
    key_usage = _find(extensions, x509.KeyUsage)
    signs = key_usage is None or key_usage.digital_signature
    check_purpose(_describe(leaf), eku, purpose.dotted_string, signs=signs)
    return identity


def _build_path(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate],
    at: datetime,
) -> list[x509.Certificate]:
    failures: list[CertificateError] = []
    path = _extend([leaf], intermediates, roots, at, failures)
    if path is not None:
        return path
    if failures:
        raise failures[0]
    raise UnknownIssuer(
        f"{_describe(leaf)}: no root of the trust bundle issued it "
        f"(issuer {leaf.issuer.rfc4514_string()!r}; another mesh's CA, or a bad signature)"
    )


def _extend(
    path: list[x509.Certificate],
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate],
    at: datetime,
    failures: list[CertificateError],
) -> list[x509.Certificate] | None:
    """Depth first: a root that issued the path's top ends it; else try each intermediate."""
    for root in (r for r in roots if _issued(path[-1], r)):
        try:
            _check_issuer(root, path, at)
            return [*path, root]
        except CertificateError as exc:
            failures.append(exc)
    if len(path) > MAX_INTERMEDIATES:
        return None
    for candidate in intermediates:
        if candidate in path or not _issued(path[-1], candidate):
            continue
        try:
            _check_issuer(candidate, path, at)
        except CertificateError as exc:
            failures.append(exc)
            continue
        found = _extend([*path, candidate], intermediates, roots, at, failures)
        if found is not None:
            return found
    return None


def _issued(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    aki = _lookup(child, x509.AuthorityKeyIdentifier)
    ski = _lookup(parent, x509.SubjectKeyIdentifier)
    if aki is not None and ski is not None and aki.key_identifier not in (None, ski.digest):
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_issuer(ca: x509.Certificate, below: list[x509.Certificate], at: datetime) -> None:
    """`ca` may sign the top of `below`: a CA allowed to sign certificates at that depth."""
    extensions = _extensions(ca)
    constraints = _find(extensions, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise NotACa(f"{_describe(ca)} signed {_describe(below[-1])} but is not a CA")
    usage = _find(extensions, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        raise NotACa(f"{_describe(ca)}: KeyUsage does not allow certificate signing")
    cas_below = len(below) - 1
    if constraints.path_length is not None and cas_below > constraints.path_length:
        raise NotACa(
            f"{_describe(ca)} allows {constraints.path_length} CA(s) below it, found {cas_below}"
        )
    _check_validity(ca, at)


def _check_validity(cert: x509.Certificate, at: datetime) -> None:
    if at > cert.not_valid_after_utc:
        raise CertificateExpired(f"{_describe(cert)} expired at {_stamp(cert.not_valid_after_utc)}")
    if at < cert.not_valid_before_utc:
        raise CertificateNotYetValid(
            f"{_describe(cert)} is not valid before {_stamp(cert.not_valid_before_utc)}"
        )


def _check_name_constraints(chain: list[x509.Certificate]) -> None:
    for index, ca in enumerate(chain[1:], start=1):
        constraints = _find(_extensions(ca), x509.NameConstraints)
        if constraints is None:
            continue
        for cert in chain[:index]:
            _check_names(cert, constraints, ca)


def _check_names(cert: x509.Certificate, nc: x509.NameConstraints, ca: x509.Certificate) -> None:
    permitted = list(nc.permitted_subtrees or [])
    excluded = list(nc.excluded_subtrees or [])
    unchecked = {type(g).__name__ for g in [*permitted, *excluded]} - {"UniformResourceIdentifier"}
    names = _find(_extensions(cert), x509.SubjectAlternativeName)
    kinds = {type(g).__name__ for g in names or []}
    if unchecked & (kinds | {"DirectoryName"}):
        raise ForeignTrustDomain(
            f"{_describe(ca)} has name constraints of kind {sorted(unchecked)}, "
            "which gossamer does not check; refused rather than trusted"
        )
    allowed = [g.value for g in permitted if isinstance(g, x509.UniformResourceIdentifier)]
    refused = [g.value for g in excluded if isinstance(g, x509.UniformResourceIdentifier)]
    for uri in uri_sans(cert):
        host = urlsplit(uri).hostname or ""
        if (allowed and not any(_host_matches(host, c) for c in allowed)) or any(
            _host_matches(host, c) for c in refused
        ):
            raise ForeignTrustDomain(
                f"{_describe(cert)} names {uri!r}, outside the trust domain "
                f"{', '.join(allowed) or '(none)'} that {_describe(ca)} may vouch for"
            )


def _host_matches(host: str, constraint: str) -> bool:
    """RFC 5280 4.2.1.10 for URIs: ".example" matches subdomains, "example" only itself."""
    constraint = constraint.lower()
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint


def _extensions(cert: x509.Certificate) -> x509.Extensions:
    try:
        extensions = cert.extensions
    except ValueError as exc:
        raise NotSpiffeCertificate(f"{_describe(cert)}: unreadable extensions ({exc})") from None
    for extension in extensions:
        if extension.critical and extension.oid not in _UNDERSTOOD_CRITICAL:
            raise NotSpiffeCertificate(
                f"{_describe(cert)} has an unknown critical extension {extension.oid.dotted_string}"
            )
    return extensions


def _find(extensions: x509.Extensions, kind: type[E]) -> E | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _lookup(cert: x509.Certificate, kind: type[E]) -> E | None:
    """An extension for matching only (unchecked: _check_issuer refuses what is malformed)."""
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, ValueError):
        return None


def _describe(cert: x509.Certificate) -> str:
    return f"certificate {cert.subject.rfc4514_string() or '(empty subject)'!r}"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
