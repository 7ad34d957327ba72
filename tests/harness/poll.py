"""Waiting for eventually-consistent state: poll with a deadline, never sleep blindly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Timeout(AssertionError):
    pass


def eventually(
    check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call `check` until it returns a truthy value or stops raising AssertionError.

    Returns that value; on timeout raises with the last failure, so the test
    says what it was waiting for.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = None
        except (AssertionError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            detail = f": {last}" if last else ""
            raise Timeout(f"timed out after {timeout}s waiting for {what or check}{detail}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)
