"""A real Prometheus (Debian's `prometheus`) for the metrics tests: started, then queried.

`start` runs it on a free loopback port with the scrape configs given,
scraping every second; `query`, `value_of` and `settles_at` read its HTTP
query API, polling with a deadline since a scrape lands within a second or two.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

from tests.harness.binaries import find_binary
from tests.harness.cluster import free_port, http_json
from tests.harness.poll import eventually


def start(tmp: Path, scrape_configs: list[dict[str, Any]]) -> tuple[subprocess.Popen[bytes], str]:
    """The running server and the base URL of its API; the caller terminates it."""
    config, port = tmp / "prometheus.yml", free_port("127.0.0.1")
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": scrape_configs,
    }))  # fmt: skip
    with (tmp / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen([
            find_binary("prometheus") or "prometheus", f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
        ], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?query={urllib.parse.quote(promql)}"
    try:
        answer = http_json(url)
    except OSError:
        return []  # Prometheus still starting
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def value_of(base: str, promql: str) -> float | None:
    found = query(base, promql)
    return float(found[0]["value"][1]) if len(found) == 1 else None


def settles_at(base: str, promql: str, expected: float) -> None:
    eventually(lambda: value_of(base, promql) == expected, 30,
               what=f"{promql} == {expected} (last {value_of(base, promql)})")  # fmt: skip
