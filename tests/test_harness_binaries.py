"""tests/harness/binaries.py: a missing binary skips a test locally and fails it under CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.binaries import find_binary, missing_reason, needs

ROOT = Path(__file__).resolve().parent.parent
ABSENT = "gossamer-no-such-binary"


def test_missing_reason_names_the_binary_and_its_package() -> None:
    assert find_binary(ABSENT) is None
    assert missing_reason(ABSENT, "sh") == (
        f"{ABSENT} not installed (apt-get install {ABSENT}; scripts/setup.sh test does)"
    )
    assert missing_reason("sh") is None


@pytest.mark.parametrize("ci", ["", "1"])
def test_needs_skips_only_outside_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    mark = needs(ABSENT)
    assert mark.args == (ci == "",)


@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("1", "1 failed")])
def test_require_and_cannot_run_skip_locally_and_fail_under_ci(
    tmp_path: Path, ci: str, outcome: str
) -> None:
    test = tmp_path / "test_needs_absent.py"
    test.write_text(
        "from tests.harness.binaries import require\n\n"
        f"def test_it() -> None:\n    require({ABSENT!r})\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         str(test)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "CI": ci, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert outcome in run.stdout, run.stdout + run.stderr


def test_ci_run_exports_ci_and_runs_the_readme_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "export CI=1" in script
    assert script.strip().endswith("exec ./scripts/test.sh")
    assert "./scripts/test.sh" in (ROOT / "README.md").read_text()
