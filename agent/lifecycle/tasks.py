"""The agent's background tasks: spawned under a name, all cancelled when it stops.

Parts that start work later (a tag update, a join asked for by a reload, a
rejoin after serf restarted) spawn it here rather than on the bare loop, so
stopping the agent never leaves one of them running into a closed part.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class TaskSet:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` in the background; finished tasks are forgotten as new ones come."""
        task = asyncio.create_task(coro, name=name)
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(task)
        return task

    def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
