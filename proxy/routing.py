"""What the service-resolvers tell one upstream listener to do (made by resolver_routes.py). Pure.

Apart from resolver_routes.py because the listener (outbound.py, compiled
with mypyc) types an attribute with it: a class only imported for type
checking is no type mypyc can check at run time, and importing
resolver_routes.py at start-up would load the resolver reader and the
filter parser into every sidecar, resolvers or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Routing:
    """`chains`: each split target key (the upstream's name when unsplit) -> the target keys
    to try in order; `queries`: each target key -> its health watch's query; `connect_s`:
    service -> its resolver's ConnectTimeout; `request_s`: the RequestTimeout (0: none)."""

    chains: Mapping[str, tuple[str, ...]]
    queries: Mapping[str, str] = field(default_factory=dict)
    connect_s: Mapping[str, float] = field(default_factory=dict)
    request_s: float = 0.0

    def shown(self) -> str:
        """For the log: `api/v1 (then api-b); connect 2s to api`."""
        parts = [" (then ".join((c[0], ", ".join(c[1:]) + ")")) if c[1:] else c[0] if c else
                 f"{key}: unresolvable" for key, c in self.chains.items()]  # fmt: skip
        parts += [f"connect {s:g}s to {svc}" for svc, s in self.connect_s.items()]
        if self.request_s:
            parts.append(f"requests {self.request_s:g}s")
        return "; ".join(parts)
