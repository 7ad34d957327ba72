"""Pieces of the composition root, tested without serf: listeners, data dir, the cv tag."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gossamer.agent.config import AgentConfig
from gossamer.agent.lifecycle.datadir import DataDir
from gossamer.agent.lifecycle.listeners import ListenError, bind_listeners, bind_socket
from gossamer.agent.lifecycle.tasks import TaskSet
from gossamer.agent.lifecycle.version_tag import RecordVersionTag
from gossamer.agent.local.maintenance import NODE_MAINT_NOTE, maintenance_checks
from gossamer.catalog.model import Service
from gossamer.catalog.store_local import Maintenance
from gossamer.gossip.tags import TAG_RECORD_VERSION
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async


def _free_port() -> int:
    return free_port("127.0.0.1")


def _config(**ports: int) -> AgentConfig:
    return AgentConfig.model_validate(
        {"node": "n1", "bind": "127.0.0.1", "advertise": "127.0.0.1"} | ports
    )


def test_a_scratch_data_dir_is_removed_on_close_and_a_real_one_is_kept(tmp_path: Path) -> None:
    scratch = DataDir(tmp_path / "scratch", scratch=True)
    scratch.open()
    scratch.node_id()
    kept = DataDir(tmp_path / "kept")
    kept.open()
    scratch.close()
    kept.close()
    assert not (tmp_path / "scratch").exists()
    assert (tmp_path / "kept" / "agent.lock").exists()


def test_a_taken_port_names_its_listener_and_frees_the_ones_bound_before() -> None:
    http, dns = _free_port(), _free_port()
    taken = bind_socket("someone else", "127.0.0.1", 0)
    rpc = taken.getsockname()[1]
    try:
        with pytest.raises(ListenError, match=f"agent RPC on 127.0.0.1:{rpc}"):
            bind_listeners(_config(http_port=http, dns_port=dns, rpc_port=rpc))
        again = bind_listeners(_config(http_port=http, dns_port=dns, rpc_port=_free_port()))
        again.close()
    finally:
        taken.close()


class _SlowSerf:
    """A serf client whose tag updates wait until the test lets them through."""

    def __init__(self) -> None:
        self.asked: list[str] = []  # the updates begun (held at the gate until it opens)
        self.sent: list[str] = []
        self.gate = asyncio.Event()

    async def tags(self, set_tags: dict[str, str], **_: Any) -> None:
        self.asked.append(set_tags[TAG_RECORD_VERSION])
        await self.gate.wait()
        self.sent.append(set_tags[TAG_RECORD_VERSION])


async def test_a_burst_of_versions_sends_one_update_in_flight_then_the_latest() -> None:
    serf, tasks = _SlowSerf(), TaskSet()
    tag = RecordVersionTag(serf, tasks.spawn, latest=3)  # type: ignore[arg-type]
    for version in (4, 5, 6):
        tag.changed(version)
    await eventually_async(lambda: serf.asked == ["6"])  # the burst's one update in flight
    tag.changed(7)
    serf.gate.set()
    await eventually_async(lambda: len(serf.sent) == 2)
    assert serf.sent == ["6", "7"]
    tasks.cancel_all()


def test_maintenance_rows_for_the_node_and_registered_services_only() -> None:
    web = Service(id="web-1", name="web", port=80, tags=("a",))
    rows = maintenance_checks(
        Maintenance(node="", services={"web-1": "deploy", "gone": "x"}), {"web-1": web}
    )
    assert [(r.check_id, r.notes, r.service_name) for r in rows] == [
        ("_node_maintenance", NODE_MAINT_NOTE, ""),
        ("_service_maintenance:web-1", "deploy", "web"),
    ]
    assert {r.status for r in rows} == {"critical"}
