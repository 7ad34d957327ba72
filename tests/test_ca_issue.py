"""What the CA signs: roots, operator roots, intermediates, agent certificates, leaves, CSRs."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gossamer.intentions.spiffe import AgentId, ServiceId, SpiffeError
from gossamer.proxy.ca.errors import CaConfigError, LeafRequestError
from gossamer.proxy.ca.intermediate import sign_agent_certificate
from gossamer.proxy.ca.keys import KeySpec, certificate_pem, generate_key, private_key_pem
from gossamer.proxy.ca.leaf import issue_leaf, sign_leaf_csr
from gossamer.proxy.ca.operator_root import load_operator_root
from gossamer.proxy.ca.profile import Issuer, common_name, end_entity_builder, sign, uri_sans
from gossamer.proxy.ca.root import create_root, trust_domain
from gossamer.proxy.ca.verify import verify_chain
from tests.ca_support import CLUSTER, DC, NOW, TD, Mesh, make_mesh

E = TypeVar("E", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    return make_mesh()


def _ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def test_trust_domain_is_the_cluster_id_under_consul() -> None:
    assert trust_domain(CLUSTER) == f"{CLUSTER}.consul"
    with pytest.raises(SpiffeError, match="upper-case"):
        trust_domain("ABC")


def test_the_root_profile(mesh: Mesh) -> None:
    root = mesh.root.certificate
    constraints = _ext(root, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length is None
    assert _ext(root, x509.KeyUsage).value.key_cert_sign
    assert uri_sans(root) == [f"spiffe://{TD}"]
    nc = _ext(root, x509.NameConstraints)
    assert nc.critical
    assert nc.value.permitted_subtrees == [x509.UniformResourceIdentifier(TD)]
    ski = _ext(root, x509.SubjectKeyIdentifier).value.digest
    assert _ext(root, x509.AuthorityKeyIdentifier).value.key_identifier == ski
    assert root.issuer == root.subject
    assert root.not_valid_after_utc - NOW == timedelta(days=3650)
    assert root.not_valid_before_utc == NOW - timedelta(minutes=1)
    other = create_root(generate_key(), TD, NOW)
    assert other.certificate.subject != root.subject  # distinct names: rotation chains by name
    assert other.certificate.serial_number != root.serial_number


def test_the_intermediate_profile(mesh: Mesh) -> None:
    inter = mesh.intermediate.certificate
    assert _ext(inter, x509.BasicConstraints).value.path_length == 0
    assert _ext(inter, x509.NameConstraints).value == _ext(mesh.root.certificate,
                                                           x509.NameConstraints).value  # fmt: skip
    assert inter.issuer == mesh.root.certificate.subject
    assert inter.not_valid_after_utc - NOW == timedelta(hours=8760)


def test_the_leaf_profile(mesh: Mesh) -> None:
    leaf = mesh.leaf("web")
    cert = leaf.certificate
    assert leaf.service == ServiceId(TD, DC, "web")
    assert leaf.private_key is not None and leaf.private_key.curve.name == "secp256r1"  # type: ignore[union-attr]
    assert uri_sans(cert) == [f"spiffe://{TD}/ns/default/dc/{DC}/svc/web"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web"
    assert _ext(cert, x509.BasicConstraints).value.ca is False
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH,
    ]  # fmt: skip
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=1)
    assert cert.not_valid_after_utc == NOW + timedelta(hours=72)
    inter_ski = _ext(mesh.intermediate.certificate, x509.SubjectKeyIdentifier).value.digest
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == inter_ski


@pytest.mark.parametrize(
    ("ttl", "ok"),
    [(timedelta(hours=1), True), (timedelta(hours=8760), True),
     (timedelta(minutes=59), False), (timedelta(hours=8761), False)],
)  # fmt: skip
def test_leaf_ttl_bounds(mesh: Mesh, ttl: timedelta, ok: bool) -> None:
    if ok:
        assert mesh.leaf(ttl=ttl).certificate.not_valid_after_utc <= NOW + ttl
        return
    with pytest.raises(LeafRequestError, match="LeafCertTTL: must be between 1h and 8760h"):
        mesh.leaf(ttl=ttl)


@pytest.mark.parametrize(
    ("service", "datacenter", "message"),
    [("-web", DC, "not a valid service name"), ("*", DC, "path segment 6"),
     ("web", "d c", "may hold only"), ("web", "", "empty")],
)  # fmt: skip
def test_a_leaf_for_a_bad_name_is_refused(
    mesh: Mesh, service: str, datacenter: str, message: str
) -> None:
    with pytest.raises(LeafRequestError, match=message):
        issue_leaf(mesh.intermediate, datacenter, service, NOW)


def test_agent_certificates(mesh: Mesh) -> None:
    cert = mesh.agent_cert("n-1")
    assert uri_sans(cert) == [f"spiffe://{TD}/agent/client/dc/{DC}/id/n-1"]
    assert _ext(cert, x509.BasicConstraints).value.ca is False
    foreign = AgentId("other.consul", DC, "n-1")
    with pytest.raises(LeafRequestError, match="not this CA's"):
        sign_agent_certificate(mesh.intermediate, generate_key().public_key(), foreign, NOW,
                               node_name="n")  # fmt: skip


# --- CSRs --------------------------------------------------------------------------------


def _csr(*names: x509.GeneralName, key_spec: KeySpec | None = None) -> str:
    key = generate_key(key_spec or KeySpec())
    builder = x509.CertificateSigningRequestBuilder().subject_name(common_name("x"))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _uri(service: str = "web", td: str = TD, dc: str = DC) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(f"spiffe://{td}/ns/default/dc/{dc}/svc/{service}")


def test_a_good_csr_gets_a_leaf_for_its_key(mesh: Mesh) -> None:
    csr_pem = _csr(_uri())
    leaf = sign_leaf_csr(mesh.intermediate, csr_pem, DC, "web", NOW)
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert leaf.private_key is None
    assert leaf.certificate.public_key() == csr.public_key()
    assert verify_chain(leaf.certificate, [mesh.intermediate.certificate], mesh.bundle, NOW)


def _tampered_csr() -> str:
    """A CSR whose subject was changed after signing (CN "x" -> "y")."""
    der = x509.load_pem_x509_csr(_csr(_uri()).encode()).public_bytes(serialization.Encoding.DER)
    assert der.count(b"\x0c\x01x") == 1
    body = base64.encodebytes(der.replace(b"\x0c\x01x", b"\x0c\x01y")).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


CSR_REFUSED = [
    (lambda: "not a csr", "CSR: not a PEM certificate request"),
    (_tampered_csr, "CSR: its signature does not verify"),
    (lambda: _csr(), "has no SubjectAltName"),
    (lambda: _csr(_uri(), _uri("db")), "exactly one SubjectAltName"),
    (lambda: _csr(_uri(), x509.DNSName("web.example")), "exactly one SubjectAltName"),
    (lambda: _csr(x509.DNSName("web.example")), "found 0 URI"),
    (lambda: _csr(x509.UniformResourceIdentifier("spiffe://td/a//b")), "not a service SPIFFE ID"),
    (lambda: _csr(x509.UniformResourceIdentifier(f"spiffe://{TD}/agent/client/dc/dc1/id/n")),
     "not a service SPIFFE ID"),
    (lambda: _csr(_uri(td="other.consul")), "trust domain 'other.consul' is not this cluster's"),
    (lambda: _csr(_uri(dc="dc2")), "datacenter 'dc2' is not this agent's"),
    (lambda: _csr(_uri("db")), "names service 'db', but a leaf for 'web' was asked for"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "message"), CSR_REFUSED)
def test_csr_refusals_name_the_problem(mesh: Mesh, make: object, message: str) -> None:
    with pytest.raises(LeafRequestError) as caught:
        sign_leaf_csr(mesh.intermediate, make(), DC, "web", NOW)  # type: ignore[operator]
    assert message in str(caught.value)


# --- operator-supplied roots --------------------------------------------------------------


def test_an_operator_root_that_passes_every_check_is_used(mesh: Mesh) -> None:
    issuer = load_operator_root(certificate_pem(mesh.root.certificate),
                                private_key_pem(mesh.root.key), NOW, TD)  # fmt: skip
    assert issuer.certificate == mesh.root.certificate and issuer.trust_domain == TD


def _not_a_ca(mesh: Mesh) -> Issuer:
    key = generate_key()
    builder = end_entity_builder(common_name("x"), key.public_key(), f"spiffe://{TD}")
    return Issuer(sign(builder, mesh.root, NOW, timedelta(days=30)), key)


def _no_spiffe_root() -> Issuer:
    key = generate_key()
    name = common_name("plain CA")
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return Issuer(cert, key)


OPERATOR_REFUSED = [
    (lambda m: (certificate_pem(m.root.certificate), private_key_pem(m.intermediate.key)),
     NOW, "PrivateKey: does not match RootCert"),
    (lambda m: (certificate_pem(m.root.certificate), "junk"), NOW, "PrivateKey: not a PEM"),
    (lambda m: ("junk", private_key_pem(m.root.key)), NOW, "RootCert: not a PEM certificate"),
    (lambda m: (certificate_pem(_not_a_ca(m).certificate), None), NOW, "not a CA certificate"),
    (lambda m: (certificate_pem(m.root.certificate), private_key_pem(m.root.key)),
     NOW + timedelta(days=3651), "RootCert: expired at"),
    (lambda m: (certificate_pem(m.root.certificate), private_key_pem(m.root.key)),
     NOW - timedelta(days=1), "RootCert: not valid before"),
    (lambda m: (certificate_pem(_no_spiffe_root().certificate), None), NOW,
     "has no SPIFFE trust domain"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "when", "message"), OPERATOR_REFUSED)
def test_operator_root_refusals_name_the_problem(
    mesh: Mesh, make: object, when: object, message: str
) -> None:
    root_pem, key_pem = make(mesh)  # type: ignore[operator]
    if key_pem is None:  # the matching key of a helper-made certificate
        key_pem = private_key_pem(generate_key())
    with pytest.raises(CaConfigError) as caught:
        load_operator_root(root_pem, key_pem, when, TD)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_an_operator_root_of_another_trust_domain_is_refused() -> None:
    other = make_mesh(cluster="22222222-2222-3333-4444-555555555555")
    with pytest.raises(CaConfigError, match="is not this cluster's"):
        load_operator_root(certificate_pem(other.root.certificate),
                           private_key_pem(other.root.key), NOW, TD)  # fmt: skip
