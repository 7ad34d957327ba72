"""A rolling upgrade: this version's agents, sidecars and CLI beside the previous release's.

The previous release (`tests/harness/old_release.py`, commit 8fb720d) runs
from an export of its tree. Each test puts one piece of each version
together and checks what an operator upgrading one host at a time relies
on: each side takes what the other writes, and a sidecar or CLI of either
version works against an agent of the other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.cluster import Cluster, free_port, put_exact
from tests.harness.old_release import old_env, old_release
from tests.harness.poll import eventually
from tests.proxy_support import App, ProxyProc, register_pair, roundtrip


@pytest.fixture(scope="module")
def old_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return old_release(tmp_path_factory.mktemp("old-release"))


def test_a_new_sidecar_on_an_old_agent_opens_its_upstream_at_once(
    cluster: Cluster, tmp_path: Path, old_path: Path
) -> None:
    """The old agent answers 400 to `/v1/config/service-resolver` (it holds no such kind).
    The sidecar took that for "not known yet": each upstream waited out its 10 s warm-up
    and said its split was not resolved. Now the 400 reads as "no resolvers": the upstream
    opens once its instances are known, with no such warning, and traffic flows."""
    agent = cluster.new_agent("old")
    agent.env = old_env(old_path)
    agent.start()
    eventually(agent.enrolled, 20, what="the agent's certificate")
    app = App("127.0.0.1").start()
    up = free_port("127.0.0.1")
    register_pair(agent, app.port, up)
    put_exact(agent, "web", "db", {"Action": "allow"})
    proxies = [
        ProxyProc(["--sidecar-for", sid, "--http-addr", agent.http], tmp_path / f"{sid}.log")
        for sid in ("db", "web")
    ]
    try:
        for proxy in proxies:
            proxy.start()
        eventually(
            lambda: roundtrip(("127.0.0.1", up), b"ping") == b"ping<eof>",
            30,
            what=f"traffic through web's upstream; log:\n{proxies[1].log()[-2000:]}",
        )
        log = proxies[1].log()
        assert "not resolved" not in log, log
        assert "an agent older than this proxy" in log, log
    finally:
        for proxy in proxies:
            proxy.stop()
        app.stop()
