"""What is registered on this node, in memory: the parsed registrations and check states.

Plain data and the queries over it, no I/O: LocalNode keeps it in step with
the store (it writes the store first) and builds the node record from it.
A service registration carries its checks and its generated sidecar (with
the sidecar's checks); standalone checks are registered on their own;
`status` holds each check's last (status, output), also for checks whose
runner has not reported yet (their initial status). `generation` moves on
every change of the registrations (config-file ones too, which may not
publish a record), so a prepared `/v1/agent/services` answer knows it is
stale.
"""

from __future__ import annotations

from dataclasses import replace

from gossamer.catalog.expose_checks import exposed_ports
from gossamer.catalog.model import Check, Service
from gossamer.catalog.registration import CheckDefinition, ServiceRegistration


class UnknownId(KeyError):
    """A service or check id that is not registered on this agent (HTTP 404)."""

    what = "ID"

    def __str__(self) -> str:  # KeyError's own str is only the quoted key
        return f"Unknown {self.what} {self.args[0]!r}"


class UnknownServiceId(UnknownId):
    what = "service ID"


class UnknownCheckId(UnknownId):
    what = "check ID"


def checks_of(reg: ServiceRegistration) -> tuple[CheckDefinition, ...]:
    """A registration's checks, its sidecar's included."""
    return reg.checks + reg.sidecar_checks


class Registry:
    def __init__(self) -> None:
        self.registrations: dict[str, ServiceRegistration] = {}  # by service id
        self.standalone: dict[str, CheckDefinition] = {}  # by check id
        self.status: dict[str, tuple[str, str]] = {}  # check id -> (status, output)
        self.generation = 0

    def put(self, reg: ServiceRegistration) -> None:
        """Add or replace a service registration (every change goes through here or `pop`)."""
        self.registrations[reg.service.id] = reg
        self.generation += 1

    def pop(self, service_id: str) -> ServiceRegistration | None:
        reg = self.registrations.pop(service_id, None)
        if reg is not None:
            self.generation += 1
        return reg

    def service_map(self) -> dict[str, Service]:
        """Every service registered here by id, generated sidecars included."""
        return {s.id: s for reg in self.registrations.values() for s in reg.services()}

    def parent_of_sidecar(self, sidecar_id: str) -> ServiceRegistration | None:
        """The registration whose generated sidecar has this id, if any."""
        return next(
            (r for r in self.registrations.values() if r.sidecar and r.sidecar.id == sidecar_id),
            None,
        )

    def all_checks(self) -> list[CheckDefinition]:
        """Every check registered here (service, sidecar and standalone)."""
        regs = [c for reg in self.registrations.values() for c in checks_of(reg)]
        return regs + list(self.standalone.values())

    def used_sidecar_ports(self) -> set[int]:
        """Ports taken by generated sidecars, so a new one gets a free port."""
        return {
            s.port
            for reg in self.registrations.values()
            for s in reg.services()
            if s.kind == "connect-proxy"
        }

    def exposed_ports(self, but: str) -> set[int]:
        """The listener ports of exposed paths of every registration but service `but`'s."""
        return {p for sid, reg in self.registrations.items() if sid != but
                for p in exposed_ports(reg)}  # fmt: skip

    def check_rows(self, services: dict[str, Service]) -> list[Check]:
        """The registered checks as they stand now (status and output applied)."""
        out = []
        for defn in self.all_checks():
            status, output = self.status.get(defn.check_id, (defn.status, ""))
            check = defn.to_check(services.get(defn.service_id) if defn.service_id else None)
            out.append(replace(check, status=status, output=output))
        return out
