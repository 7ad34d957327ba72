"""Tokens and policies in the replicated "acl" map: resolution, revocation, expiry, hashing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gossamer.agent.acl.resolve import AclNotFound
from gossamer.agent.acl.rules import Access, parse_rules
from gossamer.agent.acl.tokens import ANONYMOUS_ACCESSOR, TOKEN, Policy, Token, hash_secret
from gossamer.agent.replicated.acl_store import AclStore
from gossamer.catalog.store import CatalogStore

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
WEB_RULES = 'service "web" { policy = "write" }'


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[AclStore, AclStore]]:
    a_db = CatalogStore.open(tmp_path / "a.db")
    b_db = CatalogStore.open(tmp_path / "b.db")
    ticks = iter(range(1_000, 10**9))
    a = AclStore(a_db, node="a", wall_ms=lambda: next(ticks), notify=lambda keys: 1)
    b = AclStore(b_db, node="b", wall_ms=lambda: next(ticks), notify=lambda keys: 1)
    yield a, b
    a_db.close()
    b_db.close()


def identify(store: AclStore, secret: str, now: datetime = NOW, dc: str = "dc1") -> str:
    found = store.identify(secret, now=now, datacenter=dc, default_allow=False)
    return found.accessor


def test_a_token_written_on_one_agent_works_on_another_and_revocation_follows(
    stores: tuple[AclStore, AclStore],
) -> None:
    a, b = stores
    a.put_policy(Policy("p1", "web", "", WEB_RULES, parse_rules(WEB_RULES)))
    a.put_token(Token("acc-1", hash_secret("s3cret"), policies=("p1",)))
    b.absorb([(k, e) for k, e in a._map.entries.items()])
    who = b.identify("s3cret", now=NOW, datacenter="dc1", default_allow=False)
    assert who.accessor == "acc-1"
    assert who.authorizer.allows("service", "web", Access.WRITE).allowed
    assert not who.authorizer.allows("service", "db", Access.READ).allowed
    b.delete(TOKEN + "acc-1")
    a.absorb([(k, e) for k, e in b._map.entries.items()])
    with pytest.raises(AclNotFound):
        identify(a, "s3cret")


def test_the_map_holds_only_the_hash_of_a_secret(stores: tuple[AclStore, AclStore]) -> None:
    a, _ = stores
    a.put_token(Token("acc-1", hash_secret("s3cret")))
    assert "s3cret" not in repr(a._map.entries)


def test_expired_unknown_and_foreign_local_tokens_are_not_found(
    stores: tuple[AclStore, AclStore],
) -> None:
    a, _ = stores
    a.put_token(Token("old", hash_secret("old"), expiration=NOW + timedelta(seconds=1)))
    a.put_token(Token("loc", hash_secret("loc"), local=True, datacenter="dc1"))
    assert identify(a, "old") == "old"
    assert identify(a, "loc") == "loc"
    for secret, now, dc in [
        ("old", NOW + timedelta(seconds=1), "dc1"),  # cached identity, expiry still checked
        ("loc", NOW, "dc2"),
        ("guess", NOW, "dc1"),
    ]:
        with pytest.raises(AclNotFound):
            identify(a, secret, now, dc)
    assert identify(a, "") == ANONYMOUS_ACCESSOR


def test_an_unreadable_entry_grants_nothing_and_is_named(stores: tuple[AclStore, AclStore]) -> None:
    a, _ = stores
    a.write(TOKEN + "bad", {"AccessorID": "bad"})  # no SecretHash
    assert a.state.tokens == {}
    assert a.state.problems and a.state.problems[0].startswith("token/bad:")
