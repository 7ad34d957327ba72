"""No server tier: a token made on one agent works on another; revoked there, refused here."""

from __future__ import annotations

import json
from pathlib import Path

import consul

from tests.harness.cluster import Cluster
from tests.harness.poll import eventually

MANAGEMENT = "5d0c9a1e-7b3f-4e2a-9c61-0f8e2d4b6a13"


def test_token_made_on_a_works_on_b_and_revoked_on_b_is_refused_on_a(
    cluster: Cluster, tmp_path: Path
) -> None:
    config = tmp_path / "acl.yaml"
    config.write_text(
        "acl:\n  enabled: true\n  default_policy: deny\n"
        f"  tokens:\n    initial_management: {MANAGEMENT}\n"
    )
    a, b = cluster.start(2, extra=("--config-file", str(config)), token=MANAGEMENT)
    admin_a = consul.Consul(host=a.ip, port=a.http_port, token=MANAGEMENT)
    rules = json.dumps({"service": {"web": {"policy": "write"}}})
    policy = admin_a.acl.policy.create(name="web", rules=json.loads(rules))
    token = admin_a.acl.token.create(policies_id=[policy["ID"]])
    user_b = consul.Consul(host=b.ip, port=b.http_port, token=token["SecretID"])

    def works_on_b() -> bool:
        try:
            return bool(user_b.agent.service.register("web", port=80))
        except consul.ACLPermissionDenied:
            return False

    eventually(works_on_b, 10, what="the token made on a to work on b")
    admin_b = consul.Consul(host=b.ip, port=b.http_port, token=MANAGEMENT)
    assert admin_b.acl.token.delete(token["AccessorID"])
    user_a = consul.Consul(host=a.ip, port=a.http_port, token=token["SecretID"])

    def refused_on_a() -> bool:
        try:
            user_a.agent.service.register("web", port=80)
        except consul.ACLPermissionDenied as exc:
            return "ACL not found" in str(exc)
        return False

    eventually(refused_on_a, 10, what="the token revoked on b to be refused on a")
