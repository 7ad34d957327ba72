"""The DNS view of the catalog, rebuilt whenever the catalog changes. No I/O.

Queries never scan the catalog: everything a name form needs is indexed
here once per change: healthy endpoints by service name (the health filter
already applied), proxies by the service they front, nodes by name, names
by address for PTR. Lookups are dictionary reads.

Health follows Consul: an instance is left out when any of its checks or
its node's checks (serfHealth included, so a failed node's services go) is
critical; with `only_passing`, warning too. The SRV weight is the service's
`Weights.Passing`, or `Weights.Warning` while a check warns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from gossamer.agent.dns.names import ip_version
from gossamer.catalog import merge
from gossamer.catalog.model import NodeRecord, Service
from gossamer.catalog.severity import SEVERITY

CONNECT_PROXY = "connect-proxy"


@dataclass(frozen=True)
class Endpoint:
    """One healthy service instance as DNS shows it."""

    node: str
    node_address: str
    address: str  # the service's own address, else the node's
    port: int
    weight: int
    tags: frozenset[str]  # lower-case: DNS labels match without case


@dataclass(frozen=True)
class NodeEntry:
    name: str
    address: str
    meta: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Zone:
    datacenter: str
    services: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    connect: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    nodes: Mapping[str, NodeEntry] = field(default_factory=dict)
    ptr: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # ^ address -> (kind, name) pairs, kind "node" or "service", sorted
    agents: tuple[NodeEntry, ...] = ()  # nodes running a healthy agent, for NS
    distance: Mapping[str, float] = field(default_factory=dict)  # node -> RTT estimate (s)


def build_zone(
    state: merge.CatalogState,
    datacenter: str,
    *,
    only_passing: bool = False,
    distance: Mapping[str, float] | None = None,
    may_read: Callable[[str, str], bool] | None = None,
) -> Zone:
    """The zone of `state`; with `may_read` (ACLs: the agent's default token), only the
    nodes (`node:read`) and services (`service:read`) it may read, as Consul's DNS."""
    services: dict[str, list[Endpoint]] = {}
    connect: dict[str, list[Endpoint]] = {}
    nodes: dict[str, NodeEntry] = {}
    ptr: dict[str, set[tuple[str, str]]] = {}
    agents: list[NodeEntry] = []
    for record in merge.nodes(state, datacenter):
        if may_read is not None and not may_read("node", record.node):
            continue
        entry = NodeEntry(record.node, record.address, tuple(sorted(record.meta.items())))
        nodes[record.node.lower()] = entry
        ptr.setdefault(record.address, set()).add(("node", record.node))
        statuses = _statuses(state, record)
        for service in record.services:
            if may_read is not None and not may_read("service", service.name):
                continue
            status = _worst(statuses.get(""), statuses.get(service.id))
            if status == "critical" or (only_passing and status == "warning"):
                continue
            endpoint = _endpoint(record, service, warning=status == "warning")
            services.setdefault(service.name.lower(), []).append(endpoint)
            for target in _connect_targets(service):
                connect.setdefault(target.lower(), []).append(endpoint)
            if service.address and service.address != record.address:
                ptr.setdefault(service.address, set()).add(("service", service.name))
            if service.id == "consul" and not record.is_external:
                agents.append(entry)
    return Zone(
        datacenter=datacenter,
        services={k: tuple(v) for k, v in services.items()},
        connect={k: tuple(v) for k, v in connect.items()},
        nodes=nodes,
        ptr={_canonical_ip(k): tuple(sorted(v)) for k, v in ptr.items() if ip_version(k)},
        agents=tuple(sorted(agents, key=lambda n: n.name)),
        distance=dict(distance or {}),
    )


def _statuses(state: merge.CatalogState, record: NodeRecord) -> dict[str, str]:
    """Worst status per service id ("" for node-level checks)."""
    worst: dict[str, str] = {}
    for check in merge.node_checks(state, record):
        worst[check.service_id] = _worst(worst.get(check.service_id), check.status)
    return worst


_RANK = {None: -1} | SEVERITY  # an unknown status ranks 3: above critical


def _worst(a: str | None, b: str | None) -> str:
    worst = a if _RANK.get(a, 3) >= _RANK.get(b, 3) else b
    if worst is not None and worst not in _RANK:
        return "critical"  # "maintenance" (or unknown) ranks as critical: it must not mask one
    return worst or "passing"


def _endpoint(record: NodeRecord, service: Service, *, warning: bool) -> Endpoint:
    passing, warn = service.weights
    return Endpoint(
        node=record.node,
        node_address=record.address,
        address=service.address or record.address,
        port=service.port,
        weight=warn if warning else passing,
        tags=frozenset(t.lower() for t in service.tags),
    )


def _connect_targets(service: Service) -> Iterable[str]:
    if service.kind == CONNECT_PROXY:
        dest = service.proxy.get("DestinationServiceName")
        if isinstance(dest, str) and dest:
            yield dest
    if service.connect.get("Native") is True:
        yield service.name


def _canonical_ip(text: str) -> str:
    return str(ipaddress.ip_address(text))
