"""scripts/demo.sh as a user runs it: `--check` brings the mesh up, denies, allows, tears down.

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

from tests.harness.cli import cli_env
from tests.harness.cluster import pid_alive

ROOT = Path(__file__).resolve().parent.parent


def demo(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / "demo.sh"), *args], capture_output=True,
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
                 "voting's agent reports the denial", "the front end recovers",
                 "removed everything the demo made: check passed"):  # fmt: skip
        assert step in out, out[-4000:]
    assert set(demo_processes()) <= before
    assert our_namespaces() <= namespaces  # (other tests' runs may come and go meanwhile)


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
