"""What the parts of a running agent may ask of its root, and the clock they share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gossamer.agent.config import AgentConfig
from gossamer.agent.lifecycle.tasks import TaskSet


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class RootHooks:
    """What the parts may ask of the root, which exists before any of them."""

    tasks: TaskSet
    load_config: Callable[[], AgentConfig]  # for reload
    fail: Callable[[str], None]  # a fault after start-up that ends the agent
    request_shutdown: Callable[[bool], None]  # leave?
    leave_on_stop: Callable[[], bool]  # serf leaves if the opening is cancelled by a signal
