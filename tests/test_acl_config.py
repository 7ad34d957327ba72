"""The `acl:` config section: defaults keep ACLs off; bad values name file and key."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gossamer.agent.config import AgentConfig, ConfigError
from gossamer.agent.config.load import load_agent_config


def load(tmp_path: Path, text: str) -> AgentConfig:
    path = tmp_path / "acl.yaml"
    path.write_text(text)
    args = argparse.Namespace(config_paths=[("file", str(path))], dev=True)
    return load_agent_config(args, hostname="h", host_addresses=["10.0.0.1"])


def test_acls_are_off_unless_enabled(tmp_path: Path) -> None:
    acl = load(tmp_path, "node_meta: {}\n").acl
    assert (acl.enabled, acl.default_policy, acl.down_policy) == (False, "allow", "extend-cache")
    acl = load(
        tmp_path,
        "acl:\n  enabled: true\n  default_policy: deny\n  tokens:\n    initial_management: m\n",
    ).acl
    assert acl.enabled and acl.default_policy == "deny"
    assert acl.tokens.initial_management == "m"


def test_bad_acl_values_are_named_with_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "acl:\n  enabled: yes please\n  down_policy: panic\n")
    text = str(caught.value)
    assert 'acl.yaml: acl.enabled: must be true or false, got "yes please"' in text
    assert "acl.yaml: acl.down_policy:" in text
