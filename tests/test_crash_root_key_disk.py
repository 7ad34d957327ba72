"""The cached root key (`identity/root-key.pem`) when the disk refuses to write it.

With the data dir full, `PUT /v1/connect/ca/configuration` (a rotation)
answered 500 "internal error; see the agent log": writing the cache raised
OSError before anything was stored. The file is only a cache (the key is
sealed in the replicated CA state and opened again from there), so a cache
that cannot be written no longer stops a rotation, an enrolment or a
signing; here a directory in its way stands in for the full disk.
"""

from __future__ import annotations

from pathlib import Path

from tests.harness.cluster import Cluster
from tests.harness.poll import eventually


def test_a_rotation_goes_on_when_the_root_key_cache_cannot_be_written(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="rk")
    agent.put("/v1/agent/service/register", {"Name": "web", "Port": 1})
    before = agent.get("/v1/connect/ca/roots")["ActiveRootID"]
    cache = agent.data_dir / "identity" / "root-key.pem"
    cache.unlink(missing_ok=True)
    cache.mkdir()  # it cannot be replaced now, as on a full disk
    assert agent.put(
        "/v1/connect/ca/configuration", {"Provider": "consul", "Config": {}, "ForceRotate": True}
    ) is True  # fmt: skip
    after = agent.get("/v1/connect/ca/roots")["ActiveRootID"]
    assert after != before
    eventually(agent.enrolled, 20, what="the agent's certificate under the new root")
    assert agent.get("/v1/agent/connect/ca/leaf/web")["SerialNumber"]
