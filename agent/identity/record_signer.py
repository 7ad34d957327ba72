"""Signing this agent's own catalog records with its agent certificate, and re-signing them.

Every record this agent owns (its node's, and the external nodes it took
registrations for) carries its signature (`proxy.ca.record_signature`), so
any peer can relay it and every agent can still tell it came from its
owner (agent/sync/relay_check.py). `sign` is called by the catalog on each
of this agent's own writes. Before the agent holds a certificate its
records go out unsigned: peers then take them only from this agent itself.
When the agent first holds a certificate, and when the one its records
were signed with is past half its life and a newer one is held (renewal),
`stale()` turns true and the composition root republishes the records at a
new version, signed with the new certificate, long before relayed copies
signed with the old one could expire. A rotation alone does not: the old
chain stays valid, and its root trusted, until that certificate expires,
and republishing every record of the cluster at once would add a burst of
pulls to the rotation's own.
"""

from __future__ import annotations

import dataclasses

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.catalog.model import NodeRecord
from gossamer.proxy.ca.record_signature import sign_record
from gossamer.proxy.ca.trust import past_half_life

DER = serialization.Encoding.DER


class RecordSigner:
    """Signs with the identity's current agent key; remembers which chain it last used."""

    def __init__(self, identity: MeshIdentity) -> None:
        self._identity = identity
        self._signed_with: tuple[bytes, ...] | None = None
        self._signed_cert: x509.Certificate | None = None  # the agent certificate of that chain

    def _current(self) -> tuple[ec.EllipticCurvePrivateKey, tuple[bytes, ...]] | None:
        key = self._identity.authority.agent_key
        chain = self._identity.agent_chain()
        if not chain or not isinstance(key, ec.EllipticCurvePrivateKey):
            return None  # none yet; agent keys are EC (record_signature signs with ECDSA)
        return key, tuple(c.public_bytes(DER) for c in chain)

    def sign(self, record: NodeRecord) -> NodeRecord:
        """`record` signed with the current agent key; unsigned while there is none."""
        current = self._current()
        self._signed_with = current[1] if current is not None else None
        self._signed_cert = self._identity.authority.agent_cert if current is not None else None
        if current is None:
            return dataclasses.replace(record, signed=None)
        key, chain = current
        return sign_record(record, key, chain)

    def stale(self) -> bool:
        """Whether the records already out should be signed again (see the module docstring)."""
        current = self._current()
        if current is None or current[1] == self._signed_with:
            return False
        if self._signed_with is None or self._signed_cert is None:
            return True  # out unsigned (or signed before this process started)
        return past_half_life(self._signed_cert, self._identity.authority.now())
