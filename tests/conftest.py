from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import AgentProc, Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Real agents on loopback; asserts no serf outlives its agent."""
    c = Cluster(tmp_path)
    yield c
    leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProc]]:
    """Three joined agents shared by a module's read-mostly tests."""
    c = Cluster(tmp_path_factory.mktemp("trio"))
    try:
        yield c.start(3)
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"
