"""`PUT /v1/agent/token/<type>` with `acl.enable_token_persistence` when acl-tokens.json
cannot be written (a full or read-only disk; here a directory stands in its way).

The token was rightly not set, but the answer was 500 "internal error; see the
agent log" (an OSError out of the file write); now the 500 says what was not
stored and why, as Consul's error does.
"""

from __future__ import annotations

from pathlib import Path

from tests.harness.cluster import Cluster
from tests.test_acl_http import MANAGEMENT, call


def test_a_token_that_cannot_be_kept_is_refused_saying_why(tmp_path: Path) -> None:
    config = tmp_path / "acl.yaml"
    config.write_text(
        "acl:\n  enabled: true\n  default_policy: deny\n  enable_token_persistence: true\n"
        f"  tokens:\n    initial_management: {MANAGEMENT}\n"
    )
    c = Cluster(tmp_path)
    agent = c.new_agent("tokdisk", "--config-file", str(config))
    agent.token = MANAGEMENT
    (agent.data_dir / "acl-tokens.json").mkdir(parents=True)  # the file cannot be replaced
    try:
        agent.start()
        status, text, _ = call(agent, "PUT", "/v1/agent/token/default", {"Token": MANAGEMENT},
                               token=MANAGEMENT)  # fmt: skip
        assert status == 500
        assert text.startswith("not stored: ") and "acl-tokens.json" in text, text
        status, text, _ = call(agent, "GET", "/v1/acl/tokens")  # no token: still anonymous
        assert status == 403, text
    finally:
        assert not c.close()
