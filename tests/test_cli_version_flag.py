"""`gossamer --version`, `-v` and Consul's `-version` print the release, as `consul` does.

Before, only the `version` subcommand did; `gossamer --version` (what a
user checks first after an upgrade) was a usage error, exit 2.
"""

from __future__ import annotations

import pytest

from gossamer.agent.cli.main import main
from gossamer.agent.lifecycle.version import VERSION


@pytest.mark.parametrize("flag", ["--version", "-v", "-version"])
def test_version_flag_prints_the_release(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([flag])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"gossamer {VERSION} (Consul API ")


def test_version_subcommand_says_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith(f"gossamer {VERSION} (Consul API ")
