"""The process's open-files limit, raised to what it may be, once at start.

Every client connection costs a sidecar a descriptor on each side of it,
and every parked blocking query costs the agent one. Under a soft limit of
1024 (what a login shell or a systemd unit gives by default) a sidecar
could hold ~500 connections before accepts fail. The hard limit is what
the operator allows; the soft one is only a default, which Go raises to the
hard one at start (so Consul, Nomad and serf run with it) and HAProxy sizes
from its maxconn. The proxy and the agent do the same. An unlimited hard
limit is met with `CAP` (the kernel's usual `fs.nr_open`); a refusal leaves
the limit as it was. Children started later (serf, script checks) inherit it.
"""

from __future__ import annotations

import resource
from typing import Final

CAP: Final = 1 << 20


def raise_open_files() -> tuple[int, int]:
    """Set the soft RLIMIT_NOFILE to the hard limit; (soft before, soft after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CAP if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, want
