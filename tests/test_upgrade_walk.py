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

from gossamer.agent.replicated.config_entry_store import ConfigEntryStore
from gossamer.catalog import lww
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore
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


def _config_store(tmp_path: Path, node: str) -> ConfigEntryStore:
    clock = iter(range(1_700_000_000_000, 1_800_000_000_000, 10))
    db = CatalogStore.open(tmp_path / f"{node}.db")
    catalog = LiveCatalog("dc1", db, wall_ms=lambda: 1_000)
    return ConfigEntryStore(db, node=node, wall_ms=lambda: next(clock), notify=catalog.touch)


def test_a_config_entry_of_a_later_kind_is_kept_and_passed_on_not_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A release after this one will hold kinds this one does not (as this one holds
    service-resolver, which 8fb720d refused at the key: every anti-entropy round offered
    it again and the old agent logged a refusal each time, for as long as it ran). This
    version keeps such an entry in its map, so its digest agrees with the newer peer's
    and the entry reaches peers through it, and serves it nowhere."""
    newer = lww.Entry(
        Timestamp(1_700_000_000_000, 0, "newer"),
        {"Kind": "service-router", "Name": "web", "Routes": [{"Match": {}}]},
    )
    here, further = _config_store(tmp_path, "here"), _config_store(tmp_path, "further")
    assert here.absorb([("service-router/web", newer)]) == ["service-router/web"]
    assert "refusing" not in caplog.text
    assert here.get("service-router", "web") is None  # not served
    assert here.snapshot().entries.entries == {"service-router/web": newer}
    passed_on = list(here.snapshot().entries.entries.items())
    assert further.absorb(passed_on) == ["service-router/web"]
    assert here.absorb([("not a key", newer)]) == []  # still refused: no kind/name shape
