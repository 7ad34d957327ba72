"""How many CPUs this process may use: `--workers auto`.

Two limits, the smaller wins:
- the affinity mask (`taskset`, a cpuset, systemd's `CPUAffinity=`);
- the CPU quota of its cgroup (a Kubernetes CPU limit, systemd's
  `CPUQuota=`, `docker --cpus`): quota / period, rounded up, as a process
  with that many busy threads would fill it. cgroup v2 (`cpu.max`, "max
  100000" when unlimited) and v1 (`cpu.cfs_quota_us`, -1 when unlimited,
  and `cpu.cfs_period_us`).
Only the process's own cgroup is read, not its parents'; it is looked for
under its path and, not there, at the mount itself (a container that sees
the host's cgroup names: every cgroup v1 one). Parsing is pure
(`quota_cpus`, `cgroup_paths`); `cpus_allowed` reads the files.
"""

from __future__ import annotations

import math
import os

from gossamer.proxy.config_flags import MAX_WORKERS, workers_text

CGROUP_ROOT = "/sys/fs/cgroup"
V1_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")  # where a v1 `cpu` controller is mounted


def worker_count(text: str, where: str) -> int:
    """A `--workers` value as a count: `auto` is `cpus_allowed()` (at most MAX_WORKERS);
    ConfigError naming `where` for anything but 1 to MAX_WORKERS or `auto`."""
    checked = workers_text(text, where)
    return min(cpus_allowed(), MAX_WORKERS) if checked == "auto" else int(checked)


def quota_cpus(quota_us: int, period_us: int) -> int | None:
    """CPUs a quota amounts to (at least 1); None for no quota (quota <= 0, or no period)."""
    if quota_us <= 0 or period_us <= 0:
        return None
    return max(1, math.ceil(quota_us / period_us))


def cgroup_paths(proc_cgroup: str) -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and its v1 `cpu` controller's, from /proc/self/cgroup."""
    v2 = v1 = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def cpus_allowed(root: str = CGROUP_ROOT, proc_cgroup: str = "/proc/self/cgroup") -> int:
    """The CPUs in the affinity mask, fewer if the cgroup's quota allows fewer."""
    cpus = len(os.sched_getaffinity(0))
    quota = _quota(root, proc_cgroup)
    return min(cpus, quota) if quota is not None else cpus


def _quota(root: str, proc_cgroup: str) -> int | None:
    try:
        v2, v1 = cgroup_paths(_read(proc_cgroup))
        if v2 is not None and os.path.exists(os.path.join(root, "cgroup.controllers")):
            found = _found(_places(root, v2), "cpu.max")
            if found is None:
                return None
            quota, _, period = _read(found, "cpu.max").partition(" ")
            return None if quota == "max" else quota_cpus(int(quota), int(period))
        mounts = [os.path.join(root, m) for m in V1_MOUNTS]
        for base in [p for m in mounts for p in _places(m, v1)] if v1 else []:
            if os.path.exists(os.path.join(base, "cpu.cfs_quota_us")):
                quota_us = int(_read(base, "cpu.cfs_quota_us"))
                return quota_cpus(quota_us, int(_read(base, "cpu.cfs_period_us")))
    except (OSError, ValueError):  # no such file in this container, or an odd one: no quota
        return None
    return None


def _places(mount: str, path: str) -> list[str]:
    """Where the cgroup `path` may be under `mount`: at `path`, as the host sees it, or at
    the mount itself, where a container without a cgroup namespace (every cgroup v1 one)
    has its own cgroup mounted while /proc/self/cgroup still names the host's path."""
    return [os.path.join(mount, path.lstrip("/")), mount]


def _found(places: list[str], name: str) -> str | None:
    """The first of `places` that holds the file `name`."""
    return next((p for p in places if os.path.exists(os.path.join(p, name))), None)


def _read(*parts: str) -> str:
    with open(os.path.join(parts[0], *(p.lstrip("/") for p in parts[1:]))) as f:
        return f.read().strip()
