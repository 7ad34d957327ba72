"""A CatalogStore whose disk is full: every write transaction fails as SQLite's does, reads work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from gossamer.catalog.store import CatalogStore, StoreError


@contextlib.contextmanager
def disk_full(store: CatalogStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """While inside, `store`'s write transactions raise StoreError("database or disk is full")."""
    real = store._tx

    @contextlib.contextmanager
    def tx(write: bool = True, durable: bool = False) -> Iterator[object]:
        if write:
            raise StoreError(store.path, "database or disk is full")
        with real(write=write, durable=durable) as conn:
            yield conn

    with monkeypatch.context() as patch:
        patch.setattr(store, "_tx", tx)
        yield
