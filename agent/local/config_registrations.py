"""Services and checks that config files define: registered at start and on every reload.

What a config file registered is marked in the store and is not restored on
its own after a restart: the files register it again. One that the files no
longer define is removed, whether it is registered now or only left in the
store. A definition that cannot be applied (say a script check while
`enable_local_script_checks` is off) is reported, and the others still
apply; the record is published once, however many there are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gossamer.agent.local.node import LocalNode
from gossamer.agent.local.stored import FromConfig
from gossamer.catalog.registration import RegistrationError


class ConfigRegistrations:
    def __init__(self, local: LocalNode, before: FromConfig) -> None:
        """`before`: what the config registered before a restart (LocalNode.restore)."""
        self._local = local
        self._applied = before

    def apply(self, services: list[dict[str, Any]], checks: list[dict[str, Any]]) -> list[str]:
        """Register what the files define, drop what they no longer do; one message per failure."""
        local = self._local
        problems: list[str] = []
        now = FromConfig(
            services=_register_each(services, "services", problems, self._register_service),
            checks=_register_each(checks, "checks", problems, self._register_check),
        )
        for service_id in self._applied.services - now.services:
            local.forget_service(service_id)
        for check_id in self._applied.checks - now.checks:
            local.forget_check(check_id)
        self._applied = now
        local.publish()
        return problems

    def _register_service(self, body: dict[str, Any]) -> str:
        return self._local.register_service(body, from_config=True, publish=False).id

    def _register_check(self, body: dict[str, Any]) -> str:
        return self._local.register_check(body, from_config=True, publish=False).check_id


def _register_each(
    bodies: list[dict[str, Any]],
    key: str,
    problems: list[str],
    register: Callable[[dict[str, Any]], str],
) -> set[str]:
    """The ids registered; a problem named `key[i]` for each body that was not."""
    ids: set[str] = set()
    for i, body in enumerate(bodies):
        try:
            ids.add(register(body))
        except RegistrationError as exc:
            problems.append(f"{key}[{i}]: {exc}")
    return ids
