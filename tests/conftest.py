from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Real agents on loopback; asserts no serf outlives its agent."""
    c = Cluster(tmp_path)
    yield c
    leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"
