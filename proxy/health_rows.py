"""The instances of a service in a `/v1/health/connect/<name>` answer. Pure."""

from __future__ import annotations

Instance = tuple[str, int]


def instance_of(row: object) -> Instance | None:
    """(address, port) of the sidecar in one row of a `/v1/health/connect/<name>` answer;
    None when the row names none (no address, no port). A watch keeps only this of each row
    as it reads the answer (watch.py `item`): the rows of thousands of instances never all
    live at once."""
    if not isinstance(row, dict):
        raise ValueError("a health answer's row is an object")
    service, node = row.get("Service") or {}, row.get("Node") or {}
    address = service.get("Address") or node.get("Address")
    port = service.get("Port")
    if isinstance(address, str) and address and isinstance(port, int) and port > 0:
        return (address, port)
    return None
