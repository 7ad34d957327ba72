"""`--workers auto`: the affinity mask, fewer under a cgroup CPU quota (proxy/cpu_budget.py).

The parsing is table-tested; the file reading runs on fake cgroup trees
under tmp_path laid out as cgroup v2 and v1 mount them (this machine's own
cgroup may have no quota at all).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gossamer.proxy.cpu_budget import cgroup_paths, cpus_allowed, quota_cpus

CPUS = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [(100_000, 100_000, 1), (150_000, 100_000, 2), (50_000, 100_000, 1), (-1, 100_000, None),
     (0, 100_000, None), (200_000, 0, None)],
)  # fmt: skip
def test_a_quota_is_cpus_rounded_up(quota: int, period: int, cpus: int | None) -> None:
    assert quota_cpus(quota, period) == cpus


def test_cgroup_paths_of_v2_v1_and_hybrid() -> None:
    assert cgroup_paths("0::/kubepods/pod1/c1\n") == ("/kubepods/pod1/c1", None)
    assert cgroup_paths("4:cpu,cpuacct:/docker/x\n1:name=systemd:/y\n") == (None, "/docker/x")
    assert cgroup_paths("1:cpu:/a\n0::/b\nbroken\n") == ("/b", "/a")


def _tree(tmp: Path, proc: str, files: dict[str, str]) -> tuple[str, str]:
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    (tmp / "proc-cgroup").write_text(proc)
    return str(tmp), str(tmp / "proc-cgroup")


def test_a_v2_quota_caps_the_affinity_mask(tmp_path: Path) -> None:
    root, proc = _tree(tmp_path, "0::/pod/c\n", {"cgroup.controllers": "cpu\n",
                                                "pod/c/cpu.max": "100000 100000\n"})  # fmt: skip
    assert cpus_allowed(root, proc) == 1
    (tmp_path / "pod/c/cpu.max").write_text("max 100000\n")
    assert cpus_allowed(root, proc) == CPUS


def test_a_v1_quota_caps_the_affinity_mask(tmp_path: Path) -> None:
    root, proc = _tree(tmp_path, "3:cpu,cpuacct:/docker/x\n", {
        "cpu,cpuacct/docker/x/cpu.cfs_quota_us": "100000\n",
        "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"})  # fmt: skip
    assert cpus_allowed(root, proc) == 1
    (tmp_path / "cpu,cpuacct/docker/x/cpu.cfs_quota_us").write_text("-1\n")
    assert cpus_allowed(root, proc) == CPUS


def test_missing_or_odd_files_mean_no_quota(tmp_path: Path) -> None:
    root, proc = _tree(tmp_path, "0::/gone\n", {"cgroup.controllers": "cpu\n"})
    assert cpus_allowed(root, proc) == CPUS
    root, proc = _tree(tmp_path, "0::/odd\n", {"odd/cpu.max": "lots 100000\n"})
    assert cpus_allowed(root, proc) == CPUS
    assert cpus_allowed(str(tmp_path), str(tmp_path / "no-such-file")) == CPUS
