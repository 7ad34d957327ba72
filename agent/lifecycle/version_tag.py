"""Publishing this node's record version in its serf tags (`cv`), so peers know to pull.

Before serf runs, the latest version is only remembered (`StartupVersion`): it
goes into serf's start-up tags, so peers that see this agent join already
know which record to pull. Once serf runs, every new version is sent with a
tag update (`RecordVersionTag`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from gossamer.gossip.rpc import SerfError, SerfRpcClient
from gossamer.gossip.tags import TAG_RECORD_VERSION

log = logging.getLogger("gossamer.agent")

Spawn = Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]]


class StartupVersion:
    """The record's latest version while serf is not running yet (0 until one is published)."""

    def __init__(self) -> None:
        self.latest = 0

    def remember(self, version: int) -> None:
        self.latest = version


class RecordVersionTag:
    """One tag update in flight at a time, always the latest version.

    Serf takes ~0.6 s per tag update (it waits for the broadcast), so a burst
    of registrations must not queue one update each: the burst would delay
    every later serf call, a graceful leave included.
    """

    def __init__(self, serf: SerfRpcClient, spawn: Spawn, *, latest: int) -> None:
        self._serf = serf
        self._spawn = spawn
        self._latest = latest
        self._published = 0  # serf's start-up tags are not counted: the next change publishes
        self._task: asyncio.Task[Any] | None = None

    def changed(self, version: int) -> None:
        """Our record changed: tell peers through the `cv` serf tag."""
        self._latest = version
        if self._task is None or self._task.done():
            self._task = self._spawn(self._publish(), "cv-tag")

    async def _publish(self) -> None:
        while self._published != self._latest:
            version = self._latest
            try:
                await self._serf.tags(set_tags={TAG_RECORD_VERSION: str(version)})
            except SerfError as exc:
                log.warning("could not publish record version %d in serf tags: %s", version, exc)
                return
            self._published = version
