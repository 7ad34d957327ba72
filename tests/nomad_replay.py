"""What Nomad's Consul service client would send for a job: a replay, not Nomad. Pure.

Nomad cannot be installed here, so the Nomad tests read the job files with
an HCL parser (python-hcl2) and build, from each group's `service` blocks,
the bodies Nomad's client sends to the node's agent, in the shape of
hashicorp/nomad command/agent/consul/service_client.go and connect.go, as
encoded by the Consul API client (hashicorp/consul api/agent.go):
- the service ID is `_nomad-task-<alloc id>-group-<group>-<service>-<port label>`
  (client/serviceregistration/id.go) and its meta carries
  `external-source: nomad`;
- check IDs are `_nomad-check-<sha256 hex>`, and the checks ride in the
  service body (`Checks`) as well as in `PUT /v1/agent/check/register`
  when the agent does not list them afterwards;
- `Check` is always sent (null) and `Checks` always a list: the Go struct
  has no `omitempty` on them; `MeshGateway` and `Expose` are structs, so
  they are sent as `{}` even when empty;
- `connect { sidecar_service }` becomes `Connect.SidecarService` with the
  sidecar's host port, the two checks Nomad adds (an alias of the parent and
  "Connect Sidecar Listening" on TCP) and `Proxy.Config` holding
  `bind_address`, `bind_port` and `envoy_stats_tags`;
- `connect { native = true }` becomes `Connect: {Native: true}`.
What Nomad would decide on its next sync (re-register or not) is
`needs_update`, a subset of service_client.go's `different()`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

SIDECAR_SUFFIX = "-sidecar-proxy"
_OPTIONS = SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True, preserve_heredocs=False
)


def load_job(path: Path) -> dict[str, Any]:
    """The one job of a job file, as a dict with its name under `name`."""
    with path.open() as f:
        doc = hcl2.load(f, serialization_options=_OPTIONS)
    [job] = doc["job"]
    [(name, body)] = job.items()
    return {"name": name, **body}


def blocks(parent: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """The blocks of one kind (labelled ones flattened, their label under `name`)."""
    out = []
    for raw in parent.get(kind, []):
        if len(raw) == 1 and isinstance(next(iter(raw.values())), dict):
            [(label, body)] = raw.items()
            out.append({"name": label, **body})
        else:
            out.append(dict(raw))
    return out


def one(parent: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    found = blocks(parent, kind)
    return found[0] if found else None


@dataclass(frozen=True)
class Alloc:
    """Where Nomad placed one allocation: its id, the host's address, its ports."""

    alloc_id: str
    host_ip: str
    ports: Mapping[str, int]  # port label -> host port
    group: str = "web"


@dataclass
class Registration:
    """One service's calls: the service body and the checks Nomad tracks for it."""

    service: dict[str, Any]
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def service_id(self) -> str:
        return str(self.service["ID"])


def service_id(alloc: Alloc, service: Mapping[str, Any]) -> str:
    return f"_nomad-task-{alloc.alloc_id}-group-{alloc.group}-{service['name']}-{service['port']}"


def check_id(sid: str, check: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    for part in (sid, check.get("name", ""), check["type"], check.get("path", "")):
        digest.update(str(part).encode())
    return "_nomad-check-" + digest.hexdigest()


def _port(alloc: Alloc, label: str) -> int:
    """A port label's host port; a literal number is itself (Nomad's GetAddress)."""
    return int(label) if label.isdigit() else alloc.ports[label]


def _check(
    alloc: Alloc, sid: str, service: Mapping[str, Any], check: Mapping[str, Any]
) -> dict[str, Any]:
    """An AgentCheckRegistration as createCheckReg builds it (omitempty applied)."""
    port = _port(alloc, str(check.get("port", service["port"])))
    address = f"{alloc.host_ip}:{port}"
    body: dict[str, Any] = {"ID": check_id(sid, check), "Name": check.get("name", ""),
                            "ServiceID": sid, "Interval": check["interval"],
                            "Timeout": check["timeout"]}  # fmt: skip
    if check["type"] == "tcp":
        body["TCP"] = address
    elif check["type"] == "http":
        body["HTTP"] = f"{check.get('protocol', 'http')}://{address}{check.get('path', '/')}"
        if "method" in check:
            body["Method"] = check["method"]
    else:
        raise ValueError(f"check type {check['type']!r} is not replayed")
    return body


def _as_service_check(reg: Mapping[str, Any]) -> dict[str, Any]:
    """apiCheckRegistrationToCheck: the same check as it rides in the service body."""
    out = {k: v for k, v in reg.items() if k not in ("ID", "ServiceID")}
    return {"CheckID": reg["ID"], **out}


def _upstreams(proxy: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"DestinationName": u["destination_name"], "LocalBindPort": u["local_bind_port"],
             "MeshGateway": {}} for u in blocks(proxy, "upstreams")]  # fmt: skip


def _sidecar(
    alloc: Alloc, sid: str, service: Mapping[str, Any], sidecar: Mapping[str, Any]
) -> dict[str, Any]:
    """connectSidecarRegistration: the sidecar body inside the parent's Connect."""
    port = alloc.ports[str(sidecar.get("port", f"connect-proxy-{service['name']}"))]
    proxy = one(sidecar, "proxy") or {}
    tags = [f"nomad.{k}={v}" for k, v in (("alloc_id", alloc.alloc_id), ("group", alloc.group),
                                           ("job", "web"), ("namespace", "default"))]  # fmt: skip
    body_proxy: dict[str, Any] = {
        "Config": {"bind_address": "0.0.0.0", "bind_port": port, "envoy_stats_tags": sorted(tags)},
        "MeshGateway": {},
        "Expose": {},
    }
    if ups := _upstreams(proxy):
        body_proxy["Upstreams"] = ups
    return {
        "Port": port,
        "Address": alloc.host_ip,
        "Check": None,
        "Checks": [
            {"Name": f"Connect Sidecar Aliasing {sid}", "AliasService": sid},
            {
                "Name": "Connect Sidecar Listening",
                "TCP": f"{alloc.host_ip}:{port}",
                "Interval": "10s",
            },
        ],
        "Proxy": body_proxy,
    }


def registrations(job: Mapping[str, Any], alloc: Alloc) -> list[Registration]:
    """Every service registration Nomad's client sends for one alloc of `alloc.group`."""
    group = next(g for g in blocks(job, "group") if g["name"] == alloc.group)
    out = []
    for service in blocks(group, "service"):
        sid = service_id(alloc, service)
        checks = [_check(alloc, sid, service, c) for c in blocks(service, "check")]
        body: dict[str, Any] = {
            "ID": sid,
            "Name": service["name"],
            "Tags": list(service.get("tags", [])),
            "Port": _port(alloc, str(service["port"])),
            "Address": alloc.host_ip,
            "Meta": {**(one(service, "meta") or {}), "external-source": "nomad"},
            "Check": None,
            "Checks": [_as_service_check(c) for c in checks],
        }
        connect = one(service, "connect")
        if connect and connect.get("native"):
            body["Connect"] = {"Native": True}
        elif connect and (sidecar := one(connect, "sidecar_service")) is not None:
            body["Connect"] = {"SidecarService": _sidecar(alloc, sid, service, sidecar)}
        out.append(Registration(body, checks))
    return out


def needs_update(wanted: Mapping[str, Any], existing: Mapping[str, Any],
                 sidecar: Mapping[str, Any] | None) -> list[str]:  # fmt: skip
    """What Nomad's `different()` would find changed (empty: no re-registration)."""
    found = []
    for key in ("ID", "Port", "Address"):
        if wanted.get(key) != existing.get(key):
            found.append(key)
    if wanted["Name"] != existing.get("Service"):
        found.append("Name")
    if existing.get("Kind", "") != wanted.get("Kind", ""):
        found.append("Kind")
    if set(wanted.get("Tags") or []) != set(existing.get("Tags") or []):
        found.append("Tags")
    if dict(wanted.get("Meta") or {}) != dict(existing.get("Meta") or {}):
        found.append("Meta")
    if existing.get("Weights") != {"Passing": 1, "Warning": 1}:  # wanted nil: Consul's default
        found.append("Weights")
    wanted_sidecar = (wanted.get("Connect") or {}).get("SidecarService")
    if wanted_sidecar is not None:
        if sidecar is None:
            found.append("sidecar missing")
        else:
            ups = [(u["DestinationName"], u["LocalBindPort"])
                   for u in (wanted_sidecar["Proxy"].get("Upstreams") or [])]  # fmt: skip
            have = [(u["DestinationName"], u["LocalBindPort"])
                    for u in (sidecar.get("Proxy", {}).get("Upstreams") or [])]  # fmt: skip
            if sorted(ups) != sorted(have):
                found.append("sidecar upstreams")
            if set(sidecar.get("Tags") or []) != set(wanted.get("Tags") or []):
                found.append("sidecar tags")  # unset sidecar tags inherit the parent's
    return found
