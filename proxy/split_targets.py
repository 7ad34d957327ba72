"""The service-splitter entries a sidecar obeys, and the instances of each split target.

One blocking watch of `/v1/config/service-splitter` per sidecar (runtime.py)
delivers every splitter entry; `Splitters.apply` hands each upstream
listener the splits of its own service (`listener.split`, () when none), and
keeps a blocking watch of `/v1/health/connect/<target>?passing` for each
other target with weight, exactly as the upstream's own instances are
watched, feeding `listener.set_target_instances`. A changed entry applies
to the next request (or connection): no restart, no reconnect. A split
naming a target not watched before waits (the previous split stays, and
so do the watches of its targets) until that target's first answer is in,
so its first requests do not fail for want of instances the proxy has not
heard of yet, nor the old split's for want of the ones it had.

An entry the proxy cannot read (a newer agent's shape) is logged and that
service is treated as unsplit, so traffic keeps flowing to the upstream
itself rather than nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from gossamer.catalog.config_entries import ConfigEntryError, Split, splits_of
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.health_rows import instances_of
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.watch import Watch

log = logging.getLogger("gossamer.proxy")
PATH = "/v1/config/service-splitter"


def splits_by_service(body: Any) -> dict[str, tuple[Split, ...]]:
    """`{service: splits}` from a `GET /v1/config/service-splitter` answer."""
    found: dict[str, tuple[Split, ...]] = {}
    for entry in body if isinstance(body, list) else []:
        if not isinstance(entry, dict):
            continue
        try:
            splits = splits_of(entry)
        except ConfigEntryError as exc:
            log.error("proxy: service-splitter entry unusable, not applied: %s", exc)
            continue
        found[entry["Name"]] = splits
    return found


def _targets(listener: UpstreamListener, splits: tuple[Split, ...]) -> set[str]:
    """The services other than the upstream's own that `splits` sends a share to."""
    own = listener.upstream.name
    return {s.service for s in splits if s.weight > 0 and s.service != own}


class Splitters:
    """The splits each upstream of one sidecar obeys, and the watches of their targets."""

    def __init__(self, agent: AgentHttp) -> None:
        self._agent = agent
        self.by_service: dict[str, tuple[Split, ...]] = {}
        self._watches: dict[tuple[int, str], Watch] = {}  # (listener id, target) -> watch
        self._pending: dict[int, tuple[Split, ...]] = {}  # listener id -> splits waiting

    def on_entries(self, body: Any, listeners: Iterable[UpstreamListener]) -> None:
        self.by_service = splits_by_service(body)
        for listener in listeners:
            self.apply(listener)

    def apply(self, listener: UpstreamListener) -> None:
        """Give `listener` its service's splits; watch the targets it did not watch yet."""
        splits = self.by_service.get(listener.upstream.name, ())
        if splits != listener.split:
            shown = ", ".join(f"{s.service} {s.weight / 100:g}%" for s in splits) or "none"
            log.info("proxy: upstream %s split: %s", listener.upstream.name, shown)
        for target in sorted(_targets(listener, splits)):
            if (id(listener), target) not in self._watches:
                self._watch(listener, target)
        self._pending[id(listener)] = splits
        self._settle(listener)

    def _settle(self, listener: UpstreamListener) -> None:
        """Apply the waiting splits once every target they name has been heard of; only then
        are the targets they no longer name let go (the old split needs them until then)."""
        splits = self._pending.get(id(listener))
        wanted = _targets(listener, splits or ())
        if splits is None or not wanted <= listener.targets.keys():
            return
        del self._pending[id(listener)]
        listener.split = splits
        for (lid, target), watch in list(self._watches.items()):
            if lid == id(listener) and target not in wanted:
                watch.stop()
                del self._watches[(lid, target)]
                listener.set_target_instances(target, None)

    def _watch(self, listener: UpstreamListener, target: str) -> None:
        def seen(rows: Any) -> None:
            listener.set_target_instances(target, instances_of(rows))
            self._settle(listener)

        watch = Watch(self._agent, f"/v1/health/connect/{target}?passing", seen)
        watch.start()
        self._watches[(id(listener), target)] = watch

    def forget(self, listener: UpstreamListener) -> None:
        """A listener removed: stop its targets' watches."""
        for key in [k for k in self._watches if k[0] == id(listener)]:
            self._watches.pop(key).stop()
        self._pending.pop(id(listener), None)

    def stop(self) -> None:
        for watch in self._watches.values():
            watch.stop()
        self._watches.clear()
