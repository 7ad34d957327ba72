"""Signing this agent's own catalog records with its agent certificate, and re-signing them.

Every record this agent owns (its node's, and the external nodes it took
registrations for) carries its signature (`proxy.ca.record_signature`), so
any peer can relay it and every agent can still tell it came from its
owner (agent/sync/relay_check.py). `sign` is called by the catalog on each
of this agent's own writes. Before the agent holds a certificate its
records go out unsigned: peers then take them only from this agent itself.
When the certificate changes (enrolment, renewal, rotation), `stale()`
turns true and the composition root republishes the records at a new
version, signed with the new certificate, before relayed copies signed
with the old one could expire.
"""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.catalog.model import NodeRecord
from gossamer.proxy.ca.record_signature import sign_record

DER = serialization.Encoding.DER


class RecordSigner:
    """Signs with the identity's current agent key; remembers which chain it last used."""

    def __init__(self, identity: MeshIdentity) -> None:
        self._identity = identity
        self._signed_with: tuple[bytes, ...] | None = None

    def _current(self) -> tuple[ec.EllipticCurvePrivateKey, tuple[bytes, ...]] | None:
        a = self._identity.authority
        key = a.agent_key
        if a.agent_cert is None or a.intermediate is None or key is None:
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            return None  # agent keys are EC (record_signature signs with ECDSA)
        return key, (a.agent_cert.public_bytes(DER), a.intermediate.public_bytes(DER))

    def sign(self, record: NodeRecord) -> NodeRecord:
        """`record` signed with the current agent key; unsigned while there is none."""
        current = self._current()
        self._signed_with = current[1] if current is not None else None
        if current is None:
            return dataclasses.replace(record, signed=None)
        key, chain = current
        return sign_record(record, key, chain)

    def stale(self) -> bool:
        """Whether the records already out were signed with another chain than the current one."""
        current = self._current()
        return (current[1] if current is not None else None) != self._signed_with
