"""The CA map's pure rules: entries codec, active root, bundle, race losers, rotation, seals."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.proxy.ca import trust
from gossamer.proxy.ca.agent_standing import agent_standing
from gossamer.proxy.ca.ca_entries import (
    agent_value,
    config_value,
    known_key,
    read_state,
    revoked_value,
    root_value,
)
from gossamer.proxy.ca.consul_json import root_id, roots_json
from gossamer.proxy.ca.keys import generate_key, key_id, key_matches
from gossamer.proxy.ca.leaf import issue_leaf
from gossamer.proxy.ca.profile import Issuer
from gossamer.proxy.ca.root import create_root, cross_sign, trust_domain
from gossamer.proxy.ca.seal import (
    SealError,
    gossip_secret,
    open_secret,
    seal,
    seal_context,
    seal_key,
    token_secret,
    unseal,
)
from gossamer.proxy.ca.settings import CaSettings
from gossamer.proxy.ca.verify import verify_chain
from tests.ca_support import CLUSTER, DC, NOW, make_intermediate

NOW_MS = int(NOW.timestamp() * 1000)
KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()


def _root() -> Issuer:
    return create_root(generate_key(), trust_domain(CLUSTER), NOW)


ROOTS = [_root() for _ in range(3)]


def _state(*writes: tuple[str, object]) -> trust.CaState:
    return read_state(writes)


# -- active root and race losers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "winner"),
    [
        ((1, 2, 3), 0),  # the earliest created wins
        ((5, 2, 9), 1),
        ((7, 7, 9), None),  # a tie: the lower root id wins
    ],
)
def test_active_root_is_the_earliest_created(created: tuple[int, ...], winner: int | None) -> None:
    state = _state(
        *(root_value(r.certificate, CLUSTER, c) for r, c in zip(ROOTS, created, strict=True))
    )
    found = trust.active_root(state)
    assert found is not None
    if winner is None:
        winner_id = min(root_id(r.certificate) for r in ROOTS[:2])
    else:
        winner_id = root_id(ROOTS[winner].certificate)
    assert found.root_id == winner_id
    assert {r.root_id for r in trust.race_losers(state)} == {
        root_id(r.certificate) for r in ROOTS
    } - {winner_id}
    assert trust.bundle(state, NOW_MS) == [found]  # losers are not trusted


@given(st.permutations(range(3)), st.lists(st.integers(0, 5), min_size=3, max_size=3))
@settings(max_examples=50, deadline=None)
def test_every_order_of_the_same_map_picks_the_same_root(
    order: list[int], created: list[int]
) -> None:
    writes = [root_value(ROOTS[i].certificate, CLUSTER, created[i]) for i in range(3)]
    first = trust.active_root(_state(*writes))
    again = trust.active_root(_state(*(writes[i] for i in order)))
    assert first is not None and again is not None and first.root_id == again.root_id


def test_no_root_means_no_bundle_and_nothing_to_reissue() -> None:
    state = _state()
    assert trust.active_root(state) is None
    assert trust.bundle(state, NOW_MS) == []
    assert not trust.must_reissue("anything", state)


def test_must_reissue_what_is_not_under_the_winner() -> None:
    state = _state(*(root_value(r.certificate, CLUSTER, i) for i, r in enumerate(ROOTS)))
    winner = root_id(ROOTS[0].certificate)
    assert not trust.must_reissue(winner, state)
    assert trust.must_reissue(root_id(ROOTS[1].certificate), state)
    assert trust.must_reissue(None, state)


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_keeps_the_old_root_trusted_until_its_last_leaf_expires() -> None:
    old, new = ROOTS[0], ROOTS[1]
    state = _state(root_value(old.certificate, CLUSTER, 1))
    cross = cross_sign(new.certificate, old, NOW)
    ttl = timedelta(hours=72)
    rotated = _state(*trust.rotation_writes(state, new.certificate, cross, NOW_MS, ttl))
    active = trust.active_root(rotated)
    assert active is not None and active.root_id == root_id(new.certificate)
    until = NOW_MS + int((ttl + timedelta(minutes=1)).total_seconds() * 1000)
    assert [r.root_id for r in trust.bundle(rotated, until - 1)] == [
        root_id(new.certificate),
        root_id(old.certificate),
    ]
    assert [r.root_id for r in trust.bundle(rotated, until)] == [root_id(new.certificate)]
    assert trust.cross_signed(rotated, NOW_MS) == [cross]
    # An agent that trusts only the old root chains a leaf under the new one via the cross copy.
    inter = make_intermediate(new)
    leaf = issue_leaf(inter, DC, "web", NOW).certificate
    verify_chain(leaf, [inter.certificate, cross], [old.certificate], NOW)


def test_rotation_needs_an_active_root() -> None:
    with pytest.raises(ValueError, match="no active root"):
        trust.rotation_writes(_state(), ROOTS[0].certificate, ROOTS[0].certificate, 0, timedelta(1))


def test_roots_json_lists_the_active_root_first_with_its_cross_signed_copy() -> None:
    old, new = ROOTS[0], ROOTS[1]
    cross = cross_sign(new.certificate, old, NOW)
    state = _state(
        *trust.rotation_writes(
            _state(root_value(old.certificate, CLUSTER, 1)),
            new.certificate, cross, NOW_MS, timedelta(hours=1),
        )
    )  # fmt: skip
    body = roots_json(trust_domain(CLUSTER), trust.root_entries(state, NOW_MS, 7))
    assert body["ActiveRootID"] == root_id(new.certificate)
    assert [r["Active"] for r in body["Roots"]] == [True, False]
    assert body["Roots"][0]["IntermediateCerts"] and body["Roots"][1]["IntermediateCerts"] is None


# -- entries codec -----------------------------------------------------------------------------


def test_unreadable_entries_are_named_and_left_out() -> None:
    good = root_value(ROOTS[0].certificate, CLUSTER, 1)
    state = read_state(
        [
            good,
            ("root/xx", {"cert": "garbage"}),
            (root_value(ROOTS[1].certificate, CLUSTER, 1)[0], {"cert": good[1]["cert"]}),
            ("config", {"LeafCertTTL": "5m"}),
            ("revoked/n1", {"node": "n1"}),
        ]
    )
    assert [r.root_id for r in state.roots] == [root_id(ROOTS[0].certificate)]
    assert len(state.problems) == 4
    assert state.settings == CaSettings()  # a bad config entry leaves the defaults


def test_config_agents_and_revocations_read_back() -> None:
    inter = make_intermediate(ROOTS[0])
    settings = CaSettings(
        leaf_cert_ttl=timedelta(hours=2), intermediate_cert_ttl=timedelta(hours=9)
    )
    state = read_state(
        [
            config_value(settings),
            agent_value("id-1", "n1", inter.certificate),
            revoked_value("id-1", "n1", 5, "stolen laptop"),
        ]
    )
    assert state.problems == ()
    assert state.settings == settings
    assert state.revoked["id-1"].reason == "stolen laptop"
    assert trust.revoked_key_ids(state) == {key_id(inter.certificate.public_key())}


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("config", True),
        ("root/ab:cd", True),
        ("seal/ab:cd/0011", True),
        ("agent/node-id", True),
        ("revoked/node-id", True),
        ("root/", False),
        ("seal/ab", False),
        ("seal/ab/cd/ef", False),
        ("other/x", False),
        ("root/a/b", False),
    ],
)
def test_known_keys(key: str, ok: bool) -> None:
    assert known_key(key) is ok


# -- seals -------------------------------------------------------------------------------------


def test_a_seal_opens_with_its_secret_only() -> None:
    a, b = seal_key(gossip_secret(KEY_A), CLUSTER), seal_key(gossip_secret(KEY_B), CLUSTER)
    assert a.fingerprint != b.fingerprint and len(a.fingerprint) == 16
    blob = seal(b"root key", a, seal_context(CLUSTER, "r1"))
    assert unseal(blob, a, seal_context(CLUSTER, "r1")) == b"root key"
    with pytest.raises(SealError):
        unseal(blob, b, seal_context(CLUSTER, "r1"))
    with pytest.raises(SealError):  # bound to its root: a copied seal does not open
        unseal(blob, a, seal_context(CLUSTER, "r2"))
    with pytest.raises(SealError):
        unseal("!!", a, seal_context(CLUSTER, "r1"))


def test_the_same_secret_gives_other_keys_in_another_cluster() -> None:
    one = seal_key(open_secret(), CLUSTER)
    other = seal_key(open_secret(), "another-cluster")
    assert one.fingerprint == other.fingerprint  # the secret's id does not depend on the cluster
    assert one.aes_key != other.aes_key


def test_a_join_token_is_stretched_and_must_be_long() -> None:
    with pytest.raises(SealError, match="16 characters"):
        token_secret("short")
    key = seal_key(token_secret("correct horse battery"), CLUSTER)
    assert key.fingerprint != seal_key(token_secret("correct horse battery!"), CLUSTER).fingerprint


@given(st.binary(max_size=200))
@settings(max_examples=30, deadline=None)
def test_garbage_never_unseals(blob: bytes) -> None:
    key = seal_key(open_secret(), CLUSTER)
    with pytest.raises(SealError):
        unseal(base64.b64encode(blob).decode(), key, seal_context(CLUSTER, "r"))


def test_the_root_key_opens_from_the_map_with_a_matching_secret() -> None:
    root = ROOTS[0]
    rid = root_id(root.certificate)
    mine, theirs = seal_key(gossip_secret(KEY_A), CLUSTER), seal_key(gossip_secret(KEY_B), CLUSTER)
    state = _state(
        root_value(root.certificate, CLUSTER, 1), *trust.seal_writes(rid, CLUSTER, root.key, [mine])
    )
    record = trust.active_root(state)
    assert record is not None
    assert key_matches(trust.open_root_key(state, record, [theirs, mine]), root.certificate)
    assert trust.missing_seals(state, record, [mine, theirs]) == [theirs]
    with pytest.raises(SealError, match="no seal of the CA key matches"):
        trust.open_root_key(state, record, [theirs])


# -- an agent's standing (agent_standing.py) --------------------------------------------------


def test_an_agents_standing_follows_the_ca_map() -> None:

    active, other = ROOTS[0], ROOTS[1]
    mine = make_intermediate(active, name="n1")
    stray = make_intermediate(other, name="n2")  # signed by a root the map does not hold
    state = _state(
        root_value(active.certificate, CLUSTER, 1),
        agent_value("id-1", "n1", mine.certificate),
        agent_value("id-2", "n2", stray.certificate),
        agent_value("id-3", "n3", mine.certificate),
        revoked_value("id-3", "n3", NOW_MS, "host stolen"),
    )
    valid = agent_standing(state, "id-1", NOW_MS)
    assert valid.state == "valid" and valid.not_after == mine.certificate.not_valid_after_utc
    assert agent_standing(state, "id-2", NOW_MS).state == "untrusted"
    revoked = agent_standing(state, "id-3", NOW_MS)
    assert (revoked.state, revoked.detail) == ("revoked", "host stolen")
    assert agent_standing(state, "id-9", NOW_MS).state == "not-enrolled"
    after = int(mine.certificate.not_valid_after_utc.timestamp() * 1000) + 1
    assert agent_standing(state, "id-1", after).state == "expired"
