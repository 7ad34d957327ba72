"""The agent's own registrations on disk: services, checks, check states, maintenance modes.

These are what `kill -9` and a restart must bring back without anything
being registered again by hand (issue 3, point 3). They are kept as the JSON
the agent was given, because they are the owner's input: the agent
re-derives its node record from them at start.

Foreign keys cascade from a service to its checks, their states and its
maintenance mode, so a deregistration leaves no orphans whatever order the
agent deletes in. All calls here touch a few rows and are cheap enough for
the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gossamer.catalog.model import STATUSES, JsonObject
from gossamer.catalog.store_base import StoreBase, StoreError, dumps_json, get_meta, put_meta


@dataclass(frozen=True)
class CheckState:
    """What a check runner must not forget across a restart.

    `ttl_updated_ms` is the last TTL pass/warn/fail (so expiry counts from
    it, not from the restart); `critical_since_ms` drives
    DeregisterCriticalServiceAfter. Both are wall-clock milliseconds.
    """

    status: str
    output: str = ""
    ttl_updated_ms: int | None = None
    critical_since_ms: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status {self.status!r} not in {STATUSES}")


class StoredCheck(NamedTuple):
    """A check definition as registered; `service_id` is "" for a node-level check."""

    service_id: str
    definition: JsonObject


@dataclass(frozen=True)
class Maintenance:
    """Maintenance modes in force: the node's reason (None when off) and per-service reasons."""

    node: str | None = None
    services: Mapping[str, str] = field(default_factory=dict)


class LocalTables(StoreBase):
    """The local-registration half of `CatalogStore`."""

    def put_service(
        self,
        service_id: str,
        definition: Mapping[str, Any],
        checks: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        replace_checks: bool = False,
    ) -> None:
        """Store a registration and its checks together, so nothing is half-registered.

        With `replace_checks` (Consul's `?replace-existing-checks`) the
        service's other checks are deleted. Re-registering keeps check states
        and maintenance: the agent resets them itself where Consul does.
        """
        body = dumps_json(dict(definition))
        check_rows = [(cid, service_id, dumps_json(dict(d))) for cid, d in (checks or {}).items()]
        with self._tx() as conn:
            # An upsert, not INSERT OR REPLACE: a replace deletes the row first,
            # and the cascade would take the service's checks with it.
            conn.execute(
                "INSERT INTO services(id, definition) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET definition = excluded.definition",
                (service_id, body),
            )
            if replace_checks:
                keep = [row[0] for row in check_rows]
                marks = ",".join("?" * len(keep))
                conn.execute(
                    f"DELETE FROM checks WHERE service_id = ? AND id NOT IN ({marks})",
                    (service_id, *keep),
                )
            self._upsert_checks(conn, check_rows)

    def delete_service(self, service_id: str) -> bool:
        """Remove a service with its checks, their states and its maintenance mode (cascade)."""
        with self._tx() as conn:
            return conn.execute("DELETE FROM services WHERE id = ?", (service_id,)).rowcount > 0

    def services(self) -> dict[str, JsonObject]:
        """Service id -> registration JSON, sorted by id."""
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT id, definition FROM services ORDER BY id").fetchall()
        return {sid: self._json_obj(text, f"service {sid!r}") for sid, text in rows}

    def put_check(
        self, check_id: str, definition: Mapping[str, Any], *, service_id: str = ""
    ) -> None:
        """Store a check definition; a service check needs its service stored first."""
        with self._tx() as conn:
            self._upsert_checks(conn, [(check_id, service_id, dumps_json(dict(definition)))])

    def _upsert_checks(self, conn: sqlite3.Connection, rows: list[tuple[str, str, str]]) -> None:
        for check_id, service_id, body in rows:
            if (
                service_id
                and not conn.execute(
                    "SELECT 1 FROM services WHERE id = ?", (service_id,)
                ).fetchone()
            ):
                raise StoreError(
                    self.path, f"check {check_id!r}: service {service_id!r} not stored"
                )
            conn.execute(
                "INSERT INTO checks(id, service_id, definition) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET "
                "service_id = excluded.service_id, definition = excluded.definition",
                (check_id, service_id or None, body),
            )

    def delete_check(self, check_id: str) -> bool:
        """Remove a check and its state."""
        with self._tx() as conn:
            return conn.execute("DELETE FROM checks WHERE id = ?", (check_id,)).rowcount > 0

    def checks(self) -> dict[str, StoredCheck]:
        """Check id -> (service id, definition JSON), sorted by id."""
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT id, service_id, definition FROM checks ORDER BY id")
            rows_list = rows.fetchall()
        return {
            cid: StoredCheck(sid or "", self._json_obj(text, f"check {cid!r}"))
            for cid, sid, text in rows_list
        }

    def put_check_state(self, check_id: str, state: CheckState) -> bool:
        """Store one check's state; False (nothing written) if the check is no longer stored."""
        return self.put_check_states({check_id: state}) == 1

    def put_check_states(self, states: Mapping[str, CheckState]) -> int:
        """Store several states in one transaction; returns how many checks still existed.

        States of deleted checks are dropped, not refused: a check runner may
        finish its last run just after the check was deregistered.
        """
        written = 0
        with self._tx() as conn:
            for check_id, s in states.items():
                written += conn.execute(
                    "INSERT INTO check_state"
                    "(check_id, status, output, ttl_updated_ms, critical_since_ms) "
                    "SELECT id, ?, ?, ?, ? FROM checks WHERE id = ? "
                    "ON CONFLICT(check_id) DO UPDATE SET status = excluded.status, "
                    "output = excluded.output, ttl_updated_ms = excluded.ttl_updated_ms, "
                    "critical_since_ms = excluded.critical_since_ms",
                    (s.status, s.output, s.ttl_updated_ms, s.critical_since_ms, check_id),
                ).rowcount
        return written

    def check_states(self) -> dict[str, CheckState]:
        """Check id -> last stored state, sorted by id."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT check_id, status, output, ttl_updated_ms, critical_since_ms "
                "FROM check_state ORDER BY check_id"
            ).fetchall()
        return {cid: CheckState(st, out, ttl, crit) for cid, st, out, ttl, crit in rows}

    def set_maintenance(self, service_id: str | None, reason: str | None) -> None:
        """Turn maintenance on (a reason, possibly "") or off (None), for a service or the node."""
        with self._tx() as conn:
            if service_id is None:
                if reason is None:
                    conn.execute("DELETE FROM meta WHERE key = 'node_maintenance'")
                else:
                    put_meta(conn, "node_maintenance", reason)
            elif reason is None:
                conn.execute("DELETE FROM service_maintenance WHERE service_id = ?", (service_id,))
            elif not conn.execute("SELECT 1 FROM services WHERE id = ?", (service_id,)).fetchone():
                raise StoreError(self.path, f"maintenance: service {service_id!r} not stored")
            else:
                conn.execute(
                    "INSERT INTO service_maintenance(service_id, reason) VALUES (?, ?) "
                    "ON CONFLICT(service_id) DO UPDATE SET reason = excluded.reason",
                    (service_id, reason),
                )

    def maintenance(self) -> Maintenance:
        """The maintenance modes in force."""
        with self._tx(write=False) as conn:
            node = get_meta(conn, "node_maintenance")
            rows = conn.execute(
                "SELECT service_id, reason FROM service_maintenance ORDER BY service_id"
            ).fetchall()
        return Maintenance(node if isinstance(node, str) else None, dict(rows))
