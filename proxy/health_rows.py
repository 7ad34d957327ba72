"""The instances of a service in a `/v1/health/connect/<name>` answer. Pure."""

from __future__ import annotations

Instance = tuple[str, int]


def instances_of(health_rows: object) -> list[Instance]:
    """(address, port) of each sidecar in a `/v1/health/connect/<name>` answer."""
    found: list[Instance] = []
    if not isinstance(health_rows, list):
        raise ValueError("a health answer is a list")
    for row in health_rows:
        service, node = row.get("Service") or {}, row.get("Node") or {}
        address = service.get("Address") or node.get("Address")
        port = service.get("Port")
        if isinstance(address, str) and address and isinstance(port, int) and port > 0:
            found.append((address, port))
    return found
