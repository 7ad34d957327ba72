"""ACL tokens and policies: the replicated "acl" last-writer-wins map, kept in SQLite.

Every agent holds every token and policy (no server tier): a token created
on one agent is checked on every other from its own copy once the map has
replicated, exactly as intentions and the CA map do (lww_replica.py keeps
the shared rules). Keys and values are agent/acl/tokens.py's.

Rules this class keeps:
- The decoded state and the identities resolved from it are cached and
  dropped on any change, written here or absorbed from a peer, so a revoked
  token is refused from the moment its tombstone arrives.
- Expiry is checked on every use, not cached.
- Every change takes the next index of the agent's index table under `ACL`.
- A peer's entry of a kind a later release holds is kept and passed on,
  never read (later_keys.py); other unknown keys are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gossamer.agent.acl.bootstrap_race import BootstrapLock
from gossamer.agent.acl.resolve import AclNotFound, Identity, resolve
from gossamer.agent.acl.tokens import (
    BOOTSTRAP,
    MAP_NAME,
    POLICY,
    TOKEN,
    AclState,
    Policy,
    Token,
    known_key,
    policy_value,
    read_state,
    token_value,
)
from gossamer.agent.replicated.hlc_clock import HlcClock
from gossamer.agent.replicated.later_keys import later_key
from gossamer.agent.replicated.lww_replica import DecodedReplica
from gossamer.catalog import lww
from gossamer.catalog.store import CatalogStore

log = logging.getLogger("gossamer.acl")

ACL = "acl"  # blocking-query index key


class AclStore(DecodedReplica[AclState]):
    def __init__(
        self,
        store: CatalogStore,
        *,
        node: str,
        wall_ms: Callable[[], int],
        notify: Callable[[set[str]], int],
        clock: HlcClock | None = None,
    ) -> None:
        self._notify = notify
        self.bootstrap_lock = BootstrapLock(node)  # who may bootstrap: acl/bootstrap_race.py
        self._identities: dict[tuple[str, bool, str], Identity] = {}
        self._index = 0
        super().__init__(
            store, MAP_NAME, node=node, wall_ms=wall_ms, log=log, what="ACL entry", clock=clock
        )
        self._changed(list(self._map.entries))

    def accepts(self, key: str) -> bool:
        """A key this version reads, or a later release's kind: kept, never read
        (later_keys.py says why that is safe)."""
        return known_key(key) or later_key(key, (TOKEN, POLICY, BOOTSTRAP))

    def _decode(self, items: list[tuple[str, Any]]) -> AclState:
        return read_state(items)

    def _after_change(self, keys: list[str]) -> None:
        self._identities = {}
        self._index = self._notify({ACL})

    @property
    def index(self) -> int:
        return self._index

    def identify(
        self, secret: str, *, now: datetime, datacenter: str, default_allow: bool
    ) -> Identity:
        """The identity of `secret` (cached until the map changes); raises AclNotFound."""
        key = (secret, default_allow, datacenter)
        found = self._identities.get(key)
        if found is None:
            found = resolve(
                self.state, secret, now=now, datacenter=datacenter, default_allow=default_allow
            )
            if len(self._identities) > 10_000:  # guessed secrets are not cached: they raise
                self._identities.clear()
            self._identities[key] = found
        if found.token is not None and found.token.expired(now):
            raise AclNotFound()
        return found

    def write(self, key: str, value: Any) -> None:
        held = self._map.entries.get(key)
        stamp = self._clock.tick(after=held.stamp if held is not None else None)
        self._commit([(key, lww.Entry(stamp, value))])

    def delete(self, key: str) -> bool:
        held = self._map.entries.get(key)
        if held is None or held.deleted:
            return False
        self._commit([(key, lww.Entry(self._clock.tick(after=held.stamp), None, deleted=True))])
        return True

    def put_token(self, token: Token) -> None:
        self.write(TOKEN + token.accessor, token_value(token))

    def put_policy(self, policy: Policy) -> None:
        self.write(POLICY + policy.id, policy_value(policy))

    def bootstrapped_index(self) -> int:
        """The reset index of the bootstrap this agent knows of (0: never bootstrapped)."""
        held = self.state.bootstrap
        return int(held.get("ResetIndex", 0)) if held else 0

    def mark_bootstrapped(self, accessor: str, reset_index: int) -> None:
        self.write(BOOTSTRAP, {"AccessorID": accessor, "ResetIndex": reset_index})
