"""What changes while the agent runs: the config in force and whether it is ready.

One mutable object shared by the parts that read either at call time (the
HTTP facade, joins, reload, the intentions default policy, the signal
handlers). Reload swaps `config` as a whole, so a reader never sees half of
an old config and half of a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from gossamer.agent.config import AgentConfig


@dataclass
class AgentStatus:
    config: AgentConfig
    ready: bool = False  # set once joined and announced to systemd
