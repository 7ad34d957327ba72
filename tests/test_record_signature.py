"""Owner signatures on node records (proxy/ca/record_signature.py): pure, real certificates."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gossamer.catalog.model import NodeRecord
from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.errors import CertificateError, UnknownIssuer
from gossamer.proxy.ca.record_signature import (
    DOMAIN_TAG,
    BadRecordSignature,
    RecordSignature,
    SignerNotOwner,
    canonical,
    sign_record,
    verify_record,
)
from tests.harness.identity import Credentials, Mesh, node_id
from tests.harness.replication import node_record

MESH = Mesh()


def signed_by(
    credentials: Credentials, node: str = "a", version: int = 3
) -> tuple[NodeRecord, RecordSignature]:
    record = node_record(node, version, "web", "db")
    assert isinstance(credentials.key, ec.EllipticCurvePrivateKey)
    return record, sign_record(record, credentials.key, credentials.certificate)


def check(record: NodeRecord, signature: RecordSignature, credentials: Credentials) -> AgentId:
    return verify_record(record, signature, [credentials.intermediate], MESH.bundle, MESH.now)


def test_the_owner_signs_and_anyone_with_the_bundle_verifies() -> None:
    a = MESH.enrol("a")
    record, signature = signed_by(a)
    assert check(record, signature, a).node_id == node_id("a")


def test_a_changed_record_no_longer_verifies() -> None:
    a = MESH.enrol("a")
    record, signature = signed_by(a)
    for changed in (
        dataclasses.replace(record, version=4),
        dataclasses.replace(record, address="10.9.9.9"),
        dataclasses.replace(record, services=record.services[:1]),
    ):
        with pytest.raises(BadRecordSignature):
            check(changed, signature, a)
    with pytest.raises(BadRecordSignature):
        check(record, RecordSignature(signature.signature[:-2] + b"\0\0", signature.signer), a)


def test_an_agent_cannot_sign_a_record_another_agent_owns() -> None:
    x = MESH.enrol("x")
    record, signature = signed_by(x, node="a")  # x signs a's record
    with pytest.raises(SignerNotOwner, match="signed by agent 'x'"):
        check(record, signature, x)


def test_a_signer_outside_the_mesh_or_not_an_agent_is_refused() -> None:
    rogue = Mesh(now=MESH.now)
    outsider = rogue.enrol("a")
    record, signature = signed_by(outsider)
    with pytest.raises(UnknownIssuer):
        check(record, signature, outsider)
    service = MESH.service_leaf("a")
    record, signature = signed_by(service)
    with pytest.raises(SignerNotOwner, match="a service"):
        check(record, signature, service)
    expired = MESH.expired("a")
    record, signature = signed_by(expired)
    with pytest.raises(CertificateError):
        check(record, signature, expired)
    with pytest.raises(BadRecordSignature, match="unreadable signer"):
        check(record, RecordSignature(signature.signature, b"junk"), expired)


def test_the_canonical_form_ignores_map_order_and_is_tagged() -> None:
    one = dataclasses.replace(node_record("a", 1), meta={"b": "2", "a": "1"})
    two = dataclasses.replace(node_record("a", 1), meta={"a": "1", "b": "2"})
    assert canonical(one) == canonical(two)
    assert canonical(one).startswith(DOMAIN_TAG)
    assert canonical(one) != canonical(dataclasses.replace(one, version=2))
