"""Where a sidecar's metrics listener is (config_metrics.metrics_addr): a table. Pure.

A bare `:PORT` means 127.0.0.1; anything else is read as `ADDR:PORT` by the proxy's one
host:port check, and an error names what was written, never a value made from it (before,
`::1:9102` was taken for `:PORT` and refused as "'127.0.0.1::1' is not an IP address").
"""

from __future__ import annotations

import pytest

from gossamer.proxy.config import ConfigError
from gossamer.proxy.config_metrics import metrics_addr


@pytest.mark.parametrize(("text", "addr"), [
    (":9102", "127.0.0.1:9102"),
    ("0.0.0.0:9102", "0.0.0.0:9102"),
    ("10.0.0.5:9102", "10.0.0.5:9102"),
    ("[::1]:9102", "[::1]:9102"),
    ("::1:9102", "[::1]:9102"),
    ("[::]:9102", "[::]:9102"),
    ("localhost:9102", "localhost:9102"),
])  # fmt: skip
def test_an_address_is_read(text: str, addr: str) -> None:
    assert metrics_addr(text, "--metrics-addr") == addr


@pytest.mark.parametrize("text", [":0", ":65536", ":abc", "no-port", "127.0.0.1:", "::9102"])
def test_a_bad_address_names_the_flag_and_not_a_made_up_value(text: str) -> None:
    with pytest.raises(ConfigError) as bad:
        metrics_addr(text, "--metrics-addr")
    assert bad.value.where == "--metrics-addr" and "127.0.0.1" not in str(bad.value)
