"""Enrolment's filter: from a peer's unauthenticated "ca-bundle", only roots our secret opens."""

from __future__ import annotations

import base64
from typing import Any

from gossamer.agent.identity.enrolment import admissible, parse_bundle
from gossamer.catalog import lww
from gossamer.catalog.hlc import Timestamp
from gossamer.proxy.ca import trust
from gossamer.proxy.ca.ca_entries import root_value
from gossamer.proxy.ca.keys import generate_key
from gossamer.proxy.ca.profile import Issuer
from gossamer.proxy.ca.root import create_root, trust_domain
from gossamer.proxy.ca.seal import SealKey, gossip_secret, seal_key
from tests.ca_support import CLUSTER, NOW

OURS = seal_key(gossip_secret(base64.b64encode(b"o" * 32).decode()), CLUSTER)
THEIRS = seal_key(gossip_secret(base64.b64encode(b"t" * 32).decode()), CLUSTER)


def _entries(root: Issuer, created_ms: int, key: SealKey) -> list[tuple[str, lww.Entry]]:
    """A root and its seal under `key`, as a peer's bundle carries them."""
    rid, value = root_value(root.certificate, CLUSTER, created_ms)
    writes: list[tuple[str, Any]] = [(rid, value)]
    writes += trust.seal_writes(rid.removeprefix("root/"), CLUSTER, root.key, [key])
    stamp = Timestamp(created_ms, 0, "peer")
    return [(k, lww.Entry(stamp, v)) for k, v in writes]


def _keys(cluster_id: str) -> list[SealKey]:
    assert cluster_id == CLUSTER
    return [OURS]


def test_a_root_sealed_under_our_secret_is_taken_with_its_seal() -> None:
    root = create_root(generate_key(), trust_domain(CLUSTER), NOW)
    entries = _entries(root, 1, OURS)
    assert admissible(entries, _keys) == entries


def test_a_root_we_cannot_open_is_left_out_even_when_it_is_older() -> None:
    ours = create_root(generate_key(), trust_domain(CLUSTER), NOW)
    rogue = create_root(generate_key(), trust_domain(CLUSTER), NOW)
    mine, forged = _entries(ours, 2, OURS), _entries(rogue, 1, THEIRS)
    assert admissible(forged + mine, _keys) == mine  # the earlier root would have won


def test_a_seal_of_another_roots_key_does_not_make_a_root_admissible() -> None:
    """A forged root entry beside a seal that opens, but holds another root's key."""
    real = create_root(generate_key(), trust_domain(CLUSTER), NOW)
    fake = create_root(generate_key(), trust_domain(CLUSTER), NOW)
    fake_id, fake_value = root_value(fake.certificate, CLUSTER, 1)
    stamp = Timestamp(1, 0, "peer")
    seals = trust.seal_writes(fake_id.removeprefix("root/"), CLUSTER, real.key, [OURS])
    entries = [(fake_id, lww.Entry(stamp, fake_value))]
    entries += [(k, lww.Entry(stamp, v)) for k, v in seals]
    assert admissible(entries, _keys) == []


def test_config_revocations_and_agents_never_come_in_through_a_bundle() -> None:
    root = create_root(generate_key(), trust_domain(CLUSTER), NOW)
    stamp = Timestamp(1, 0, "peer")
    extra = [
        ("config", lww.Entry(stamp, {"LeafCertTTL": "1h"})),
        ("revoked/n1", lww.Entry(stamp, {"node": "n1", "at_ms": 1, "reason": "x"})),
    ]
    bundle = _entries(root, 1, OURS)
    assert admissible(bundle + extra, _keys) == bundle


def test_a_malformed_bundle_reply_yields_no_entries() -> None:
    assert parse_bundle({"t": "ca-bundle", "entries": "nope"}) == []
    assert parse_bundle({"t": "ca-bundle", "entries": [{"key": 5}, "x", None]}) == []
