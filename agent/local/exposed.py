"""The agent's registry kept in step with `Expose.Checks` (catalog/expose_checks.py). No I/O.

Which checks go through a sidecar depends on more than one registration: a
service's own checks, the checks registered on their own for it
(`/v1/agent/check/register` with its `ServiceID`), and whether its sidecar
is there and asks for it. `reexpose` works the result out again for one
service after any of these changed and writes it into the registry: the
service's registration (its checks, its sidecar's `Expose.Paths`) and its
checks registered on their own. It computes everything before it changes
anything, so a RegistrationConflict (no port left) leaves the registry as
it was. It returns the checks whose probe target changed, for the caller
to run again.
"""

from __future__ import annotations

from gossamer.agent.local.registry import Registry
from gossamer.catalog.check_definition import CheckDefinition
from gossamer.catalog.expose_checks import expose_all


def reexpose(registry: Registry, service_id: str) -> list[CheckDefinition]:
    """Expose service `service_id`'s checks through its sidecar, or put them back on their
    own targets; the checks that changed."""
    reg = registry.registrations.get(service_id)
    if reg is None:
        return []
    bound = [d for d in registry.standalone.values() if d.service_id == service_id]
    before = (*reg.checks, *bound)
    had = {c.check_id: c.exposed_port for c in before if c.exposed_port}
    made, made_bound = expose_all(reg, bound, registry.exposed_ports(service_id), had)
    if made != reg:
        registry.put(made)
    for d in made_bound:
        registry.standalone[d.check_id] = d
    return [d for d in (*made.checks, *made_bound) if d not in before]
