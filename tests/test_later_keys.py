"""Entries of a later release's kinds in the ACL and CA maps (agent/replicated/later_keys.py).

Before: both stores refused every key of a kind they do not read, so a newer
peer offered the entry again each anti-entropy round (a warning each time)
and it did not travel on through this agent. Now it is kept, stored and
passed on, never read; malformed keys of the kinds this version reads are
still refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gossamer.agent.acl.tokens import TOKEN, Token, hash_secret
from gossamer.agent.replicated.acl_store import AclStore
from gossamer.agent.replicated.ca_store import CaStore
from gossamer.agent.replicated.later_keys import later_key
from gossamer.catalog import lww
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.store import CatalogStore

READS = ("token/", "policy/", "bootstrap")
NEWER = Timestamp(1_700_000_000_000, 0, "newer")


@pytest.mark.parametrize(
    ("key", "kept"),
    [
        ("role/3f1c-aa", True),
        ("binding-rule/r1", True),
        ("crl/ab:cd/0011", True),  # two parts, as `seal/` keys are
        ("token/x", False),  # a kind this version reads: its own checks decide
        ("policy/x", False),
        ("bootstrap/x", False),
        ("Role/x", False),  # kinds are lower-case
        ("role/", False),
        ("role//x", False),
        ("role/x y", False),
        ("nokind", False),
        ("role/" + "a" * 301, False),
        ("k" * 33 + "/x", False),
    ],
)
def test_the_shape_of_a_later_key(key: str, kept: bool) -> None:
    assert later_key(key, READS) is kept


Make = Callable[[CatalogStore, str], AclStore | CaStore]


def make_acl(db: CatalogStore, node: str) -> AclStore:
    return AclStore(db, node=node, wall_ms=lambda: 1_700_000_000_000, notify=lambda keys: 1)


def make_ca(db: CatalogStore, node: str) -> CaStore:
    return CaStore(db, node=node, wall_ms=lambda: 1_700_000_000_000, notify=lambda keys: 1)


@pytest.mark.parametrize(
    ("make", "later", "refused"),
    [
        (make_acl, "role/3f1c", ["token/" + "a" * 300, "Not A Key", "x"]),
        (make_ca, "crl/ab:cd/01", ["root/a/b", "seal/ab", "agent/a/b", "other"]),
    ],
)
def test_a_later_kind_is_kept_stored_and_passed_on_never_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, make: Make, later: str, refused: list[str]
) -> None:
    entry = lww.Entry(NEWER, {"Name": "later", "Secret": "sealed-blob"})
    db = CatalogStore.open(tmp_path / "here.db")
    here = make(db, "here")
    assert here.absorb([(later, entry)]) == [later]
    assert "refusing" not in caplog.text and not here.state.problems
    assert here.snapshot().entries.entries == {later: entry}
    further = make(CatalogStore.open(tmp_path / "further.db"), "further")
    assert further.absorb(list(here.snapshot().entries.entries.items())) == [later]
    db.close()
    again = make(CatalogStore.open(tmp_path / "here.db"), "here")  # restarted
    assert again.snapshot().entries.entries == {later: entry}
    for key in refused:
        assert again.absorb([(key, entry)]) == [], key
        assert "refusing a replicated" in caplog.text


def test_a_later_acl_kind_grants_nothing(tmp_path: Path) -> None:
    """An entry under a later kind that looks like a token is not one here."""
    acl = make_acl(CatalogStore.open(tmp_path / "a.db"), "a")
    value = {"AccessorID": "acc-1", "SecretHash": hash_secret("s3cret"), "Policies": []}
    acl.absorb([("token-v2/acc-1", lww.Entry(NEWER, value))])
    assert acl.state.tokens == {} and acl.state.token_for("s3cret") is None
    acl.put_token(Token("acc-2", hash_secret("other")))
    assert set(acl.state.tokens) == {"acc-2"} and TOKEN + "acc-2" in acl.snapshot().entries.entries
