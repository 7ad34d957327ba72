"""The registration a meshed pod makes with its node's agent. Pure.

One definition per pod: the pod's service (pod IP and port) with a
`Connect.SidecarService` on the pod IP at SIDECAR_PORT, so the agent makes
the sidecar registration that `gossamer connect proxy --sidecar-for`
serves, and deregistering the service removes both. IDs carry pod and
namespace: pods of the same name in two namespaces may share a node.
The TCP check with DeregisterCriticalServiceAfter is the backstop for a pod
that went without running its preStop hook (force-deleted): the agent
reaps the registration once the port stayed closed that long. It probes the
sidecar's inbound port on the pod IP, not the app's port: a meshed app
listens on the pod's loopback only (its sidecar reaches it there), so its
own port is closed to the agent even while it is healthy.
"""

from __future__ import annotations

from typing import Any

from gossamer.agent.k8s.annotations import Plan
from gossamer.gossip.addresses import format_host_port

# Every pod has its own network namespace, so one fixed inbound port serves
# all of them (Consul's injector uses 20000 the same way).
SIDECAR_PORT = 21000
REAP_AFTER = "5m"
CHECK_INTERVAL = "10s"


def service_id(pod: str, namespace: str, service: str) -> str:
    return f"{pod}-{namespace}-{service}"


def definition(
    plan: Plan, *, pod: str, namespace: str, address: str, sidecar_port: int = SIDECAR_PORT
) -> dict[str, Any]:
    """The body of `PUT /v1/agent/service/register` for this pod."""
    return {
        "ID": service_id(pod, namespace, plan.service),
        "Name": plan.service,
        "Address": address,
        "Port": plan.port,
        "Meta": {"k8s-pod": pod, "k8s-namespace": namespace},
        "Check": {
            "Name": "Kubernetes pod sidecar",
            "TCP": format_host_port(address, sidecar_port),
            "Interval": CHECK_INTERVAL,
            "DeregisterCriticalServiceAfter": REAP_AFTER,
        },
        "Connect": {
            "SidecarService": {
                "Port": sidecar_port,
                "Proxy": {
                    "Upstreams": [
                        {"DestinationName": u.name, "LocalBindPort": u.port} for u in plan.upstreams
                    ]
                },
            }
        },
    }
