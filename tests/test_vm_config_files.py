"""The agent config the VM walkthrough writes, loaded as the agent loads it.

Step 3 of vm-examples/README.md copies `10-base.yaml` and writes
`20-host.yaml` (its heredoc, read from the walkthrough itself) into the
config dir. Files are merged as Consul merges them: a later scalar wins, but
lists such as `retry_join` are appended. `10-base.yaml` listed example seeds
(198.18.0.11-13) of its own, so every agent of the walkthrough tried to join
three hosts that do not exist besides the three the host file names (each a
connect timeout on a real network, before the agent reports ready). So the
seeds are in one file only, and what an agent tries is exactly them.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from gossamer.agent.config import add_agent_flags, load_agent_config

EXAMPLES = Path(__file__).resolve().parent.parent / "vm-examples"
WALKTHROUGH = (EXAMPLES / "README.md").read_text()
SEEDS = ["198.18.0.21", "198.18.0.31", "198.18.0.32"]


def _load(config_dir: Path) -> list[str]:
    parser = argparse.ArgumentParser()
    add_agent_flags(parser)
    args = parser.parse_args(["--config-dir", str(config_dir)])
    config = load_agent_config(args, hostname="h", host_addresses=["198.18.0.21"])
    return list(config.retry_join)


def _host_file() -> str:
    """20-host.yaml as step 3's heredoc writes it, with step 2's variables."""
    heredoc = re.search(r"cat > /etc/gossamer.d/20-host.yaml <<EOF\n(.*?)^EOF$", WALKTHROUGH,
                        re.M | re.S)  # fmt: skip
    assert heredoc, "step 3 writes 20-host.yaml"
    seeds = ", ".join(f'"{s}"' for s in SEEDS)
    assert f"SEEDS='{seeds}'" in WALKTHROUGH  # (step 2, as the replay sets it)
    values = {"NODE": "web-01", "BIND": "198.18.0.21", "KEY": "", "SEEDS": seeds}
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], heredoc.group(1)).replace(
        'encrypt: ""\n', ""
    )


def test_the_walkthroughs_agent_joins_only_the_seeds_it_names(tmp_path: Path) -> None:
    (tmp_path / "10-base.yaml").write_text((EXAMPLES / "10-base.yaml").read_text())
    (tmp_path / "20-host.yaml").write_text(_host_file())
    assert _load(tmp_path) == [f"{seed}:8301" for seed in SEEDS]


def test_the_example_host_file_joins_only_its_seeds(tmp_path: Path) -> None:
    (tmp_path / "10-base.yaml").write_text((EXAMPLES / "10-base.yaml").read_text())
    (tmp_path / "20-host.yaml").write_text((EXAMPLES / "20-host.yaml").read_text())
    assert _load(tmp_path) == [f"{seed}:8301" for seed in SEEDS]
