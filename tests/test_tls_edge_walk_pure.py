"""The certificate-profile edges of the TLS walk, on the pure checks: both verifiers alike.

The agent's verifier (verify.py, `cryptography`) and the proxy's
(verified_chain.py over cert_facts.py's DER reader) must decide alike on a
leaf's KeyUsage; and the proxy takes an upstream only of its own datacenter.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.proxy.authorize import Refused, Trust, server_service
from gossamer.proxy.ca.cert_facts import cert_facts
from gossamer.proxy.ca.errors import WrongPurpose
from gossamer.proxy.ca.keys import generate_key
from gossamer.proxy.ca.profile import common_name, end_entity_builder, sign
from gossamer.proxy.ca.spiffe_leaf import CLIENT_AUTH, SERVER_AUTH
from gossamer.proxy.ca.verified_chain import check_verified
from gossamer.proxy.ca.verify import verify_chain
from tests.ca_support import DC, NOW, TD, Mesh, make_mesh

_NAMES = (
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
    "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
)  # fmt: skip


def _key_usage(*allowed: str) -> x509.KeyUsage:
    return x509.KeyUsage(**{name: name in allowed for name in _NAMES})


def _leaf(mesh: Mesh, usage: x509.KeyUsage | None, dc: str = DC) -> x509.Certificate:
    """A `db` leaf of datacenter `dc`, its KeyUsage replaced by `usage` (None: left out)."""
    key = generate_key()
    uri = f"spiffe://{TD}/ns/default/dc/{dc}/svc/db"
    built = end_entity_builder(common_name("db"), key.public_key(), uri)
    builder = x509.CertificateBuilder().subject_name(common_name("db")).public_key(key.public_key())
    for ext in built._extensions:  # type: ignore[attr-defined]
        if isinstance(ext.value, x509.KeyUsage):
            if usage is None:
                continue
            builder = builder.add_extension(usage, critical=True)
        else:
            builder = builder.add_extension(ext.value, critical=ext.critical)
    return sign(builder, mesh.intermediate, NOW, timedelta(hours=1))


def _chain(mesh: Mesh, leaf: x509.Certificate) -> list[bytes]:
    return [c.public_bytes(Encoding.DER) for c in (leaf, mesh.intermediate.certificate,
                                                   mesh.root.certificate)]  # fmt: skip


@pytest.mark.parametrize(
    ("usage", "signs"),
    [
        (None, True),  # no KeyUsage: every use allowed
        (("digital_signature",), True),
        (("digital_signature", "key_encipherment"), True),
        (("key_agreement",), False),  # OpenSSL's client purpose passes it
        (("key_encipherment",), False),  # OpenSSL's server purpose passes it
        ((), False),
    ],
)
@pytest.mark.parametrize("purpose", [CLIENT_AUTH, SERVER_AUTH])
def test_both_verifiers_refuse_a_leaf_whose_key_usage_forbids_signing(
    usage: tuple[str, ...] | None, signs: bool, purpose: str
) -> None:
    mesh = make_mesh()
    leaf = _leaf(mesh, None if usage is None else _key_usage(*usage))
    chain = _chain(mesh, leaf)
    facts = [cert_facts(der) for der in chain]
    assert facts[0].signs is signs
    oid = x509.ObjectIdentifier(purpose)
    if signs:
        check_verified(chain, facts, {chain[-1]}, NOW, purpose)
        verify_chain(leaf, [mesh.intermediate.certificate], mesh.bundle, NOW, purpose=oid)
        return
    with pytest.raises(WrongPurpose, match="digitalSignature"):  # before: the proxy passed it
        check_verified(chain, facts, {chain[-1]}, NOW, purpose)
    with pytest.raises(WrongPurpose, match="digitalSignature"):
        verify_chain(leaf, [mesh.intermediate.certificate], mesh.bundle, NOW, purpose=oid)


def test_an_upstream_of_another_datacenter_is_the_wrong_server() -> None:
    mesh = make_mesh()
    roots = frozenset({mesh.root.certificate.public_bytes(Encoding.DER)})
    here = Trust(TD, roots, datacenter=DC)
    usage = _key_usage("digital_signature")
    assert server_service(_chain(mesh, _leaf(mesh, usage)), here, NOW, "db").datacenter == DC
    elsewhere = _chain(mesh, _leaf(mesh, usage, dc="dc2"))
    with pytest.raises(Refused, match="of datacenter 'dc2', not this proxy's 'dc1'") as refused:
        server_service(elsewhere, here, NOW, "db")  # before: taken for db
    assert refused.value.reason == "wrong-server"
    # a Trust that names no datacenter (built by hand) checks none
    assert server_service(elsewhere, Trust(TD, roots), NOW, "db").datacenter == "dc2"
