"""What the CA map means: the active root, the trust bundle, race losers, rotation. Pure.

Rules (every agent computes the same from the same map):
1. The active root is, among roots in state "active", the one created
   earliest (`created_ms`), ties broken by root id. Agents that raced to
   create the mesh's first CA each wrote one; this rule picks one winner
   everywhere without a vote.
2. The other "active" roots lost that race: they are not trusted, and
   whatever an agent signed under one is signed again under the winner at
   once (`must_reissue`).
3. The trust bundle is the active root, then every "retiring" root whose
   `trusted_until_ms` is still ahead, oldest first. Each root's cross-signed
   copy (the new root signed by its predecessor's key) is served beside it
   as an intermediate, so a peer that still trusts only the old root can
   chain the new one.
4. Rotation writes the new root "active" (cross-signed by the old key) and
   the old one "retiring", trusted until every leaf it may have signed has
   expired: a leaf TTL from now plus a skew margin (`retire_until`). Agents
   re-sign their intermediate and their leaves under the new root as soon
   as they see it, so nothing new is signed under the old one.
5. The root key opens with any seal whose fingerprint matches one of this
   agent's secrets (seal.py); a root with no such seal cannot be used here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from gossamer.proxy.ca.ca_entries import (
    ACTIVE,
    RETIRING,
    CaState,
    RootRecord,
    intermediate_key_id,
    retiring_value,
    root_value,
    seal_key_of,
)
from gossamer.proxy.ca.consul_json import RootEntry
from gossamer.proxy.ca.keys import PrivateKey, key_id, load_private_key, private_key_pem
from gossamer.proxy.ca.profile import CLOCK_SKEW, utc
from gossamer.proxy.ca.seal import SealError, SealKey, seal, seal_context, unseal

Write = tuple[str, Any]


def active_root(state: CaState) -> RootRecord | None:
    """Rule 1: the earliest-created active root (ties: lowest root id)."""
    active = [r for r in state.roots if r.state == ACTIVE]
    return min(active, key=lambda r: (r.created_ms, r.root_id), default=None)


def race_losers(state: CaState) -> list[RootRecord]:
    """Rule 2: active roots that are not the active root."""
    winner = active_root(state)
    return [r for r in state.roots if r.state == ACTIVE and r is not winner]


def bundle(state: CaState, now_ms: int) -> list[RootRecord]:
    """Rule 3: the active root first, then the retiring roots still trusted, oldest first."""
    winner = active_root(state)
    if winner is None:
        return []
    retiring = [
        r
        for r in state.roots
        if r.state == RETIRING and r.trusted_until_ms is not None and r.trusted_until_ms > now_ms
    ]
    return [winner, *sorted(retiring, key=lambda r: (r.created_ms, r.root_id))]


def next_retirement(state: CaState, now_ms: int) -> int | None:
    """When the next retiring root still trusted stops being trusted (None: none)."""
    return min((r.trusted_until_ms or 0 for r in bundle(state, now_ms)[1:]), default=None)


def bundle_certificates(state: CaState, now_ms: int) -> list[x509.Certificate]:
    """The trusted roots as certificates: what a verifier anchors on."""
    return [r.certificate for r in bundle(state, now_ms)]


def cross_signed(state: CaState, now_ms: int) -> list[x509.Certificate]:
    """The cross-signed copies of trusted roots: intermediates a verifier may need."""
    return [r.cross_signed for r in bundle(state, now_ms) if r.cross_signed is not None]


def root_entries(state: CaState, now_ms: int, index: int) -> list[RootEntry]:
    """The bundle as consul_json's RootEntry rows (one index for all: the map's)."""
    active = active_root(state)
    return [
        RootEntry(
            r.certificate,
            active=r is active,
            create_index=index,
            modify_index=index,
            intermediates=(r.cross_signed,) if r.cross_signed is not None else (),
        )
        for r in bundle(state, now_ms)
    ]


def must_reissue(signed_under: str | None, state: CaState) -> bool:
    """Whether something signed under root `signed_under` must be signed again (rule 2 and 4)."""
    winner = active_root(state)
    return winner is not None and signed_under != winner.root_id


def retire_until(now_ms: int, leaf_ttl: timedelta) -> int:
    """Rule 4: when a root retired now stops being trusted.

    The margin is the clock skew allowance, but never more than one leaf TTL
    (only the test-only short TTLs are shorter than the skew allowance).
    """
    margin = min(CLOCK_SKEW, leaf_ttl)
    return now_ms + int((leaf_ttl + margin).total_seconds() * 1000)


def rotation_writes(
    state: CaState,
    new_root: x509.Certificate,
    cross: x509.Certificate,
    now_ms: int,
    leaf_ttl: timedelta,
) -> list[Write]:
    """Rule 4 as one batch: the old active root retiring, the new one active."""
    old = active_root(state)
    if old is None:
        raise ValueError("no active root to rotate from")
    return [
        retiring_value(old, retire_until(now_ms, leaf_ttl)),
        root_value(new_root, old.cluster_id, now_ms, ACTIVE, cross_signed=cross),
    ]


def seal_writes(
    record_id: str, cluster_id: str, key: PrivateKey, keys: Iterable[SealKey]
) -> list[Write]:
    """One seal entry of the root key per secret."""
    text = private_key_pem(key).encode("ascii")
    context = seal_context(cluster_id, record_id)
    return [(seal_key_of(record_id, k.fingerprint), {"blob": seal(text, k, context)}) for k in keys]


def missing_seals(state: CaState, record: RootRecord, keys: Sequence[SealKey]) -> list[SealKey]:
    """The secrets this agent holds that `record`'s seals do not cover yet."""
    held = state.seals.get(record.root_id, {})
    return [k for k in keys if k.fingerprint not in held]


def stale_seals(state: CaState, record: RootRecord, keys: Sequence[SealKey]) -> list[str]:
    """Fingerprints of `record`'s seals under none of `keys` (a secret no longer in use)."""
    current = {k.fingerprint for k in keys}
    return sorted(fp for fp in state.seals.get(record.root_id, {}) if fp not in current)


def open_root_key(state: CaState, record: RootRecord, keys: Sequence[SealKey]) -> PrivateKey:
    """Rule 5: the root's private key from the first seal one of `keys` opens; else SealError."""
    held = state.seals.get(record.root_id, {})
    context = seal_context(record.cluster_id, record.root_id)
    for k in keys:
        blob = held.get(k.fingerprint)
        if blob is None:
            continue
        return load_private_key(unseal(blob, k, context), "sealed root key")
    raise SealError(
        "no seal of the CA key matches this agent's keyring/join token "
        f"({len(held)} seal(s) held for root {record.root_id[:23]}...)"
    )


def revoked_key_ids(state: CaState) -> set[bytes]:
    """Key ids of the intermediates of revoked agents (their chains are refused)."""
    return {
        intermediate_key_id(cert)
        for node_id, cert in state.agents.items()
        if node_id in state.revoked
    }


def signed_under(cert: x509.Certificate, state: CaState) -> str | None:
    """The id of the root (of the map) whose key signed `cert`, matched by key id."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    for record in state.roots:
        if aki.key_identifier == key_id(record.certificate.public_key()):
            return record.root_id
    return None


def past_half_life(cert: x509.Certificate, now: datetime) -> bool:
    """Whether `cert` has used half its validity: an intermediate is re-signed then."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return utc(now) >= start + (end - start) / 2
