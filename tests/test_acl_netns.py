"""`acl.down_policy: deny` on an agent cut off by a real partition (network namespaces).

Two hosts; h2's link is taken down. Its API is then reached from inside its
own namespace (curl there), as a local client on that host would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.binaries import cannot_run, require
from tests.harness.netns import Hosts, cleanup_leftovers, netns_available
from tests.harness.poll import eventually

pytestmark = pytest.mark.netns
MANAGEMENT = "3c7a2d10-8e4b-4f6a-b1d2-9a0e5c7f4b21"


def test_an_agent_cut_off_from_every_peer_follows_down_policy_deny(tmp_path: Path) -> None:
    ok, why = netns_available()
    if not ok:
        cannot_run(why)
    require("curl")
    cleanup_leftovers()
    config = tmp_path / "acl.yaml"
    config.write_text(
        "acl:\n  enabled: true\n  default_policy: deny\n  down_policy: deny\n"
        f"  tokens:\n    initial_management: {MANAGEMENT}\n"
    )
    (tmp_path / "hosts").mkdir()
    hosts = Hosts(2, tmp_path / "hosts")
    try:
        h1 = hosts.agent(1, "--config-file", str(config))
        h1.token = MANAGEMENT
        h1.start()
        h2 = hosts.agent(2, "--config-file", str(config), "--join", h1.serf_addr)
        h2.token = MANAGEMENT
        h2.start()
        rules = 'service "web" { policy = "read" }'
        policy = h1.put("/v1/acl/policy", {"Name": "web", "Rules": rules})
        secret = h1.put("/v1/acl/token", {"Policies": [{"ID": policy["ID"]}]})["SecretID"]

        def status_on_h2(token: str) -> str:
            url = f"http://{h2.ip}:{h2.http_port}/v1/catalog/service/web"
            out = hosts.run(2, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "-H", f"X-Consul-Token: {token}", url)  # fmt: skip
            return out.stdout

        eventually(lambda: status_on_h2(secret) == "200", 15, what="the token to reach h2")
        hosts.cut(2)
        eventually(lambda: status_on_h2(secret) == "403", 30, what="h2 to deny once cut off")
        assert status_on_h2(MANAGEMENT) == "200"  # the configured management token still works
        members = json.loads(
            hosts.run(
                2,
                "curl",
                "-s",
                "-H",
                f"X-Consul-Token: {MANAGEMENT}",
                f"http://{h2.ip}:{h2.http_port}/v1/agent/members",
            ).stdout
        )
        assert {m["Name"]: m["Status"] for m in members}["h1"] != 1  # h1 not alive from h2
        hosts.restore(2)
    finally:
        leftovers = hosts.close()
    assert not leftovers
