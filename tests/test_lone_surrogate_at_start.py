"""A lone UTF-16 surrogate escape (`"\\ud800"`) from a config file or the agent's own store.

The HTTP API refuses one in a body (tests/test_lone_surrogate.py). A config
file holding one in a service was accepted, and the agent then failed to
sign its record once it had its certificate; an agent whose store already
held one (stored by an older version) did not start at all. A config file
is now a config error naming file and key (exit 2), and a stored
registration holding one is logged and skipped. A proper escaped pair, which
PyYAML leaves as two surrogates, is joined into the one character it writes.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from gossamer.catalog.store import FILE_NAME as STORE_FILE
from tests.harness.cli import gossamer
from tests.harness.cluster import Cluster
from tests.harness.poll import eventually
from tests.test_config import errors, load, write

BAD_SERVICE = '{"services": [{"name": "web", "port": 80, "tags": ["ok", "\\ud800"]}]}'


def test_a_config_file_with_a_lone_surrogate_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", BAD_SERVICE)
    meta = write(tmp_path, "meta.json", '{"node_meta": {"k": "\\udfff"}}')
    assert errors(["--dev", "--config-file", path, "--config-file", meta]) == [
        f"{path}: services: services[0].tags[1]: a lone surrogate escape is not Unicode",
        f"{meta}: node_meta: node_meta.k: a lone surrogate escape is not Unicode",
    ]


def test_an_escaped_pair_in_a_config_file_is_one_character(tmp_path: Path) -> None:
    text = '{"node_meta": {"k": "\\ud83d\\ude00"}, "services": {"name": "\\ud83d\\ude00"}}'
    config = load(["--dev", "--config-file", write(tmp_path, "pair.json", text)])
    assert config.node_meta == {"k": "\U0001f600"}
    assert json.loads(config.services[0])["name"] == "\U0001f600"


def test_the_agent_exits_2_on_such_a_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", BAD_SERVICE)
    result = gossamer("agent", "--dev", "--config-file", path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert f"config error: {path}: services: services[0].tags[1]: a lone" in result.stderr


def test_a_stored_registration_with_a_lone_surrogate_is_skipped_at_start(
    cluster: Cluster,
) -> None:
    agent = cluster.new_agent("a")
    agent.start()
    eventually(agent.enrolled, 20, what="the agent's certificate")
    agent.put("/v1/agent/service/register", {"Name": "ok", "Port": 81})
    agent.stop()
    # What an older version stored for such a registration (its JSON escapes the surrogate).
    bad_service = {"ID": "bad", "Name": "bad", "Port": 80, "Tags": ["\ud800"]}
    bad_check = {"_standalone": True, "body": {"Name": "\udfff", "TTL": "10s"}}
    with contextlib.closing(sqlite3.connect(agent.data_dir / STORE_FILE)) as db, db:
        db.execute(
            "INSERT INTO services(id, definition) VALUES ('bad', ?)", (json.dumps(bad_service),)
        )
        db.execute(
            "INSERT INTO checks(id, definition) VALUES ('badc', ?)", (json.dumps(bad_check),)
        )
    agent.start()
    log = agent.log_tail(400)
    assert "stored service bad no longer parses, skipped: " in log
    assert "stored check badc no longer parses, skipped: " in log
    assert set(agent.get("/v1/agent/services")) == {"ok"}
    assert agent.get("/v1/agent/checks") == {}
    agent.put("/v1/agent/service/register", {"Name": "next", "Port": 82})
    assert set(agent.get("/v1/agent/services")) == {"ok", "next"}
