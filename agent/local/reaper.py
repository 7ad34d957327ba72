"""DeregisterCriticalServiceAfter: remove services whose check stayed critical too long.

The rule itself is the pure `services_to_deregister`; this is the loop that
feeds it the runner's views every few seconds and deregisters what it names,
as Consul's agent does (its reaper also runs on a period, not per change).
"""

from __future__ import annotations

import asyncio
import logging

from gossamer.agent.checks.status import CriticalCheck, services_to_deregister
from gossamer.agent.local.node import LocalNode
from gossamer.agent.local.registry import UnknownId

log = logging.getLogger("gossamer.reaper")

REAP_EVERY = 5.0  # seconds; the setting's minimum is a minute, so this is precise enough


def critical_checks(local: LocalNode) -> list[CriticalCheck]:
    views = local.runner.views()
    out = []
    for defn in local.check_definitions():
        view = views.get(defn.check_id)
        if view is None or view.critical_since is None:
            continue
        out.append(
            CriticalCheck(
                check_id=defn.check_id,
                service_id=defn.service_id,
                critical_since=view.critical_since,
                deregister_after_s=defn.deregister_critical_service_after_s,
            )
        )
    return out


def reap_once(local: LocalNode, now: float) -> list[str]:
    reaped = []
    for service_id in services_to_deregister(critical_checks(local), now):
        try:
            local.deregister_service(service_id)
        except UnknownId:
            continue
        log.info("deregistered service %s: critical longer than its DeregisterCriticalServiceAfter",
                 service_id)  # fmt: skip
        reaped.append(service_id)
    return reaped


async def reap_forever(local: LocalNode, interval: float = REAP_EVERY) -> None:
    while True:
        await asyncio.sleep(interval)
        reap_once(local, local.runner.now())
