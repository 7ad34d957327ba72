"""`gossamer check`'s data dir line covers every secret the agent keeps, on a real agent.

With `acl.enable_token_persistence`, the tokens set through
`PUT /v1/agent/token/<type>` are kept in clear in `<data dir>/acl-tokens.json`
(Consul's name; written 0600). Made readable by others (a restore from a
backup, a careless chmod), the check must say so, as it does for keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gossamer.agent.cli.main import main
from tests.harness.cluster import AgentProc, Cluster
from tests.harness.poll import eventually
from tests.test_check_cli import failing

MANAGEMENT = "8a1f3c2e-0000-4000-8000-00000000cafe"
AGENT_TOKEN = "5b2e8d1c-0000-4000-8000-00000000f00d"


@pytest.fixture
def acl_agent(tmp_path: Path) -> Iterator[AgentProc]:
    config = tmp_path / "acl.yaml"
    config.write_text(
        "acl:\n  enabled: true\n  default_policy: deny\n  enable_token_persistence: true\n"
        f"  tokens:\n    initial_management: {MANAGEMENT}\n"
    )
    c = Cluster(tmp_path)
    agent = c.new_agent("sec1", "--config-file", str(config))
    agent.token = MANAGEMENT
    try:
        yield agent.start()
    finally:
        leftovers = c.close()
    assert not leftovers, leftovers


def check(agent: AgentProc, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`gossamer check` of `agent` as its management token, in this process."""
    capsys.readouterr()
    code = main(["check", "--http-addr", agent.http, "--token", MANAGEMENT])
    out, err = capsys.readouterr()
    assert not err, err
    return code, out


def test_persisted_acl_tokens_readable_by_others_fail_the_data_dir_line(
    acl_agent: AgentProc, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = acl_agent.data_dir / "acl-tokens.json"
    acl_agent.put("/v1/agent/token/default", {"Token": AGENT_TOKEN})
    eventually(kept.exists, 10, what="the token persisted")
    assert AGENT_TOKEN in kept.read_text()
    code, out = check(acl_agent, capsys)
    assert "data dir and its permissions" not in failing(out), out
    kept.chmod(0o644)
    code, out = check(acl_agent, capsys)
    assert code == 1 and "data dir and its permissions" in failing(out), out
    assert "acl-tokens.json (0644)" in out, out
    assert f"chmod go-rwx {kept}" in out, out
