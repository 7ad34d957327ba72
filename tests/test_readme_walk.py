"""The README's commands as a new user (often a Consul user) types them.

Found walking the README on a dev agent: `gossamer top` piped or run under
`timeout` printed nothing; Consul's documented `consul intention match db`
was a usage error.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.harness.cli import cli_env, expect, gossamer
from tests.harness.cluster import AgentProc, Cluster, put_exact

FRAME = "edges of this agent's proxies, last"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    c = Cluster(tmp_path_factory.mktemp("readme-walk"))
    try:
        a = c.new_agent("rw1").start()
        put_exact(a, "web", "db", {"Action": "allow"})
        put_exact(a, "web", "cache", {"Action": "deny"})
        yield a
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def _read_until(proc: subprocess.Popen[bytes], frames: int, timeout: float) -> str:
    """What `proc` wrote to its stdout pipe until it shows `frames` frames, or the deadline."""
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    while out.decode(errors="replace").count(FRAME) < frames:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            break
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")


def test_top_piped_shows_each_frame_as_it_comes_and_ends_on_sigterm(agent: AgentProc) -> None:
    """Before: with no terminal, rich's Live kept every frame to itself until the loop ended,
    so `gossamer top | tee log` showed nothing for as long as it ran, and `timeout 10
    gossamer top` (SIGTERM) ended it with nothing printed at all and a signal's exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gossamer.agent", "top", "--interval", "0.2",
         "--http-addr", agent.http],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=cli_env(),
    )  # fmt: skip
    try:
        shown = _read_until(proc, 2, timeout=5.0)
        assert shown.count(FRAME) >= 2, shown
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (proc.returncode, err)
    assert (shown + rest.decode()).endswith("\n"), repr(rest)


def test_intention_match_takes_the_service_as_consul_does(agent: AgentProc) -> None:
    """`consul intention match db` (Consul's docs' example) matches by destination; `-source`
    and `-destination` keep taking the name. Before: a positional name was a usage error."""
    by_destination = expect("intention", "match", "db", "--http-addr", agent.http)
    assert "web" in by_destination and "cache" not in by_destination, by_destination
    by_source = expect("intention", "match", "-source", "web", "--http-addr", agent.http)
    assert "db" in by_source and "cache" in by_source, by_source
    assert "db" in expect("intention", "match", "-destination", "db", "--http-addr", agent.http)
    both = gossamer("intention", "match", "--source", "web", "db", "--http-addr", agent.http)
    assert both.returncode == 2 and "not both" in both.stderr, both.stderr
