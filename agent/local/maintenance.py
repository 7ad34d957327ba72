"""Maintenance mode as checks: the critical rows that take a node or a service out of queries.

Consul shows maintenance as a check named "Node Maintenance Mode" (id
`_node_maintenance`) or "Service Maintenance Mode" (id
`_service_maintenance:<service id>`), critical, with the reason as notes or
a default note when none was given. Pure: built from the stored reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from gossamer.catalog.model import Check, Service

if TYPE_CHECKING:
    from gossamer.catalog.store_local import Maintenance

NODE_MAINT_ID = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
NODE_MAINT_NOTE = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)
SERVICE_MAINT_NOTE = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)


def maintenance_checks(maint: Maintenance, services: Mapping[str, Service]) -> list[Check]:
    """One row for the node if it is in maintenance, one per registered service that is."""
    out = []
    if maint.node is not None:
        out.append(Check(check_id=NODE_MAINT_ID, name="Node Maintenance Mode",
                         status="critical", notes=maint.node or NODE_MAINT_NOTE,
                         type="maintenance"))  # fmt: skip
    for service_id, reason in sorted(maint.services.items()):
        service = services.get(service_id)
        if service is None:
            continue
        out.append(Check(check_id=SERVICE_MAINT_PREFIX + service_id,
                         name="Service Maintenance Mode", status="critical",
                         notes=reason or SERVICE_MAINT_NOTE, service_id=service_id,
                         service_name=service.name, service_tags=service.tags,
                         type="maintenance"))  # fmt: skip
    return out
