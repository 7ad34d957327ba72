"""Owner signatures on node records (proxy/ca/record_signature.py): pure, real certificates."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gossamer.catalog.model import NodeRecord, OwnerSignature
from gossamer.catalog.wire import RecordError, record_from_wire, record_to_wire
from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.errors import CertificateError, UnknownIssuer
from gossamer.proxy.ca.record_signature import (
    DOMAIN_TAG,
    BadRecordSignature,
    SignerNotOwner,
    UnsignedRecord,
    canonical,
    sign_record,
    verify_record,
)
from tests.harness.identity import Credentials, Mesh, node_id
from tests.harness.replication import node_record

MESH = Mesh()
DER = serialization.Encoding.DER


def signed_by(credentials: Credentials, node: str = "a", version: int = 3) -> NodeRecord:
    record = node_record(node, version, "web", "db")
    assert isinstance(credentials.key, ec.EllipticCurvePrivateKey)
    chain = [c.public_bytes(DER) for c in (credentials.certificate, credentials.intermediate)]
    return sign_record(record, credentials.key, chain)


def check(record: NodeRecord) -> AgentId:
    return verify_record(record, MESH.bundle, MESH.now)


def test_the_owner_signs_and_anyone_with_the_bundle_verifies() -> None:
    record = signed_by(MESH.enrol("a"))
    assert check(record).node_id == node_id("a")


def test_the_signature_survives_the_wire_and_is_not_content() -> None:
    record = signed_by(MESH.enrol("a"))
    back = record_from_wire(record_to_wire(record))
    assert back.signed == record.signed
    assert check(back).node_id == node_id("a")
    assert back == dataclasses.replace(record, signed=None)  # equal content, equal records


def test_a_changed_record_no_longer_verifies() -> None:
    record = signed_by(MESH.enrol("a"))
    for changed in (
        dataclasses.replace(record, version=4),
        dataclasses.replace(record, address="10.9.9.9"),
        dataclasses.replace(record, services=record.services[:1]),
    ):
        with pytest.raises(BadRecordSignature):
            check(changed)
    assert record.signed is not None
    forged = OwnerSignature(record.signed.signature[:-2] + b"\0\0", record.signed.chain)
    with pytest.raises(BadRecordSignature):
        check(dataclasses.replace(record, signed=forged))
    with pytest.raises(UnsignedRecord, match="no owner signature"):
        check(dataclasses.replace(record, signed=None))


def test_an_agent_cannot_sign_a_record_another_agent_owns() -> None:
    record = signed_by(MESH.enrol("x"), node="a")  # x signs a's record
    with pytest.raises(SignerNotOwner, match="signed by agent 'x'"):
        check(record)


def test_a_signer_outside_the_mesh_or_not_an_agent_is_refused() -> None:
    rogue = Mesh(now=MESH.now)
    with pytest.raises(UnknownIssuer):
        check(signed_by(rogue.enrol("a")))
    with pytest.raises(SignerNotOwner, match="a service"):
        check(signed_by(MESH.service_leaf("a")))
    expired = signed_by(MESH.expired("a"))
    with pytest.raises(CertificateError):
        check(expired)
    assert expired.signed is not None
    junk = OwnerSignature(expired.signed.signature, (b"junk",))
    with pytest.raises(BadRecordSignature, match="unreadable signer"):
        check(dataclasses.replace(expired, signed=junk))


@pytest.mark.parametrize(
    ("sig", "message"),
    [
        ({"s": "AAAA", "c": []}, "sig.c: expected a list of 1 to 3"),
        ({"s": "AAAA", "c": ["AAAA"] * 4}, "sig.c: expected a list of 1 to 3"),
        ({"s": "not base64!", "c": ["AAAA"]}, "sig.s: not valid base64"),
        ({"s": "A" * 400, "c": ["AAAA"]}, "sig.s: expected base64 text of at most 256"),
        ({"s": "", "c": ["AAAA"]}, "sig.s: empty"),
        ({"s": "AAAA", "c": [7]}, r"sig.c\[0\]: expected base64"),
        ("x", "sig"),
    ],
)
def test_a_malformed_signature_on_the_wire_is_a_record_error_naming_it(
    sig: object, message: str
) -> None:
    wire = record_to_wire(node_record("a", 1))
    wire["sig"] = sig
    with pytest.raises(RecordError, match=message):
        record_from_wire(wire)


def test_the_canonical_form_ignores_map_order_and_is_tagged() -> None:
    one = dataclasses.replace(node_record("a", 1), meta={"b": "2", "a": "1"})
    two = dataclasses.replace(node_record("a", 1), meta={"a": "1", "b": "2"})
    assert canonical(one) == canonical(two)
    assert canonical(one).startswith(DOMAIN_TAG)
    assert canonical(one) != canonical(dataclasses.replace(one, version=2))
