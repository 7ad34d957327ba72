"""The proxy's DER reader and checks, against `cryptography` and the agent's own verifier.

cert_facts.py reads what the proxy checks without `cryptography`; these
tests hold it to cryptography's reading of every kind of certificate the CA
makes, and hold the proxy's checks (verified_chain.py) to the agent's
verifier (verify.py) on the refusals both can see: one SPIFFE core, the
same error and message from either.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.agent_server import server_names, sign_agent_server_certificate
from gossamer.proxy.ca.cert_facts import cert_facts, pem_certificates
from gossamer.proxy.ca.errors import CertificateError
from gossamer.proxy.ca.keys import KeySpec, certificate_pem, generate_key, key_id
from gossamer.proxy.ca.profile import common_name, end_entity_builder, sign, uri_sans
from gossamer.proxy.ca.spiffe_leaf import CLIENT_AUTH
from gossamer.proxy.ca.verified_chain import check_verified
from gossamer.proxy.ca.verify import verify_chain
from tests.ca_support import DC, NOW, TD, Mesh, make_mesh

MESH = make_mesh()
SVC = f"spiffe://{TD}/ns/default/dc/{DC}/svc/web"


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _ee(mesh: Mesh, *uris: str, hosts: bool = False) -> x509.Certificate:
    key = generate_key()
    builder = end_entity_builder(common_name("web"), key.public_key(), uris[0])
    if len(uris) > 1 or hosts:
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        names += [x509.DNSName("web.example")] if hosts else []
        builder = x509.CertificateBuilder(
            extensions=[e for e in builder._extensions if e.oid.dotted_string != "2.5.29.17"]
        ).add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.subject_name(common_name("web")).public_key(key.public_key())
    return sign(builder, mesh.intermediate, NOW, timedelta(hours=72))


def _agent_https(mesh: Mesh) -> x509.Certificate:
    key = generate_key()
    names = server_names("node-1", DC, "consul", ["127.0.0.1"])
    agent = AgentId(TD, DC, "node-id-1")
    return sign_agent_server_certificate(mesh.intermediate, key.public_key(), agent, names, NOW,
                                         node_name="node-1")  # fmt: skip


RSA = make_mesh(key=KeySpec("rsa", 2048))
KINDS = {
    "service leaf": MESH.leaf().certificate,
    "agent certificate": MESH.agent_cert(),
    "agent HTTPS certificate": _agent_https(MESH),
    "intermediate": MESH.intermediate.certificate,
    "root": MESH.root.certificate,
    "RSA root": RSA.root.certificate,
    "two URIs and a host": _ee(MESH, SVC, "spiffe://x.consul/other", hosts=True),
    "server auth only": MESH.server_only_leaf(),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_der_reader_agrees_with_cryptography(kind: str) -> None:
    cert = KINDS[kind]
    facts = cert_facts(der(cert))
    assert facts.key_id == key_id(cert.public_key())
    assert (facts.not_before, facts.not_after) == (cert.not_valid_before_utc,
                                                   cert.not_valid_after_utc)  # fmt: skip
    assert list(facts.uris) == uri_sans(cert)
    san = _ext(cert, x509.SubjectAlternativeName)
    hosts = san is not None and bool(
        san.get_values_for_type(x509.DNSName) or san.get_values_for_type(x509.IPAddress)
    )
    assert facts.names_hosts == hosts
    basic = _ext(cert, x509.BasicConstraints)
    assert facts.is_ca == (basic is not None and basic.ca)
    eku = _ext(cert, x509.ExtendedKeyUsage)
    assert facts.eku == (None if eku is None else frozenset(o.dotted_string for o in eku))
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert facts.subject_cn == (cn[0].value if cn else "")
    assert pem_certificates(certificate_pem(cert) * 2) == [der(cert)] * 2


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value  # type: ignore[no-any-return]
    except x509.ExtensionNotFound:
        return None


OTHER = make_mesh(cluster="99999999-2222-3333-4444-555555555555")
REFUSED = {  # leaves whose chains OpenSSL would verify, refused for SPIFFE reasons
    "a CA as leaf": MESH.intermediate.certificate,
    "not a SPIFFE URI": _ee(MESH, "https://example.com/x"),
    "two URI SANs": _ee(MESH, SVC, f"spiffe://{TD}/ns/default/dc/{DC}/svc/db"),
    "a service naming a host": _ee(MESH, SVC, hosts=True),
    "no client auth": MESH.server_only_leaf(),
    "another trust domain than its root's": _ee(MESH, f"spiffe://evil.consul/ns/default/dc/{DC}/svc/web"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_the_proxy_and_the_agent_refuse_alike(case: str) -> None:
    leaf = REFUSED[case]
    chain = [leaf, MESH.intermediate.certificate, MESH.root.certificate]
    if leaf is MESH.intermediate.certificate:
        chain = chain[1:]
    ders = [der(c) for c in chain]
    with pytest.raises(CertificateError) as agent_view:
        verify_chain(leaf, chain[1:-1], MESH.bundle, NOW)
    with pytest.raises(CertificateError) as proxy_view:
        check_verified(ders, [cert_facts(d) for d in ders], {ders[-1]}, NOW, CLIENT_AUTH)
    if case == "another trust domain than its root's":  # verify.py's name constraints see it
        assert type(proxy_view.value).__name__ == "ForeignTrustDomain"  # first (so does OpenSSL)
        assert type(agent_view.value) is type(proxy_view.value)
        return
    assert type(proxy_view.value) is type(agent_view.value)
    assert str(proxy_view.value).split(" ", 2)[2] == str(agent_view.value).split(" ", 2)[2]


def test_a_chain_ending_at_another_root_or_out_of_its_window_is_refused() -> None:
    ders = [der(c) for c in (MESH.leaf().certificate, MESH.intermediate.certificate,
                             MESH.root.certificate)]  # fmt: skip
    facts = [cert_facts(d) for d in ders]
    assert check_verified(ders, facts, {ders[-1]}, NOW, CLIENT_AUTH).uri == SVC
    for roots, at, kind in (
        ({der(OTHER.root.certificate)}, NOW, "UnknownIssuer"),
        ({ders[-1]}, NOW + timedelta(hours=73), "CertificateExpired"),
        ({ders[-1]}, NOW - timedelta(minutes=2), "CertificateNotYetValid"),
    ):
        with pytest.raises(CertificateError) as refused:
            check_verified(ders, facts, roots, at, CLIENT_AUTH)
        assert type(refused.value).__name__ == kind


LEAF = der(MESH.leaf().certificate)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=600),
    st.tuples(st.integers(0, len(LEAF) - 1), st.integers(0, 255)).map(
        lambda cut: LEAF[: cut[0]] + bytes([cut[1]]) + LEAF[cut[0] + 1 :]),
    st.integers(0, len(LEAF)).map(lambda n: LEAF[:n]),
))  # fmt: skip
def test_garbage_is_read_or_refused_with_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):  # anything else (IndexError, ...) fails the test
        cert_facts(data)
