"""`/v1/agent/members` while the agent's serf is killed and restarted by its supervisor.

Before: for the ~0.8 s until the new serf answered, every members call was
a 500 "serf is not reachable", where Consul's agent answers from memberlist
at all times. Now the agent answers from its member watch's last table
(the same member values serf's answer is made of), marked by
`X-Gossamer-Members-Source: last-seen`, and logs that once.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

from tests.harness.binaries import needs
from tests.harness.cluster import AgentProc, Cluster, pid_alive
from tests.harness.poll import eventually

pytestmark = needs("serf")

SOURCE = "X-Gossamer-Members-Source"


def _ask(agent: AgentProc) -> tuple[int, str, object]:
    """Status, the members-source header, and the body of one members call."""
    try:
        with urllib.request.urlopen(agent.http + "/v1/agent/members", timeout=5) as r:
            return r.status, r.headers.get(SOURCE, ""), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, "", exc.read().decode(errors="replace")


def _shape(body: object) -> list[tuple[str, list[str]]]:
    assert isinstance(body, list)
    return [(m["Name"], sorted(m)) for m in body]


def test_members_are_answered_while_serf_restarts(cluster: Cluster) -> None:
    (agent,) = cluster.start(1)
    eventually(  # the member watch has its table (Peers is read from it)
        lambda: "node1" in agent.get("/v1/agent/self")["Gossamer"]["Identity"]["Peers"],
        10,
        what="node1 in the member table",
    )
    status, source, before = _ask(agent)
    assert (status, source) == (200, "")
    (old_pid,) = agent.serf_pids()
    os.kill(old_pid, signal.SIGKILL)

    answers: list[tuple[int, str, object]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # no pause between calls: the window is under a second
        answers.append(_ask(agent))
        restarted = [p for p in agent.serf_pids() if p != old_pid and pid_alive(p)]
        if restarted and answers[-1][:2] == (200, "") and any(a[1] for a in answers):
            break
    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed[:3]
    remembered = [a for a in answers if a[1] == "last-seen"]
    assert remembered, "no call fell in the restart window"
    assert all(_shape(a[2]) == _shape(before) for a in remembered)  # as serf's own answer
    assert agent.log_tail(200).count("members answered as last seen") == 1
