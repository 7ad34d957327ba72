"""A sidecar's leaf while its agent is away: the sidecar says when the leaf is overdue for
renewal and when it has expired, and stops saying so once a new leaf comes.

In-process: the proxy's real `IdentityWatch` fed leaves of a test mesh (proxy_pki.py)
that have two seconds to live, as the agent's answers would bring them; the log is the subject.
The walk with a real agent (a 10 s leaf, the agent SIGKILLed past it) is in
test_agent_outage_walk.py.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from gossamer.proxy.identity_watch import IdentityWatch
from tests.harness.poll import eventually_async
from tests.proxy_pki import Pki


def _short_lived(pki: Pki) -> dict[str, str]:
    """A leaf with two seconds to live (the mesh signs 1 h at least: one signed 1 h ago),
    long past 75 % of its life."""
    pki.now = datetime.now(UTC) - timedelta(hours=1) + timedelta(seconds=2)
    try:
        return pki.leaf_json("db", ttl=timedelta(hours=1))
    finally:
        pki.now = datetime.now(UTC)


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "the leaf for db" in r.getMessage()]


async def test_a_leaf_not_renewed_is_said_overdue_then_expired(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by the walk: the agent SIGKILLed past a leaf's life, the sidecar whose leaf
    expired said nothing (only its peers' handshake errors told, on other hosts). Now it
    warns at 75 % of the leaf's life (the agent renews by 60 %; this one is past that when
    it comes) and errs at its expiry."""
    pki = Pki()
    watch = IdentityWatch("db", lambda: 0)
    with caplog.at_level(logging.INFO, logger="gossamer.proxy"):
        watch.on_roots(pki.roots_json())
        watch.on_leaf(_short_lived(pki))
        await eventually_async(lambda: len(_said(caplog)) == 2, timeout=10)
    overdue, expired = _said(caplog)
    assert "is overdue for renewal" in overdue and "is the agent away?" in overdue
    assert "expired at" in expired and "peers refuse new connections" in expired
    levels = [r.levelname for r in caplog.records if "the leaf for db" in r.getMessage()]
    assert levels == ["WARNING", "ERROR"]


async def test_a_renewed_leaf_is_not_said_overdue(caplog: pytest.LogCaptureFixture) -> None:
    """A new leaf before the old one was overdue: nothing said about the old one."""
    pki = Pki()
    watch = IdentityWatch("db", lambda: 0)
    with caplog.at_level(logging.INFO, logger="gossamer.proxy"):
        watch.on_roots(pki.roots_json())
        watch.on_leaf(_short_lived(pki))
        watch.on_leaf(pki.leaf_json("db", ttl=timedelta(hours=1)))  # a renewed one
        await asyncio.sleep(2.5)  # the absence itself: past the first leaf's expiry
    assert _said(caplog) == []
