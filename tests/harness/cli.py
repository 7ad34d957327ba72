"""Run the `gossamer` CLI as a user would: a subprocess, its exit code, stdout and stderr.

Every CLI test goes through `gossamer()`, so all of them see the same
environment: no `*_HTTP_ADDR` inherited from the shell running the tests
(each test names its agent, or sets the variable itself through `env`), no
colour unless asked for (`color=True` forces it, whatever NO_COLOR or
FORCE_COLOR say outside), and a wide terminal so rich never wraps a table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

DOWN = "127.0.0.1:1"  # an agent address where nothing listens
TIMEOUT = 60.0


def cli_env(color: bool = False, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment, made predictable for the CLI; `env` added last."""
    out = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_HTTP_ADDR", "_HTTP_TOKEN", "_HTTP_TOKEN_FILE"))
    }
    out.pop("NO_COLOR", None)
    out.pop("FORCE_COLOR", None)
    out["COLUMNS"] = "250"  # rich wraps tables to the terminal width
    if color:
        out["FORCE_COLOR"] = "1"
    out.update(env or {})
    return out


def gossamer(
    *args: str, env: Mapping[str, str] | None = None, color: bool = False, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """`gossamer ARGS` (the installed package's entry point) with the output captured.

    `gossamer agent ...` too, for an agent expected to exit (a long-running
    one is tests/harness/cluster.py's AgentProc).
    """
    return subprocess.run(
        [sys.executable, "-m", "gossamer.agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(color, env),
        stdin=subprocess.DEVNULL,
    )


def expect(*args: str, code: int = 0, env: Mapping[str, str] | None = None) -> str:
    """`gossamer ARGS`, asserting its exit code; stdout then stderr."""
    result = gossamer(*args, env=env)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result.stdout + result.stderr


def ok(*args: str) -> str:
    """`gossamer ARGS`, asserting it succeeds; its stdout."""
    result = gossamer(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line of stderr (argparse's usage lines aside), asserting the exit code."""
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("usage:")]
    assert len(lines) == 1, result.stderr
    return lines[0]
