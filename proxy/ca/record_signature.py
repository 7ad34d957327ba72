"""Owner signatures on node records, so a relayed record can be checked against its owner. Pure.

Anti-entropy relays every record through any peer; TLS only says who the
relaying peer is. A record signed by its owner (the agent named by its
`origin`) can be relayed by anyone and still be checked by everyone:

- What is signed: `canonical(record)`, a domain tag then the record's wire
  form (`catalog.wire.record_to_wire`, every field, no signature) as JSON
  with sorted keys, no spaces, UTF-8. Two agents that decode the same
  record encode the same bytes, whatever order its maps arrived in.
- How: ECDSA with the owner's agent key (EC P-256 and SHA-256 as gossamer
  makes agent keys; P-384/521 keys use the matching hash, `signature_hash`).
- Who may sign: the signer's agent certificate must verify against the trust
  bundle (`verify.verify_chain`, the intermediates as published in the CA
  map), name an agent (not a service), and carry the record's `origin` as
  its CN (`sign_agent_certificate` writes the node name there). So agent X
  can sign only records whose owner is X.
Every refusal is a `RecordSignatureError` subclass naming why; a
`CertificateError` from the chain check passes through as it is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gossamer.catalog.model import NodeRecord
from gossamer.catalog.wire import record_to_wire
from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.errors import CaError
from gossamer.proxy.ca.verify import CLIENT_AUTH, verify_chain

DOMAIN_TAG = (
    b"gossamer node record v1\n"  # a signature over a record is never one over anything else
)


class RecordSignatureError(CaError):
    """A record's owner signature does not hold; the message says why."""


class BadRecordSignature(RecordSignatureError):
    """The signature does not verify for this record and the signer's key."""


class SignerNotOwner(RecordSignatureError):
    """The signer is a verified agent, but not the record's owner (its `origin`)."""


@dataclass(frozen=True)
class RecordSignature:
    """An owner's signature over one record, with the certificate that made it (both DER)."""

    signature: bytes
    signer: bytes


def canonical(record: NodeRecord) -> bytes:
    """The bytes an owner signs for `record` (see the module docstring)."""
    body = json.dumps(
        record_to_wire(record),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return DOMAIN_TAG + body.encode("utf-8")


def sign_record(
    record: NodeRecord, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate
) -> RecordSignature:
    """The owner's signature over `record` with its agent key and certificate."""
    signature = key.sign(canonical(record), ec.ECDSA(_hash_for(key.curve)))
    return RecordSignature(signature, certificate.public_bytes(serialization.Encoding.DER))


def verify_record(
    record: NodeRecord,
    signed: RecordSignature,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> AgentId:
    """The owner agent that signed `record`; RecordSignatureError or CertificateError if not."""
    try:
        signer = x509.load_der_x509_certificate(signed.signer)
    except ValueError:
        raise BadRecordSignature(f"record of {record.node!r}: unreadable signer") from None
    identity = verify_chain(signer, intermediates, roots, now, purpose=CLIENT_AUTH).identity
    if not isinstance(identity, AgentId):
        raise SignerNotOwner(f"record of {record.node!r} is signed by {identity.uri}, a service")
    owner = _common_name(signer)
    if owner != record.origin:
        raise SignerNotOwner(
            f"record of {record.node!r} (owner {record.origin!r}) is signed by agent {owner!r}"
        )
    public_key = signer.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise BadRecordSignature(f"record of {record.node!r}: signer key is not EC")
    try:
        public_key.verify(
            signed.signature, canonical(record), ec.ECDSA(_hash_for(public_key.curve))
        )
    except InvalidSignature:
        raise BadRecordSignature(
            f"record of {record.node!r}: the signature does not match the record"
        ) from None
    return identity


def _hash_for(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    if curve.key_size == 384:
        return hashes.SHA384()
    if curve.key_size == 521:
        return hashes.SHA512()
    return hashes.SHA256()


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
