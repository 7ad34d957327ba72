"""vm-examples/README.md replayed on three hosts, so the walkthrough cannot rot (`-m netns`).

The blocks marked `replay=…` are read from the walkthrough itself and run
with bash, in order, each on all of its hosts at once: h1 is the web host (web-01), h2 and
h3 the db hosts. Each host is a network namespace (tests/harness/netns.py)
with a private mount namespace, held open by a `sleep` process, whose
/etc, /opt and /var/lib are overlays on a tmpfs: the walkthrough's paths
(/etc/gossamer.d, /etc/systemd/system, /var/lib/gossamer) are used as
written and nothing of this machine's own is touched; /opt/gossamer is
this checkout. systemd is not running here, so `systemctl` is a stand-in
(tests/harness/systemctl_shim.py) that runs the units' ExecStart lines
directly and waits for READY=1 on a real NOTIFY_SOCKET for Type=notify.
After the replay, bytes go from the web host's 127.0.0.1:9191 through both
sidecars to a db app and back.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.binaries import cannot_run
from tests.harness.netns import Hosts, cleanup_leftovers, netns_available
from tests.harness.poll import eventually

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parent.parent
WALKTHROUGH = REPO / "vm-examples" / "README.md"
ROLES = {1: ("web", "web-01"), 2: ("db", "db-01"), 3: ("db", "db-02")}
BLOCK = re.compile(r"^```(\w+)[ \t]*([^\n]*)\n(.*?)^```", re.M | re.S)
ECHO = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', 5432)); s.listen(16)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    with c:\n"
    "        while d := c.recv(65536): c.sendall(d)\n"
)
CLIENT = (
    "import socket, sys\n"
    "with socket.create_connection(('127.0.0.1', 9191), timeout=5) as s:\n"
    "    s.sendall(b'ping through the mesh'); s.shutdown(socket.SHUT_WR)\n"
    "    got = b''\n"
    "    while d := s.recv(65536): got += d\n"
    "sys.stdout.write(got.decode())\n"
)


@dataclass(frozen=True)
class Block:
    replay: str  # all, web, db, first, vars
    attrs: dict[str, str]
    text: str


def replay_blocks(markdown: str) -> list[Block]:
    out = []
    for _lang, info, text in BLOCK.findall(markdown):
        attrs = dict(a.split("=", 1) for a in info.split() if "=" in a)
        if "replay" in attrs:
            out.append(Block(attrs["replay"], attrs, text))
    return out


@dataclass
class Replay:
    hosts: Hosts
    root: Path
    holders: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[int, dict[str, str]] = field(default_factory=dict)

    def hold(self, i: int) -> None:
        """A mount namespace for host i with /etc, /opt, /var/lib as overlays on a tmpfs."""
        ovl = self.root / f"h{i}-ovl"
        ovl.mkdir()
        ready = self.root / f"h{i}-ready"
        mounts = [f"mount -t tmpfs tmpfs {ovl}"]
        for d in ("etc", "opt", "var/lib"):
            up, work = ovl / d.replace("/", "-"), ovl / (d.replace("/", "-") + "-work")
            options = f"lowerdir=/{d},upperdir={up},workdir={work}"
            mounts += [f"mkdir -p {up} {work}", f"mount -t overlay overlay -o {options} /{d}"]
        script = " && ".join([*mounts, f"ln -s {REPO} /opt/gossamer", f"touch {ready}",
                              "exec sleep infinity"])  # fmt: skip
        self.holders[i] = subprocess.Popen(
            [*self.hosts.host(i).prefix, "unshare", "--mount", "--propagation", "private",
             "bash", "-c", script], start_new_session=True)  # fmt: skip
        eventually(ready.exists, 10, what=f"host {i}'s mount namespace")

    def run(self, i: int, text: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`text` run by bash on host i (strict mode), with the host's variables."""
        return self.exec(i, ["bash", "-euo", "pipefail", "-c", text], timeout)

    def exec(self, i: int, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        enter = ["nsenter", "-t", str(self.holders[i].pid), "-m", "-n", "--"]
        return subprocess.run([*enter, *argv], capture_output=True, text=True, timeout=timeout,
                              env=self.env[i], stdin=subprocess.DEVNULL)  # fmt: skip

    def must(self, i: int, text: str) -> str:
        result = self.run(i, text)
        assert result.returncode == 0, f"host h{i}:\n{text}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def stop(self) -> None:
        """Kill the holders; Hosts.close() then kills whatever runs in the namespaces."""
        for holder in self.holders.values():
            holder.kill()
            holder.wait(5)


def shim_bin(root: Path) -> Path:
    path = root / "bin"
    path.mkdir()
    (path / "systemctl").write_text(
        f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m tests.harness.systemctl_shim "$@"\n'
    )
    (path / "systemctl").chmod(0o755)
    return path


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[Replay]:
    ok, why = netns_available()
    if not ok:
        cannot_run(why)
    cleanup_leftovers()
    hosts = Hosts(3, tmp_path)
    r = Replay(hosts, tmp_path)
    try:
        bin_dir = shim_bin(tmp_path)
        seeds = ", ".join(f'"{h.ip}"' for h in hosts.hosts)
        for i, (_role, node) in ROLES.items():
            r.hold(i)
            r.env[i] = {"PATH": f"{bin_dir}:/opt/gossamer/.venv/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "SYSTEMCTL_SHIM_STATE": str(tmp_path / f"h{i}-units"), "LANG": "C.UTF-8",
                        "NODE": node, "BIND": hosts.host(i).ip, "SEEDS": seeds}  # fmt: skip
        yield r
    finally:
        r.stop()
        hosts.close()


def hosts_for(block: Block) -> list[int]:
    if block.replay in ("all",):
        return list(ROLES)
    if block.replay == "first":
        return [1]
    return [i for i, (role, _) in ROLES.items() if role == block.replay]


def test_the_walkthrough_replayed_on_three_hosts(replay: Replay) -> None:
    blocks = replay_blocks(WALKTHROUGH.read_text())
    assert {b.replay for b in blocks} == {"vars", "first", "all", "web", "db"}
    for block in blocks:
        if block.replay == "vars":  # the replay sets these itself, per host
            assigned = set(re.findall(r"\b([A-Z_]+)=", block.text))
            assert assigned == {"NODE", "BIND", "SEEDS"}, assigned
            continue
        # a block runs on its hosts at once, as an operator would with one terminal per host
        with ThreadPoolExecutor(3) as pool:
            outs = list(pool.map(lambda i, t=block.text: replay.must(i, t), hosts_for(block)))
        if name := block.attrs.get("export"):
            for env in replay.env.values():
                env[name] = outs[0].strip()
    members = replay.must(3, "gossamer members")
    assert len(re.findall(r"\balive\b", members)) == 3, members
    for i in (2, 3):
        subprocess.Popen([*replay.hosts.host(i).prefix, sys.executable, "-c", ECHO],
                         start_new_session=True)  # fmt: skip

    def through_mesh() -> bool:
        result = replay.exec(1, [sys.executable, "-c", CLIENT], timeout=30)
        return result.stdout == "ping through the mesh"

    eventually(through_mesh, 60, what="web-01 -> db through both sidecars")
    assert "Allowed" in replay.must(1, "gossamer intention check web db")
    # Operations: `systemctl reload gossamer` (SIGHUP through ExecReload) keeps it serving
    assert replay.must(2, "systemctl reload gossamer && systemctl is-active gossamer") == "active\n"
    log = replay.root / "h2-units" / "gossamer.log"
    eventually(lambda: "reload" in log.read_text(), 10, what="the agent to log its reload")
    # Operations: `systemctl stop gossamer` leaves gracefully, peers show the host as left
    replay.must(3, "systemctl stop gossamer-proxy@db gossamer")
    eventually(lambda: re.search(r"db-02\s.*\bleft\b", replay.must(1, "gossamer members")), 20,
               what="db-02 shown as left on web-01")  # fmt: skip
