"""Reloading the config of a running agent (SIGHUP, `gossamer reload`, PUT /v1/agent/reload).

The running config object is swapped as a whole; keys outside
RELOADABLE_KEYS keep their running values (they were logged as "needs
restart"), so what /v1/agent/self reports is what is in force. systemd is
told RELOADING first and READY after, also when the new files are rejected
(the old config stays in force).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gossamer.agent.config import RELOADABLE_KEYS, AgentConfig, ConfigError, diff_configs
from gossamer.agent.config.registrations import decoded
from gossamer.agent.lifecycle import systemd
from gossamer.agent.lifecycle.describe import status_line
from gossamer.agent.lifecycle.joins import Joins
from gossamer.agent.lifecycle.logs import setup_logging
from gossamer.agent.lifecycle.status import AgentStatus
from gossamer.agent.local.config_registrations import ConfigRegistrations

log = logging.getLogger("gossamer.agent")


def apply_reloadable(running: AgentConfig, new: AgentConfig) -> AgentConfig:
    return running.model_copy(update={key: getattr(new, key) for key in RELOADABLE_KEYS})


def apply_config_registrations(registrations: ConfigRegistrations, config: AgentConfig) -> None:
    """Register the services and checks the config files define (at start and on reload)."""
    for problem in registrations.apply(decoded(config.services), decoded(config.checks)):
        log.error("config registration not applied: %s", problem)


class Reloader:
    def __init__(
        self,
        status: AgentStatus,
        load_config: Callable[[], AgentConfig],
        registrations: ConfigRegistrations,
        joins: Joins,
        on_reload: Callable[[AgentConfig, AgentConfig], None] = lambda old, new: None,
    ) -> None:
        """`on_reload(old, new)` runs after a reload is applied (what else reacts to it)."""
        self._status = status
        self._on_reload = on_reload
        self._load_config = load_config
        self._registrations = registrations
        self._joins = joins

    async def reload(self) -> list[str]:
        """Load the files again and apply what may change live; ConfigError keeps the old."""
        systemd.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = self._load_config()
        except ConfigError:
            systemd.notify("READY=1", "STATUS=reload rejected: invalid configuration")
            raise
        old = self._status.config
        changes = diff_configs(old, new)
        self._status.config = config = apply_reloadable(old, new)
        setup_logging(config.log_level, config.log_json)
        for line in changes or ["no changes"]:
            log.info("reload: %s", line)
        self._joins.after_reload(old)
        if (old.services, old.checks) != (config.services, config.checks):
            apply_config_registrations(self._registrations, config)
        self._on_reload(old, config)
        systemd.notify("READY=1", f"STATUS={status_line(config)}")
        return changes

    async def reload_logged(self) -> None:
        """For SIGHUP: a rejected config is logged, not raised."""
        try:
            await self.reload()
        except ConfigError as exc:
            log.error("reload rejected; keeping the running configuration:\n%s", exc)
