"""The previous release's code, to run beside this one: rolling upgrades and rollbacks.

`old_release(tmp)` exports commit `OLD_RELEASE` of this repository with
`git archive` (the checkout and its `.git` are left as they are) into
`tmp/gossamer` and returns the directory to put first on PYTHONPATH, so
`python -m gossamer.agent` there runs that release. Without git history
holding the commit (a shallow clone, a source tarball) the test is skipped
saying so, except under `CI=1`, where CI's full clone must run it.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

OLD_RELEASE = "8fb720d"  # the release before Expose, service-resolver and ExposedPort
REPO = Path(__file__).resolve().parents[2]


def old_release(tmp: Path) -> Path:
    """A directory whose `gossamer` package is the release `OLD_RELEASE` (made once per
    `tmp`)."""
    package = tmp / "gossamer"
    if (package / "agent").is_dir():
        return tmp
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", OLD_RELEASE],
        capture_output=True,
        timeout=60,
    )
    if archive.returncode != 0:
        why = (
            f"no git history holding release {OLD_RELEASE} in {REPO} "
            f"({archive.stderr.decode(errors='replace').strip()[:200]})"
        )
        if os.environ.get("CI"):
            pytest.fail(why + ": CI must run on a full clone")
        pytest.skip(why)
    package.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # (Python 3.12+ warns without a filter)
            tar.extractall(package, filter="data")
        else:  # this repository's own tree: nothing outside it
            tar.extractall(package)
    return tmp


def old_env(path: Path) -> dict[str, str]:
    """This process's environment with `path`'s release first on PYTHONPATH (pure Python:
    a compiled build of this release must not be picked up)."""
    return dict(os.environ, PYTHONPATH=str(path), GOSSAMER_NATIVE="0")
