"""Consul blocking-query math: parse `?index=&wait=`, decide whether to wait, and per-key indexes.

A blocking query (`GET ...?index=N&wait=30s`) returns as soon as the data
the client watches has a modification index above N, or when the wait runs
out. This module is the arithmetic only; the live catalog (`live.py`) parks
a request on per-key waiters only while `should_block` holds, and a bump of
a watched key (which raises its index) wakes it, so thousands of watchers
cost no polling. Shells call these rules; none restates them.

Rules (Consul's, see api-docs/features/blocking.mdx):
- `wait` is a Go duration ("100ms", "30s", "5m", "1h30m"); absent or <= 0
  means the default 5 minutes, anything above 10 minutes is cut to 10.
- The server adds jitter up to wait/16, so watchers started together do not
  all return together.
- `X-Consul-Index` is never 0: clients that pass index=0 back do not block
  and would spin, so every index is answered as at least 1.
- A client index above the current one means ours went backwards (restart,
  restore): answer at once, and the client resets to the index we return.
- Indexes are kept per key (one service name, one node, the node list, ...)
  so a change to service B does not wake a watcher of service A.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gossamer.catalog.durations import parse_seconds as parse_duration
from gossamer.catalog.model import NodeRecord, Service

DEFAULT_WAIT_S = 300.0
MAX_WAIT_S = 600.0
JITTER_FRACTION = 16
MAX_INDEX = 2**64 - 1  # Consul parses the index as a uint64


class QueryParamError(ValueError):
    """A query parameter has a bad value; `param` names it for the 400 answer."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"Invalid {param}: {message}")
        self.param = param


# --- parsing ----------------------------------------------------------------------------


def parse_index(raw: str | None) -> int:
    """The `index` parameter; absent or empty means 0 (not a blocking query)."""
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_INDEX:
        raise QueryParamError("index", f"{raw!r} is not an unsigned integer")
    return int(raw)


def parse_wait(raw: str | None) -> float:
    """The `wait` parameter in seconds, defaulted and capped as Consul does.

    Like Consul, a negative or zero wait is not an error: it means the default.
    """
    if raw is None or raw == "":
        return DEFAULT_WAIT_S
    try:
        seconds = parse_duration(raw)
    except ValueError as err:
        raise QueryParamError("wait", str(err)) from None
    if seconds <= 0:
        return DEFAULT_WAIT_S
    return min(seconds, MAX_WAIT_S)


@dataclass(frozen=True)
class BlockingQuery:
    """The parsed `index` and `wait` of one request."""

    index: int
    wait_s: float

    @property
    def is_blocking(self) -> bool:
        """Only a request that names an index waits; without one it is answered at once."""
        return self.index > 0


def parse_blocking(params: Mapping[str, str]) -> BlockingQuery:
    """Both parameters from a query mapping; raises QueryParamError naming the bad one."""
    return BlockingQuery(parse_index(params.get("index")), parse_wait(params.get("wait")))


def jitter(wait_s: float, rng: random.Random) -> float:
    """Extra wait in [0, wait/16), from the caller's random source so tests can fix it."""
    return rng.random() * wait_s / JITTER_FRACTION


def timeout_for(query: BlockingQuery, rng: random.Random) -> float:
    """How long to hold the request at most: the wait plus jitter."""
    return query.wait_s + jitter(query.wait_s, rng)


# --- index rules ------------------------------------------------------------------------


def response_index(index: int) -> int:
    """The `X-Consul-Index` to send: never 0, because clients would spin on it."""
    return max(1, index)


def should_block(requested_index: int, current_index: int) -> bool:
    """Whether to keep waiting: only while the client already has the current data.

    index 0 is not a blocking query; a lower index means the data changed
    since the client looked; a higher one means ours went backwards, and
    the client must get the current index now to reset.
    """
    return requested_index > 0 and requested_index == response_index(current_index)


class IndexTable:
    """The agent's modification index and the index at which each key last changed.

    Mutable (the shell holds one), but free of I/O and time. A key never
    changed has index 0, answered as 1, so a watcher of an absent service
    sleeps until that service appears. `start` lets the shell resume above
    a persisted index.
    """

    def __init__(self, start: int = 0) -> None:
        self._index = start
        self._keys: dict[str, int] = {}

    @property
    def current(self) -> int:
        """The latest index handed out."""
        return self._index

    def bump(self, keys: Iterable[str]) -> int:
        """Record one change touching `keys`; returns its index (unchanged if no keys)."""
        touched = set(keys)
        if touched:
            self._index += 1
            self._keys.update(dict.fromkeys(touched, self._index))
        return self._index

    def index_for(self, key: str) -> int:
        """The index of the last change to `key`, 0 if it never changed."""
        return self._keys.get(key, 0)

    def index_for_any(self, keys: Iterable[str]) -> int:
        """For a query that reads several keys: the latest change among them."""
        return max((self.index_for(k) for k in keys), default=0)


# --- which keys a change touches --------------------------------------------------------

NODES = "nodes"  # /v1/catalog/nodes
SERVICES = "services"  # /v1/catalog/services
CHECKS = "checks"  # /v1/health/state/<state>


def node_key(node: str) -> str:
    """/v1/catalog/node/<n>, /v1/catalog/node-services/<n>, /v1/health/node/<n>."""
    return f"node:{node}"


def service_key(name: str) -> str:
    """/v1/catalog/service/<name>, /v1/health/service/<name>, /v1/health/checks/<name>."""
    return f"service:{name}"


def connect_key(name: str) -> str:
    """/v1/catalog/connect/<name> and /v1/health/connect/<name>: proxies for and natives of it."""
    return f"connect:{name}"


def _connect_targets(service: Service) -> set[str]:
    targets: set[str] = set()
    if service.kind == "connect-proxy":
        dest = service.proxy.get("DestinationServiceName")
        if isinstance(dest, str) and dest:
            targets.add(dest)
    if service.connect.get("Native") is True:
        targets.add(service.name)
    return targets


def _service_keys(services: Iterable[Service]) -> set[str]:
    keys: set[str] = set()
    for s in services:
        keys.add(service_key(s.name))
        keys |= {connect_key(t) for t in _connect_targets(s)}
    return keys


def _node_fields(r: NodeRecord | None) -> object:
    return None if r is None else (r.node_id, r.address, dict(r.tagged_addresses), dict(r.meta))


def _instances(r: NodeRecord | None) -> dict[str, list[object]]:
    """Each service name's instances with their checks, built in one pass.

    One pass, not one scan per service: a node with thousands of services
    would otherwise pay a quadratic cost on every change.
    """
    if r is None:
        return {}
    by_service: dict[str, list[object]] = {}
    for check in r.checks:
        by_service.setdefault(check.service_id, []).append(check)
    out: dict[str, list[object]] = {}
    for s in r.services:
        out.setdefault(s.name, []).append((s, tuple(by_service.get(s.id, ()))))
    return out


def _service_tags(r: NodeRecord | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in r.services if r else ():
        out.setdefault(s.name, []).extend(s.tags)
    return {name: sorted(set(tags)) for name, tags in out.items()}


def changed_keys(old: NodeRecord | None, new: NodeRecord | None) -> set[str]:
    """The index keys a record change touches (None: the node was absent / removed).

    Node-level fields and node-level checks are part of every instance row on
    the node, so a change to them touches all of its services.
    """
    if old == new:
        return set()
    either = new if new is not None else old
    assert either is not None
    keys = {node_key(either.node)}
    if (old.checks if old else ()) != (new.checks if new else ()):
        keys.add(CHECKS)
    node_changed = _node_fields(old) != _node_fields(new)
    node_checks = [r.checks_for("") if r else () for r in (old, new)]
    all_services = [*(old.services if old else ()), *(new.services if new else ())]
    if node_changed or node_checks[0] != node_checks[1]:
        touched = all_services
    else:
        before, after = _instances(old), _instances(new)
        touched = [s for s in all_services if before.get(s.name) != after.get(s.name)]
    if node_changed:
        # Node meta feeds ?node-meta= on the service list too.
        keys |= {NODES, SERVICES}
    if _service_tags(old) != _service_tags(new):
        keys.add(SERVICES)
    return keys | _service_keys(touched)


def health_keys(record: NodeRecord) -> set[str]:
    """Keys touched when the node's gossip health (serfHealth overlay) flips."""
    return {node_key(record.node), CHECKS} | _service_keys(record.services)
