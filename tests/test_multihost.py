"""Real agents on separate hosts (network namespaces on a bridge): cut, kill, restart.

The three hosts and their agents are shared by the module (starting them is
most of the cost); the `healthy` fixture puts the cluster back together
before each test, so each test can also run on its own.

Timings, from serf 0.8 with its default LAN profile (memberlist: probe every
1 s, suspicion timeout 4 x 1 s for a cluster this small):
- a host cut off or killed is seen `failed` after about 5-7 s;
- when the link is back, the cut-off host must learn it was declared dead
  and refute it. Often a broadcast still queued does that within a second;
  otherwise it takes the cut-off host's next push/pull sync (every 30 s, with
  a peer it still believes alive) or serf's reconnect loop (every
  reconnect_interval, which the agent sets to 10 s instead of serf's 30 s;
  each node tries a failed member with probability failed/alive; "forgoing
  reconnect for random throttling" in the log when it does not). With serf's
  30 s default, runs here healed in 0.3 s to 36 s and once took over 50 s;
  with 10 s, 6-20 s. The 50 s deadline leaves room for a few skipped tries.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from tests.harness.binaries import cannot_run
from tests.harness.cluster import AgentProc, http_json, pid_alive
from tests.harness.netns import Hosts, cleanup_leftovers, netns_available
from tests.harness.poll import eventually

pytestmark = pytest.mark.netns

ALIVE, LEFT, FAILED = 1, 3, 4
COUNT = 3
FAIL_DEADLINE = 15.0  # link cut → failed; serf takes ~5-7 s
KILL_DEADLINE = 10.0  # agent kill -9 → failed (the figure)
HEAL_DEADLINE = 50.0  # link back → alive; serf reconnects every 10 s (see above)


def status_is(agent: AgentProc, node: str, status: int) -> bool:
    """Whether `agent` lists `node` with `status` (False while it does not list it)."""
    return agent.members().get(node) == status


def sees_alive(agent: AgentProc, names: set[str]) -> bool:
    return {n for n, s in agent.members().items() if s == ALIVE} == names


@dataclass
class Net:
    hosts: Hosts
    agents: list[AgentProc]  # agents[i - 1] runs on host i

    def agent(self, i: int) -> AgentProc:
        return self.agents[i - 1]

    def running(self) -> list[AgentProc]:
        return [a for a in self.agents if a.proc is not None and a.proc.poll() is None]

    def start(self, i: int, join: AgentProc | None) -> AgentProc:
        """(Re)start the agent of host i on its data dir, joining `join` if given."""
        extra = ["--join", join.serf_addr] if join else []
        agent = self.hosts.agent(i, *extra)
        self.agents[i - 1] = agent
        return agent.start()

    def wait_all_alive(self, timeout: float) -> None:
        names = {a.name for a in self.agents}
        for agent in self.agents:
            eventually(
                partial(sees_alive, agent, names),
                timeout,
                what=f"{agent.name} to see all {len(names)} alive",
            )


@pytest.fixture(scope="session")
def netns_leftovers_cleaned() -> list[str]:
    """Remove what a crashed earlier run left (namespaces, bridges, their processes)."""
    ok, why = netns_available()
    if not ok:
        cannot_run(why)  # skips saying why; under CI (as root) they must run, so it fails
    return cleanup_leftovers()


@pytest.fixture(scope="module")
def net(
    netns_leftovers_cleaned: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Net]:
    hosts = Hosts(COUNT, tmp_path_factory.mktemp("hosts"))
    try:
        first = hosts.agent(1).start()
        rest = [hosts.agent(i, "--join", first.serf_addr) for i in range(2, COUNT + 1)]
        for agent in rest:
            agent.start(wait=False)
        for agent in rest:
            agent.wait_ready()
        net = Net(hosts, [first, *rest])
        net.wait_all_alive(15)
        yield net
    finally:
        leftovers = hosts.close()
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture
def healthy(net: Net) -> Net:
    """Links up, every host running its agent, everyone seeing everyone alive."""
    for host in net.hosts.hosts:
        net.hosts.restore(host.index)
    for i, agent in enumerate(net.agents, start=1):
        if agent.proc is None or agent.proc.poll() is not None:
            peers = [a for a in net.running() if a is not agent]
            net.start(i, peers[0] if peers else None)
    net.wait_all_alive(HEAL_DEADLINE)
    return net


def test_three_hosts_join_and_each_sees_three_alive(healthy: Net) -> None:
    for agent in healthy.agents:
        members = {m["Name"]: m for m in agent.get("/v1/agent/members")}
        assert set(members) == {"h1", "h2", "h3"}
        for other in healthy.agents:
            m = members[other.name]
            assert m["Status"] == ALIVE
            assert (m["Addr"], m["Port"]) == (other.ip, other.serf_port)


def test_cut_link_is_seen_failed_and_alive_again_once_restored(healthy: Net) -> None:
    h1, h2, h3 = healthy.agents
    healthy.hosts.cut(3)
    started = time.monotonic()
    for agent in (h1, h2):
        eventually(
            partial(status_is, agent, "h3", FAILED),
            FAIL_DEADLINE,
            what=f"{agent.name} to see h3 failed",
        )
    print(f"cut → failed seen by h1 and h2 after {time.monotonic() - started:.1f}s")
    assert h3.proc is not None and h3.proc.poll() is None, "a cut host keeps running"

    healthy.hosts.restore(3)
    started = time.monotonic()
    healthy.wait_all_alive(HEAL_DEADLINE)
    print(f"restore → all alive after {time.monotonic() - started:.1f}s")


def test_kill_9_of_agent_takes_its_serf_down_and_peers_see_failed(healthy: Net) -> None:
    h1, h2, h3 = healthy.agents
    serf_pids = h2.serf_pids()
    assert len(serf_pids) == 1, f"h2 should run one serf, found {serf_pids}"
    assert h2.proc is not None
    os.kill(h2.proc.pid, signal.SIGKILL)  # the python process alone, not its group
    started = time.monotonic()
    h2.wait_exit(5)
    eventually(lambda: not pid_alive(serf_pids[0]), 5, what="h2's serf to die with its agent")
    assert not [p for p in h2.serf_pids() if pid_alive(p)], "no serf with h2's snapshot remains"
    for agent in (h1, h3):
        eventually(
            partial(status_is, agent, "h2", FAILED),
            KILL_DEADLINE - (time.monotonic() - started),
            what=f"{agent.name} to see h2 failed",
        )
    print(f"kill -9 → failed seen by h1 and h3 after {time.monotonic() - started:.1f}s")


def test_restart_on_same_data_dir_keeps_node_id_and_rejoins(healthy: Net) -> None:
    h1, h2, _ = healthy.agents
    node_id = h2.get("/v1/agent/self")["Config"]["NodeID"]
    h2.signal(signal.SIGTERM)
    assert h2.wait_exit() == 0
    eventually(partial(status_is, h1, "h2", LEFT), 10, what="h1 to see h2 left")

    again = healthy.start(2, join=h1)
    assert Path(again.data_dir) == Path(h2.data_dir)
    assert again.get("/v1/agent/self")["Config"]["NodeID"] == node_id
    healthy.wait_all_alive(15)


def catalog_ids(agent: AgentProc, service: str) -> list[str]:
    return sorted(r["ServiceID"] for r in agent.get(f"/v1/catalog/service/{service}"))


def test_a_host_cut_off_during_changes_catches_up_once_back(healthy: Net) -> None:
    h1, h2, h3 = healthy.agents
    healthy.hosts.cut(3)
    eventually(partial(status_is, h1, "h3", FAILED), FAIL_DEADLINE, what="h3 failed on h1")
    h1.put("/v1/agent/service/register", {"Name": "missed", "ID": "missed-1", "Port": 1})
    h2.put("/v1/agent/service/register", {"Name": "missed", "ID": "missed-2", "Port": 2})
    eventually(lambda: catalog_ids(h2, "missed") == ["missed-1", "missed-2"], 10, what="on h2")
    # h3 heard nothing while cut off; ask it from inside its own namespace.
    url = f"{h3.http}/v1/catalog/service/missed"
    inside = healthy.hosts.run(
        3,
        sys.executable,
        "-c",
        f"import urllib.request; print(urllib.request.urlopen({url!r}).read())",
    )
    assert inside.returncode == 0 and inside.stdout.strip() == "b'[]'", inside.stderr
    healthy.hosts.restore(3)
    eventually(
        lambda: catalog_ids(h3, "missed") == ["missed-1", "missed-2"],
        HEAL_DEADLINE,
        what="h3 to catch up by anti-entropy",
    )
    for agent, sid in ((h1, "missed-1"), (h2, "missed-2")):
        agent.put(f"/v1/agent/service/deregister/{sid}")


def intention_on(agent: AgentProc, source: str, destination: str) -> str | None:
    """The action of the agent's intention for the pair, None when it holds none."""
    for ixn in agent.get("/v1/connect/intentions"):
        if (ixn["SourceName"], ixn["DestinationName"]) == (source, destination):
            return str(ixn["Action"])
    return None


def test_a_host_cut_off_misses_intention_writes_and_converges_once_back(healthy: Net) -> None:
    h1, h2, h3 = healthy.agents
    exact = "/v1/connect/intentions/exact?source={}&destination=cutoff"
    healthy.hosts.cut(3)  # short: back before serf would even call h3 failed
    h1.put(exact.format("web"), {"Action": "deny"})
    h2.put(exact.format("api"), {"Action": "allow"})
    eventually(lambda: intention_on(h2, "web", "cutoff") == "deny", 5, what="web on h2")
    eventually(lambda: intention_on(h1, "api", "cutoff") == "allow", 5, what="api on h1")
    url = f"{h3.http}/v1/connect/intentions/match?by=destination&name=cutoff"
    inside = healthy.hosts.run(
        3,
        sys.executable,
        "-c",
        f"import urllib.request; print(urllib.request.urlopen({url!r}).read())",
    )
    assert inside.returncode == 0 and inside.stdout.strip() == "b'{\"cutoff\":[]}'", inside
    healthy.hosts.restore(3)
    eventually(
        lambda: (
            (intention_on(h3, "web", "cutoff"), intention_on(h3, "api", "cutoff"))
            == ("deny", "allow")
        ),
        HEAL_DEADLINE,
        what="h3 to catch up with the intentions it missed",
    )
    for source in ("web", "api"):
        http_json(h1.http + exact.format(source), "DELETE")
