"""Polling a gRPC path that is coming up (with tests/harness/poll.py's `eventually`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc

T = TypeVar("T")


def unless_unavailable(call: Callable[[], T]) -> T | None:
    """`call()`'s answer, or None for UNAVAILABLE: a sidecar hears of instances a moment after
    its agent reports them passing (its watch answers in its own time), and a call in that
    moment finds none. Any other error is raised (`eventually` would not wait on it)."""
    try:
        return call()
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.UNAVAILABLE:
            return None
        raise
