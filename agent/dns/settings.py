"""What the DNS answers need from the agent config, as one plain value.

The answer code stays free of the config schema: the agent builds this
once at start from `config.dns` and the datacenter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DnsSettings:
    datacenter: str = "dc1"
    domain: str = "consul."  # lower-case, one trailing dot
    alt_domain: str | None = None
    node_ttl: int = 0
    service_ttl: Mapping[str, int] = field(default_factory=dict)  # name, "prefix*" or "*"
    negative_ttl: int = 0
    only_passing: bool = False
    udp_answer_limit: int = 0  # 0: as many as fit
    enable_truncate: bool = True
    recursion: bool = False  # recursors are configured: RA set, outside names forwarded
    nearest_first: bool = False

    @property
    def domains(self) -> tuple[str, ...]:
        return (self.domain,) if self.alt_domain is None else (self.domain, self.alt_domain)

    def service_ttl_for(self, name: str) -> int:
        """Exact name first, then the longest matching `prefix*`, then `*`."""
        ttls = self.service_ttl
        if name in ttls:
            return ttls[name]
        best, best_len = None, -1
        for pattern, ttl in ttls.items():
            if pattern.endswith("*"):
                prefix = pattern[:-1]
                if name.startswith(prefix) and len(prefix) > best_len:
                    best, best_len = ttl, len(prefix)
        return best if best is not None else 0


def settings_from_config(config: Any) -> DnsSettings:
    """From an AgentConfig (typed loosely: the dns section is optional in old configs)."""
    dns = getattr(config, "dns", None)
    if dns is None:
        return DnsSettings(datacenter=config.datacenter)

    def seconds(value: Any) -> int:
        return int(value.total_seconds())

    return DnsSettings(
        datacenter=config.datacenter,
        domain=dns.domain,
        alt_domain=dns.alt_domain,
        node_ttl=seconds(dns.node_ttl),
        service_ttl={k.lower(): seconds(v) for k, v in dns.service_ttl.items()},
        negative_ttl=seconds(dns.negative_ttl),
        only_passing=dns.only_passing,
        udp_answer_limit=dns.udp_answer_limit,
        enable_truncate=dns.enable_truncate,
        recursion=bool(dns.recursors),
        nearest_first=dns.nearest_first,
    )
