"""Chain verification: what verifies, what is refused and why, rotation, and openssl's view."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from gossamer.intentions.spiffe import AgentId, ServiceId
from gossamer.proxy.ca.errors import (
    CertificateError,
    CertificateExpired,
    CertificateNotYetValid,
    ForeignTrustDomain,
    NotACa,
    NotSpiffeCertificate,
    UnknownIssuer,
    WrongPurpose,
)
from gossamer.proxy.ca.intermediate import sign_intermediate
from gossamer.proxy.ca.keys import certificate_pem, generate_key
from gossamer.proxy.ca.leaf import issue_leaf
from gossamer.proxy.ca.profile import Issuer, common_name, end_entity_builder, sign
from gossamer.proxy.ca.root import create_root, cross_sign
from gossamer.proxy.ca.verify import SERVER_AUTH, load_pem_chain, verify_chain
from tests.ca_support import DC, NODE_ID, NOW, TD, Mesh, make_intermediate, make_mesh
from tests.harness.binaries import require


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    return make_mesh()


def test_a_leaf_verifies_through_its_intermediate(mesh: Mesh) -> None:
    leaf = mesh.leaf("web").certificate
    verified = verify_chain(leaf, [mesh.intermediate.certificate], mesh.bundle, NOW)
    assert verified.identity == ServiceId(TD, DC, "web")
    assert verified.chain == (leaf, mesh.intermediate.certificate, mesh.root.certificate)
    as_server = verify_chain(leaf, [mesh.intermediate.certificate], mesh.bundle, NOW,
                             purpose=SERVER_AUTH)  # fmt: skip
    assert as_server.identity.service == "web"  # type: ignore[union-attr]


def test_an_agent_certificate_verifies_and_names_its_node(mesh: Mesh) -> None:
    cert = mesh.agent_cert()
    verified = verify_chain(cert, [mesh.intermediate.certificate], mesh.bundle, NOW)
    assert verified.identity == AgentId(TD, DC, NODE_ID)


def test_a_leaf_signed_by_the_root_itself_verifies(mesh: Mesh) -> None:
    leaf = issue_leaf(mesh.root, DC, "db", NOW).certificate
    assert verify_chain(leaf, [], mesh.bundle, NOW).chain == (leaf, mesh.root.certificate)


def _ee(issuer: Issuer, uri: str, name: str = "web") -> x509.Certificate:
    key = generate_key()
    return sign(end_entity_builder(common_name(name), key.public_key(), uri), issuer, NOW,
                timedelta(hours=72))  # fmt: skip


def test_another_meshs_certificate_is_an_unknown_issuer(mesh: Mesh) -> None:
    other = make_mesh(cluster="99999999-2222-3333-4444-555555555555")
    leaf = other.leaf().certificate
    with pytest.raises(UnknownIssuer, match="no root of the trust bundle issued it"):
        verify_chain(leaf, [other.intermediate.certificate], mesh.bundle, NOW)


def test_a_rogue_root_claiming_our_trust_domain_is_refused(mesh: Mesh) -> None:
    rogue = create_root(generate_key(), TD, NOW)  # same trust domain, same-looking name shape
    leaf = _ee(rogue, f"spiffe://{TD}/ns/default/dc/{DC}/svc/web")
    with pytest.raises(UnknownIssuer):
        verify_chain(leaf, [rogue.certificate], mesh.bundle, NOW)


def test_our_root_vouching_for_another_trust_domain_breaks_its_name_constraints(
    mesh: Mesh,
) -> None:
    leaf = _ee(mesh.intermediate, f"spiffe://evil.consul/ns/default/dc/{DC}/svc/web")
    with pytest.raises(ForeignTrustDomain, match="outside the trust domain"):
        verify_chain(leaf, [mesh.intermediate.certificate], mesh.bundle, NOW)


def test_an_expired_and_a_not_yet_valid_leaf_are_refused(mesh: Mesh) -> None:
    leaf = mesh.leaf().certificate
    chain = [mesh.intermediate.certificate]
    with pytest.raises(CertificateExpired, match="expired at"):
        verify_chain(leaf, chain, mesh.bundle, NOW + timedelta(hours=73))
    with pytest.raises(CertificateNotYetValid, match="not valid before"):
        verify_chain(leaf, chain, mesh.bundle, NOW - timedelta(minutes=2))
    assert verify_chain(leaf, chain, mesh.bundle, NOW - timedelta(seconds=59))  # skew allowance


def test_an_expired_intermediate_is_refused(mesh: Mesh) -> None:
    short_key = generate_key()
    short = Issuer(sign_intermediate(mesh.root, short_key.public_key(), NOW, name="n",
                                     ttl=timedelta(hours=2)), short_key)  # fmt: skip
    leaf = issue_leaf(short, DC, "web", NOW).certificate
    assert leaf.not_valid_after_utc == short.certificate.not_valid_after_utc  # clamped
    with pytest.raises(CertificateExpired):
        verify_chain(leaf, [short.certificate], mesh.bundle, NOW + timedelta(hours=3))


def test_a_ca_false_certificate_used_as_issuer_is_refused(mesh: Mesh) -> None:
    key = generate_key()  # a service's leaf key, its certificate CA:FALSE, signing a "leaf"
    imposter_cert = sign(end_entity_builder(common_name("api"), key.public_key(),
                                            f"spiffe://{TD}/ns/default/dc/{DC}/svc/api"),
                         mesh.intermediate, NOW, timedelta(hours=72))  # fmt: skip
    imposter = Issuer(imposter_cert, key)
    leaf = _ee(imposter, f"spiffe://{TD}/ns/default/dc/{DC}/svc/web")
    with pytest.raises(NotACa, match="is not a CA"):
        verify_chain(leaf, [imposter_cert, mesh.intermediate.certificate], mesh.bundle, NOW)


def test_an_intermediate_may_not_sign_another_ca(mesh: Mesh) -> None:
    sub = make_intermediate(mesh.intermediate, name="sub")  # pathlen 0 forbids this one
    leaf = issue_leaf(sub, DC, "web", NOW).certificate
    with pytest.raises(NotACa, match="allows 0 CA"):
        verify_chain(leaf, [sub.certificate, mesh.intermediate.certificate], mesh.bundle, NOW)


def test_a_ca_or_a_non_spiffe_certificate_is_not_a_leaf(mesh: Mesh) -> None:
    with pytest.raises(NotSpiffeCertificate, match="is a CA"):
        verify_chain(mesh.intermediate.certificate, [], mesh.bundle, NOW)
    plain = _ee(mesh.intermediate, "https://example.com/x")
    with pytest.raises(NotSpiffeCertificate, match="URI SAN"):
        verify_chain(plain, [mesh.intermediate.certificate], mesh.bundle, NOW)


def test_a_certificate_without_client_auth_is_refused_for_it(mesh: Mesh) -> None:
    leaf = mesh.server_only_leaf()
    with pytest.raises(WrongPurpose, match="TLS client auth"):
        verify_chain(leaf, [mesh.intermediate.certificate], mesh.bundle, NOW)


def test_every_refusal_is_a_certificate_error_with_403() -> None:
    for kind in (CertificateExpired, UnknownIssuer, ForeignTrustDomain, NotACa, WrongPurpose):
        assert issubclass(kind, CertificateError) and kind.http_status == 403


# --- rotation ---------------------------------------------------------------------------


def test_old_and_new_leaves_verify_during_a_rotation() -> None:
    old = make_mesh()
    old_leaf = old.leaf("web").certificate
    later = NOW + timedelta(days=1)
    new_root = create_root(generate_key(), TD, later)
    crossed = cross_sign(new_root.certificate, old.root, later)
    assert crossed.subject == new_root.certificate.subject
    assert crossed.issuer == old.root.certificate.subject
    new_int = make_intermediate(new_root, later)
    new_leaf = issue_leaf(new_int, DC, "web", later).certificate
    both = [old.root.certificate, new_root.certificate]
    old_verified = verify_chain(old_leaf, [old.intermediate.certificate], both, later)
    assert old_verified.identity == ServiceId(TD, DC, "web")
    assert verify_chain(new_leaf, [new_int.certificate], both, later)
    # an agent still trusting only the old root chains a new leaf through the cross-signed root
    only_old = [old.root.certificate]
    chain = verify_chain(new_leaf, [new_int.certificate, crossed], only_old, later).chain
    assert chain[-2:] == (crossed, old.root.certificate)
    with pytest.raises(UnknownIssuer):
        verify_chain(new_leaf, [new_int.certificate], only_old, later)


def test_load_pem_chain_reads_every_certificate(mesh: Mesh) -> None:
    pem = certificate_pem(mesh.intermediate.certificate) + certificate_pem(mesh.root.certificate)
    assert load_pem_chain(pem) == [mesh.intermediate.certificate, mesh.root.certificate]
    with pytest.raises(NotSpiffeCertificate, match="not a PEM"):
        load_pem_chain("nope")


# --- openssl agrees -----------------------------------------------------------------------


def _openssl_verify(tmp_path: Path, mesh: Mesh, leaf: x509.Certificate, *extra: str) -> str:
    files = {"root.pem": mesh.root.certificate, "int.pem": mesh.intermediate.certificate,
             "leaf.pem": leaf}  # fmt: skip
    for name, cert in files.items():
        (tmp_path / name).write_text(certificate_pem(cert))
    stamp = str(int(NOW.timestamp()) + 60)
    argv = ["openssl", "verify", "-attime", stamp, "-CAfile", str(tmp_path / "root.pem"),
            "-untrusted", str(tmp_path / "int.pem"), *extra,
            str(tmp_path / "leaf.pem")]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return done.stdout + done.stderr


def test_openssl_verifies_leaves_and_agent_certificates(tmp_path: Path, mesh: Mesh) -> None:
    require("openssl")
    leaf = mesh.leaf("web").certificate
    for purpose in ((), ("-purpose", "sslclient"), ("-purpose", "sslserver")):
        assert _openssl_verify(tmp_path, mesh, leaf, *purpose).strip().endswith(": OK")
    agent = mesh.agent_cert()
    assert _openssl_verify(tmp_path, mesh, agent, "-purpose", "sslclient").strip().endswith(": OK")


def test_openssl_also_enforces_the_uri_name_constraint(tmp_path: Path, mesh: Mesh) -> None:
    require("openssl")
    foreign = _ee(mesh.intermediate, f"spiffe://evil.consul/ns/default/dc/{DC}/svc/web")
    out = _openssl_verify(tmp_path, mesh, foreign)
    assert "permitted subtree violation" in out and "verification failed" in out, out


def test_an_unknown_critical_extension_is_refused(mesh: Mesh) -> None:
    key = generate_key()
    uri = f"spiffe://{TD}/ns/default/dc/{DC}/svc/web"
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    builder = end_entity_builder(common_name("web"), key.public_key(), uri).add_extension(odd, True)
    leaf = sign(builder, mesh.intermediate, NOW, timedelta(hours=1))
    with pytest.raises(
        NotSpiffeCertificate, match=r"unknown critical extension 1\.3\.6\.1\.4\.1\.99999\.1"
    ):
        verify_chain(leaf, [mesh.intermediate.certificate], mesh.bundle, NOW)
