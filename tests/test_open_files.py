"""Agent and proxy raise their open-files soft limit to the hard one at start (proxy/open_files.py).

Under the usual soft limit of 1024 a sidecar holds ~500 connections before
accepts fail, and an agent ~1000 parked blocking queries. Both are started
here under `prlimit --nofile=256:` (the hard limit left as it is) and must
run with the hard limit as their soft one; /proc/<pid>/limits says.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.cli import cli_env
from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import App, listening, register_pair, set_intention

LOWERED = ["prlimit", "--nofile=256:", "--"]  # exec's the command: the same pid


def open_files(pid: int) -> tuple[str, str]:
    """A process's (soft, hard) open-files limit as the kernel reports it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError(f"no open-files line for {pid}")


def test_the_soft_limit_goes_up_to_the_hard_one_and_never_down() -> None:
    script = (
        "import resource as r\n"
        "from gossamer.proxy.open_files import raise_open_files\n"
        "_, hard = r.getrlimit(r.RLIMIT_NOFILE)\n"
        "r.setrlimit(r.RLIMIT_NOFILE, (256, hard))\n"
        "print(*raise_open_files(), r.getrlimit(r.RLIMIT_NOFILE)[0] == hard)\n"
        "print(*raise_open_files())\n"  # already there: unchanged
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=cli_env(), timeout=60, check=True).stdout.split("\n")  # fmt: skip
    first, second = out[0].split(), out[1].split()
    assert first[0] == "256" and first[2] == "True" and int(first[1]) > 256
    assert second == [first[1], first[1]]


def test_an_agent_and_a_sidecar_started_under_a_low_soft_limit_run_with_the_hard_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    agent = cluster.new_agent("nofile1")
    agent.prefix = LOWERED
    agent.start()
    assert agent.proc is not None
    soft, hard = open_files(agent.proc.pid)
    assert soft == hard and soft != "256"
    app = App("127.0.0.1").start()
    up_port = free_port("127.0.0.1")
    db_in, _ = register_pair(agent, app.port, up_port)
    set_intention(agent, "web", "db", "allow")
    argv = [*LOWERED, sys.executable, "-m", "gossamer.agent", "connect", "proxy",
            "--sidecar-for", "db", "--http-addr", agent.http]  # fmt: skip
    with (tmp_path / "db-sidecar.log").open("wb") as log:
        proxy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=cli_env())
    try:
        eventually(lambda: open_files(proxy.pid)[0] != "256", 20, what="the sidecar's raise")
        assert open_files(proxy.pid) == (hard, hard)
        eventually(lambda: listening(agent.ip, db_in), 20, what="the sidecar serving")
    finally:
        proxy.terminate()
        assert proxy.wait(20) == 0
        app.stop()
