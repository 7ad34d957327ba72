"""What a test needs from the machine (a binary, network namespaces): skip locally, fail under CI.

On a developer's machine a test whose binary is missing skips, naming the
Debian package that has it. Under CI (the `CI` environment variable, which
`.ci/run` exports) `scripts/setup.sh test` has installed everything, so a
missing binary, or a machine that cannot do what the test needs, fails the
run instead of hiding the test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

# Debian package that ships each binary, for skip messages and setup.sh.
PACKAGES = {
    "serf": "serf",
    "dnsmasq": "dnsmasq-base",
    "unbound": "unbound",
    "haproxy": "haproxy",
    "dnsperf": "dnsperf",
    "kdig": "knot-dnsutils",
    "dig": "bind9-dnsutils",
    "openssl": "openssl",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "curl": "curl",
}


def in_ci() -> bool:
    """Whether this run is CI's (`.ci/run` exports CI=1)."""
    return bool(os.environ.get("CI"))


def find_binary(name: str) -> str | None:
    """`name` on PATH, or in /usr/sbin and /sbin (not on a non-root PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing_reason(*names: str) -> str | None:
    """Why a test cannot run (naming the binaries and their Debian packages), or None."""
    missing = [n for n in names if find_binary(n) is None]
    if not missing:
        return None
    pkgs = " ".join(PACKAGES.get(n, n) for n in missing)
    return (
        f"{', '.join(missing)} not installed (apt-get install {pkgs}; scripts/setup.sh test does)"
    )


def needs(*binaries: str) -> pytest.MarkDecorator:
    """Skip a test (or a module, as `pytestmark`) whose binaries are missing, except under CI.

    Under CI the test runs and fails where it cannot start the binary.
    """
    reason = missing_reason(*binaries)
    return pytest.mark.skipif(reason is not None and not in_ci(), reason=reason or "")


def require(*binaries: str) -> None:
    """The same from inside a test or fixture: skip locally, fail under CI."""
    reason = missing_reason(*binaries)
    if reason:
        cannot_run(reason)


def cannot_run(reason: str) -> NoReturn:
    """This machine cannot run the test: skip saying why, or fail under CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)
