"""The parts of /v1/agent/self that describe the running agent: `Coord`, `Stats`, `xDS`.

Consul clients read these sections (`consul info` prints `Stats`, Nomad and
consul-template look at `Stats.build` and `Stats.agent`), so the shapes and
key names follow a Consul client agent. As in Consul, every value inside
`Stats` is a string. The figures come from serf's own `stats` (for
`serf_lan`), this agent's registrations and the Python runtime; nothing is
made up. There is no xDS server, so `xDS` says so with no proxies and port -1
(Consul's value for a disabled port).
"""

from __future__ import annotations

import os
import platform
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from gossamer.agent.lifecycle.version import CONSUL_COMPAT_VERSION, VERSION
from gossamer.catalog.model import Check
from gossamer.gossip.rpc_records import Coordinate

SERF_LAN_KEYS = (
    "coordinate_resets", "encrypted", "event_queue", "event_time", "failed", "health_score",
    "intent_queue", "left", "member_time", "members", "query_queue", "query_time",
)  # fmt: skip

XDS_NONE: dict[str, Any] = {
    "SupportedProxies": {},
    "Port": -1,
    "Ports": {"TLS": -1, "Plaintext": -1},
}


def coord_json(coord: Coordinate | None) -> dict[str, Any] | None:
    """Serf's Vivaldi coordinate in Consul's shape; null until serf has one (as Consul)."""
    if coord is None:
        return None
    return {
        "Vec": list(coord.vec),
        "Error": coord.error,
        "Adjustment": coord.adjustment,
        "Height": coord.height,
    }


def agent_stats(services: int, checks: Iterable[Check]) -> dict[str, str]:
    """Consul's `agent` section: registrations on this agent, by kind of check."""
    held = list(checks)
    return {
        "check_monitors": str(sum(c.type == "script" for c in held)),
        "check_ttls": str(sum(c.type == "ttl" for c in held)),
        "checks": str(len(held)),
        "services": str(services),
    }


def runtime_stats() -> dict[str, str]:
    """Consul's `runtime` section, for the Python process (goroutines are threads here)."""
    cpus = str(os.cpu_count() or 1)
    return {
        "arch": platform.machine(),
        "cpu_count": cpus,
        "goroutines": str(threading.active_count()),
        "max_procs": cpus,
        "os": sys.platform,
        "version": f"python{platform.python_version()}",
    }


def build_stats() -> dict[str, str]:
    """Consul's `build` section; `version` is the Consul API level, as `Config.Version`."""
    return {
        "prerelease": "",
        "revision": "gossamer",
        "version": CONSUL_COMPAT_VERSION,
        "version_metadata": f"gossamer{VERSION}",
    }


def stats_json(
    serf: Mapping[str, Mapping[str, str]], services: int, checks: Iterable[Check]
) -> dict[str, dict[str, str]]:
    """`Stats` of a client agent: agent, runtime, serf_lan (from serf's stats), build, consul."""
    serf_lan = {k: serf.get("serf", {}).get(k, "0") for k in SERF_LAN_KEYS}
    return {
        "agent": agent_stats(services, checks),
        "runtime": runtime_stats(),
        "serf_lan": serf_lan,
        "build": build_stats(),
        "consul": {"acl": "disabled", "known_servers": "0", "server": "false"},
    }
