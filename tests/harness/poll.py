"""Waiting for eventually-consistent state: poll with a deadline, never sleep blindly."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

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


@overload
async def eventually_async(
    fn: Callable[[], Awaitable[T]],
    timeout: float = ...,
    interval: float = ...,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...
@overload
async def eventually_async(
    fn: Callable[[], T],
    timeout: float = ...,
    interval: float = ...,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...
async def eventually_async(
    fn: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (AssertionError,),
) -> Any:
    """Call `fn` until it returns something truthy (returned) or the deadline passes.

    Exceptions in `retry_on` count as "not yet"; the last one is re-raised at
    the deadline so the failure says what was still wrong.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = fn()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            last = None
        except retry_on as exc:
            last = exc
        if time.monotonic() >= deadline:
            if last is not None:
                raise last
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
