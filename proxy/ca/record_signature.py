"""Owner signatures on node records, so a relayed record can be checked against its owner. Pure.

Anti-entropy relays every record through any peer; TLS only says who the
relaying peer is. A record signed by its owner (the agent named by its
`origin`) can be relayed by anyone and still be checked by everyone:

- What is signed: `canonical(record)`, a domain tag then the record's
  content (`catalog.wire.record_body_to_wire`: every field but the
  signature) as JSON with sorted keys, no spaces, UTF-8. Two agents that
  decode the same record encode the same bytes, whatever order its maps
  arrived in.
- How: ECDSA with the owner's agent key (EC P-256 and SHA-256 as gossamer
  makes agent keys; P-384/521 keys use the matching hash). The record
  carries the signature and the signer's chain (agent certificate, then its
  intermediate) as a `catalog.model.OwnerSignature`, so checking it needs
  nothing but the trust bundle, even after the signer renewed its
  intermediate.
- Who may sign: the signer's agent certificate must verify against the trust
  bundle, name an agent (not a service), and carry the record's `origin` as
  its CN (`sign_agent_certificate` writes the node name there). So agent X
  can sign only records whose owner is X. `check_signature` is the part
  after the chain: the agent's RPC code verifies chains once per signer with
  its peer rules (trust domain, revocations) and calls it per record;
  `verify_record` is the whole check for callers with only a bundle.
Every refusal is a `RecordSignatureError` subclass naming why; a
`CertificateError` from the chain check passes through as it is.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gossamer.catalog.model import NodeRecord, OwnerSignature
from gossamer.catalog.wire import record_body_to_wire
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


class UnsignedRecord(RecordSignatureError):
    """The record carries no signature (its owner had no agent certificate, or runs an
    older gossamer)."""


def canonical(record: NodeRecord) -> bytes:
    """The bytes an owner signs for `record` (see the module docstring)."""
    body = json.dumps(
        record_body_to_wire(record),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return DOMAIN_TAG + body.encode("utf-8")


def sign_record(
    record: NodeRecord, key: ec.EllipticCurvePrivateKey, chain: Sequence[bytes]
) -> NodeRecord:
    """`record` carrying its owner's signature, made with the agent key whose chain (DER,
    agent certificate first) is `chain`."""
    signature = key.sign(canonical(record), ec.ECDSA(_hash_for(key.curve)))
    return dataclasses.replace(record, signed=OwnerSignature(signature, tuple(chain)))


def verify_record(record: NodeRecord, roots: Sequence[x509.Certificate], now: datetime) -> AgentId:
    """The owner agent that signed `record`; RecordSignatureError or CertificateError if not."""
    signed = _signed(record)
    try:
        chain = [x509.load_der_x509_certificate(der) for der in signed.chain]
    except ValueError:
        raise BadRecordSignature(f"record of {record.node!r}: unreadable signer") from None
    identity = verify_chain(chain[0], chain[1:], roots, now, purpose=CLIENT_AUTH).identity
    if not isinstance(identity, AgentId):
        raise SignerNotOwner(f"record of {record.node!r} is signed by {identity.uri}, a service")
    check_signature(record, _common_name(chain[0]), chain[0])
    return identity


def check_signature(record: NodeRecord, signer_node: str, signer: x509.Certificate) -> None:
    """Whether `record`'s signature is the owner's, made with `signer` (an agent certificate
    already verified, naming node `signer_node`); RecordSignatureError if not."""
    signed = _signed(record)
    if signer_node != record.origin:
        raise SignerNotOwner(
            f"record of {record.node!r} (owner {record.origin!r}) is signed by agent "
            f"{signer_node!r}"
        )
    public_key = signer.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise BadRecordSignature(f"record of {record.node!r}: signer key is not EC")
    try:
        public_key.verify(
            signed.signature, canonical(record), ec.ECDSA(_hash_for(public_key.curve))
        )
    except InvalidSignature:
        # (the usual cause in a cluster mid-upgrade, so the log says it: a record relayed
        # by a 0.1.0 agent lacks the fields it does not know, e.g. ExposedPort; from 0.2.0
        # on a relay keeps them, catalog/wire.py)
        raise BadRecordSignature(
            f"record of {record.node!r}: the signature does not match the record (changed "
            "since it was signed: an agent older than its owner drops the fields it does "
            "not know when it relays, as 0.1.0 does)"
        ) from None


def _signed(record: NodeRecord) -> OwnerSignature:
    if record.signed is None:
        raise UnsignedRecord(f"record of {record.node!r} carries no owner signature")
    return record.signed


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
