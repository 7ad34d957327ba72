"""The exact JSON shapes a Consul agent answers with, rendered from catalog values.

The renderers follow what a real Consul agent sends, which differs from its
docs in places (noted where it does): clients such as py-consul and
consul-template decode these shapes, so field names are exact and lists are
`[]`, never `null`. Pure: indexes are passed in.
"""

from __future__ import annotations

from gossamer.catalog.model import Check, JsonObject, NodeRecord, Service
from gossamer.catalog.tagged import node_tagged, service_tagged


def _service_tagged(service: Service, *, external: bool = False) -> JsonObject:
    # Consul's docs show lowercase "address"/"port"; real agents send the Go
    # field names (Address, Port), and that is what clients have seen.
    stored = service.tagged_addresses
    tagged = dict(sorted(stored.items())) if external else service_tagged(service, stored)
    return {k: {"Address": a, "Port": p} for k, (a, p) in tagged.items()}


def _node_tagged(record: NodeRecord) -> dict[str, str]:
    return node_tagged(record.address, record.tagged_addresses, external=record.is_external)


def _weights(service: Service) -> JsonObject:
    return {"Passing": service.weights[0], "Warning": service.weights[1]}


def _proxy(service: Service) -> JsonObject:
    # A real agent renders the zero Go struct for services without a proxy.
    return dict(service.proxy) if service.proxy else {"Mode": "", "MeshGateway": {}, "Expose": {}}


def service_to_agent_json(service: Service, datacenter: str) -> JsonObject:
    """A value of GET /v1/agent/services (and the body of /v1/agent/service/<id>).

    Like Consul, `Kind`, `Proxy` and `Connect` appear only when set.
    """
    body: JsonObject = {}
    if service.kind:
        body["Kind"] = service.kind
    body |= {
        "ID": service.id,
        "Service": service.name,
        "Tags": list(service.tags),
        "Meta": dict(service.meta),
        "Port": service.port,
        "Address": service.address,
        "TaggedAddresses": _service_tagged(service),
        "Weights": _weights(service),
        "EnableTagOverride": service.enable_tag_override,
        "Datacenter": datacenter,
    }
    if service.proxy:
        body["Proxy"] = dict(service.proxy)
    if service.connect:
        body["Connect"] = dict(service.connect)
    if service.locality:
        body["Locality"] = dict(service.locality)
    return body


def node_json(record: NodeRecord, *, create_index: int = 0, modify_index: int = 0) -> JsonObject:
    """A row of GET /v1/catalog/nodes, and the `Node` object of health rows."""
    return {
        "ID": record.node_id,
        "Node": record.node,
        "Address": record.address,
        "Datacenter": record.datacenter,
        "TaggedAddresses": _node_tagged(record),
        "Meta": dict(record.meta),
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }


def service_json(
    service: Service, *, create_index: int = 0, modify_index: int = 0, external: bool = False
) -> JsonObject:
    """The `Service` object of /v1/health/service rows and /v1/catalog/node services."""
    body: JsonObject = {
        "ID": service.id,
        "Service": service.name,
        "Tags": list(service.tags),
        "Address": service.address,
        "TaggedAddresses": _service_tagged(service, external=external),
        "Meta": dict(service.meta),
        "Port": service.port,
        "Weights": _weights(service),
        "EnableTagOverride": service.enable_tag_override,
        "Proxy": _proxy(service),
        "Connect": dict(service.connect),
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }
    if service.locality:
        body["Locality"] = dict(service.locality)
    if service.kind:
        body = {"Kind": service.kind} | body
    return body


def catalog_service_row(
    record: NodeRecord, service: Service, *, create_index: int = 0, modify_index: int = 0
) -> JsonObject:
    """A row of GET /v1/catalog/service/<name>: node fields flattened next to Service* fields."""
    row = {
        "ID": record.node_id,
        "Node": record.node,
        "Address": record.address,
        "Datacenter": record.datacenter,
        "TaggedAddresses": _node_tagged(record),
        "NodeMeta": dict(record.meta),
        "ServiceKind": service.kind,
        "ServiceID": service.id,
        "ServiceName": service.name,
        "ServiceTags": list(service.tags),
        "ServiceAddress": service.address,
        "ServiceTaggedAddresses": _service_tagged(service, external=record.is_external),
        "ServiceWeights": _weights(service),
        "ServiceMeta": dict(service.meta),
        "ServicePort": service.port,
        "ServiceEnableTagOverride": service.enable_tag_override,
        "ServiceProxy": _proxy(service),
        "ServiceConnect": dict(service.connect),
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }
    return row | ({"ServiceLocality": dict(service.locality)} if service.locality else {})


def check_json(
    node: str, check: Check, *, create_index: int = 0, modify_index: int = 0
) -> JsonObject:
    """A HealthCheck object (/v1/health/*, /v1/agent/checks values), as a real agent sends it."""
    return {
        "Node": node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": check.status,
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": check.service_name,
        "ServiceTags": list(check.service_tags),
        "Type": check.type,
        "Interval": check.interval,
        "Timeout": check.timeout,
        "ExposedPort": check.exposed_port,
        "Definition": dict(check.definition),
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }


def health_service_row(
    record: NodeRecord, service: Service, checks: tuple[Check, ...], *, index: int = 0
) -> JsonObject:
    """A row of GET /v1/health/service/<name>: Node, Service and the checks that decide it.

    `checks` is passed in (node checks, the gossip `serfHealth` overlay and the
    service's own) because the overlay is not part of the record.
    """
    return {
        "Node": node_json(record, create_index=index, modify_index=index),
        "Service": service_json(
            service, create_index=index, modify_index=index, external=record.is_external
        ),
        "Checks": [
            check_json(record.node, c, create_index=index, modify_index=index) for c in checks
        ],
    }
