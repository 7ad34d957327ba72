"""scripts/demo.sh `--check`: the mesh brought up, a deny and an allow, torn down.

As root it uses three network namespaces (loopback agents where namespaces
cannot be made; `--loopback` when not root, since the demo refuses to make
namespaces without it). The demo itself checks each step against the real
front end and agents; this test reads its report and then that nothing it
made is left (namespaces of ours, demo processes).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.cli import cli_env
from tests.harness.cluster import pid_alive
from tests.harness.netns import live_runs, run_of

ROOT = Path(__file__).resolve().parent.parent


def demo(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    """scripts/demo.sh without its first line (scripts/setup.sh dev, done by the test setup)."""
    return subprocess.run([sys.executable, "-m", "scripts.demo", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=cli_env(),
                          stdin=subprocess.DEVNULL)  # fmt: skip


def demo_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if (
            b"scripts.demo" in cmdline
            and pid_alive(int(entry.name))
            and int(entry.name) != os.getpid()
        ):
            found.append(int(entry.name))
    return found


def our_namespaces() -> set[str]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in netns.splitlines() if line.startswith("gsns")}


def test_the_demo_degrades_on_a_deny_recovers_on_allow_and_leaves_nothing() -> None:
    before, namespaces = set(demo_processes()), our_namespaces()
    result = demo("--check", *([] if os.geteuid() == 0 else ["--loopback"]))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    for step in ("reaches emoji and voting through the mesh", "the front end degrades",
                 "voting's agent reports the denial", "gossamer stat at voting's agent counts",
                 "the front end recovers",
                 "removed everything the demo made: check passed"):  # fmt: skip
        assert step in out, out[-4000:]
    assert set(demo_processes()) <= before
    # Others' runs may come and go meanwhile (a netns test beside this one): a namespace that
    # is new and belongs to no live run was left behind.
    live = live_runs()
    assert {n for n in our_namespaces() - namespaces if run_of(n) not in live} == set()


def test_a_taken_front_port_is_refused_in_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "scripts.demo", "--loopback", "--port",
                                 str(port)], capture_output=True, text=True, cwd=ROOT,
                                env=cli_env(), timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"demo: port {port} is taken: free it or pass --port"


def test_without_root_it_refuses_in_one_line() -> None:
    """As a user other than root (setpriv drops to nobody when the tests run as root)."""
    drop = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    argv = [*(drop if os.geteuid() == 0 else []), sys.executable, "-m", "scripts.demo"]
    probe = subprocess.run([*argv[:-2], "-c", "import scripts.demo"], cwd=ROOT, env=cli_env(),
                           capture_output=True, timeout=60)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip("this checkout cannot be read by the user nobody")
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=cli_env(),
                            timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "demo: the demo makes network namespaces and needs root (or use --loopback)"
    )
