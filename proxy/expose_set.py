"""A sidecar's exposed paths as a set of listeners, kept in step with its registration. Shell.

Imported by runtime.py only once a registration exposes a path, so a
sidecar without `Expose` neither imports this nor opens anything for it.

A change (`release`, then `change`) closes the listeners of paths that
went or changed (their connections end after the answer under way, and
a drain waits for them and cuts what is left, as for the other listeners)
before it opens those of the new ones, so a port moved from one path to
another is free for it. A port that cannot be had is logged and tried
again every `RETRY_S` until it opens or its path goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gossamer.proxy import tally
from gossamer.proxy.config import ExposePath, ProxyConfig
from gossamer.proxy.expose import ExposeListener
from gossamer.proxy.warm import RETRY_S

log = logging.getLogger("gossamer.proxy")
Key = tuple[ExposePath, str, str, float, int, float, float, float, float]


def key_of(path: ExposePath, config: ProxyConfig) -> Key:
    """What a path's listener is made of: a change to any of it makes a new listener."""
    return (path, config.bind_address, config.local_address, config.headers_timeout_s,
            config.max_header_bytes, config.request_timeout_s, config.request_idle_s,
            config.client_idle_s, config.timeouts.local_connect_s)  # fmt: skip


class ExposeSet:
    """The exposed paths' listeners of one sidecar."""

    def __init__(self, counts: tally.Tally, on_close: Callable[[], None]) -> None:
        self.tally = counts
        self.on_close = on_close
        self.listeners: dict[Key, ExposeListener] = {}
        self.retired: list[ExposeListener] = []  # closed by a change, connections still open
        self.stopped = False
        self._wanted: ProxyConfig | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._task: asyncio.Future[None] | None = None  # the last retry (kept: not collected)

    def release(self, config: ProxyConfig) -> None:
        """Close the listeners `config` no longer has (before anything of it opens)."""
        wanted = {key_of(p, config) for p in config.expose}
        for key in [k for k in self.listeners if k not in wanted]:
            listener = self.listeners.pop(key)
            listener.stop_listening()
            log.info("proxy: no longer exposing %s on %s", listener.path.path, listener.where)
            self.retired.append(listener)

    async def change(self, config: ProxyConfig) -> None:
        """Open a listener for each path of `config` that has none."""
        self.release(config)
        self._wanted = config
        self.retired[:] = [r for r in self.retired if r.open_count()]
        missing = False
        for path in config.expose:
            key = key_of(path, config)
            if key in self.listeners or self.stopped:
                continue
            listener = ExposeListener(path, config.bind_address, config, self.tally, self.on_close)
            try:
                await listener.start()
            except OSError as exc:
                log.error("proxy: cannot expose %s on %s (%s); trying again in %g s",
                          path.path, listener.where, exc, RETRY_S)  # fmt: skip
                missing = True
                continue
            if self._wanted is not config or self.stopped:  # a later change came meanwhile
                listener.stop_listening()
                self.retired.append(listener)
                continue
            self.listeners[key] = listener
        if missing and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(RETRY_S, self._again)

    def _again(self) -> None:
        self._retry = None
        if self._wanted is not None and not self.stopped:
            self._task = asyncio.ensure_future(self.change(self._wanted))

    def all(self) -> list[ExposeListener]:
        return [*self.listeners.values(), *self.retired]

    def open_count(self) -> int:
        return sum(each.open_count() for each in self.all())

    def stop(self) -> None:
        """A drain: nothing opens from now on; the listeners stop listening."""
        self.stopped = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for each in self.listeners.values():
            each.stop_listening()

    def terminate_all(self) -> None:
        for each in self.all():
            each.terminate_all()
        self.retired.clear()
