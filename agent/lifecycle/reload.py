"""Which parts of a reloaded config take effect in a running agent.

The running config object is swapped as a whole; keys outside
RELOADABLE_KEYS keep their running values (they were logged as "needs
restart"), so what /v1/agent/self reports is what is in force.
"""

from __future__ import annotations

from gossamer.agent.config import RELOADABLE_KEYS, AgentConfig


def apply_reloadable(running: AgentConfig, new: AgentConfig) -> AgentConfig:
    return running.model_copy(update={key: getattr(new, key) for key in RELOADABLE_KEYS})


def added_joins(running: AgentConfig, new: AgentConfig) -> list[str]:
    """Addresses newly listed under `join`: tried once on reload."""
    return [a for a in new.join if a not in running.join]
