"""A tap on the agent's log for `/v1/agent/monitor`: each watcher gets a bounded buffer.

A `logging.Handler` on the `gossamer` logger hands each record, formatted
once per form (text or JSON, as Consul's `logjson`), to every subscriber
whose level it reaches. A subscriber holds at most `limit` lines: a client
that reads slowly loses the newest lines, counted, and is told how many
when it catches up, so a slow reader never grows the agent's memory or
holds up logging. Records logged from other threads are handed over
through the loop. Levels are Consul's words (trace, debug, info, warn,
error); the tap sees what the agent logs at its own level and above.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from gossamer.agent.http.errors import BadRequest

MONITOR_LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO,
                  "warn": logging.WARNING, "error": logging.ERROR}  # fmt: skip
BUFFER_LINES = 512


def monitor_level(word: str) -> int:
    """The level of `?loglevel=`; a 400 naming the valid words otherwise."""
    level = MONITOR_LEVELS.get(word.lower())
    if level is None:
        raise BadRequest(f"Unknown log level: {word!r} (one of {', '.join(MONITOR_LEVELS)})")
    return level


def _stamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z"
    )


def text_line(record: logging.LogRecord) -> str:
    return f"{_stamp(record)} [{record.levelname}] {record.name}: {record.getMessage()}\n"


def json_line(record: logging.LogRecord) -> str:
    entry = {"@level": record.levelname.lower(), "@message": record.getMessage(),
             "@module": record.name, "@timestamp": _stamp(record)}  # fmt: skip
    return json.dumps(entry) + "\n"


class Subscriber:
    """One watcher's buffer: lines waiting to be sent, and how many were dropped."""

    def __init__(self, level: int, as_json: bool, limit: int) -> None:
        self.level, self.as_json, self.limit = level, as_json, limit
        self.lines: deque[str] = deque()
        self.dropped = 0
        self.ready = asyncio.Event()

    def offer(self, line: str) -> None:
        if len(self.lines) >= self.limit:
            self.dropped += 1
        else:
            self.lines.append(line)
        self.ready.set()

    def take(self) -> list[str]:
        """Every line waiting, after a note of how many were dropped since the last take."""
        taken = list(self.lines)
        self.lines.clear()
        self.ready.clear()
        if self.dropped:
            note = f"monitor: {self.dropped} log lines dropped: the client read too slowly\n"
            taken.insert(0, note)
            self.dropped = 0
        return taken


class LogTap(logging.Handler):
    """Fans the agent's log records out to monitor subscribers, on their loop."""

    def __init__(self, limit: int = BUFFER_LINES) -> None:
        super().__init__()
        self.limit = limit
        self._subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped_total = 0

    def emit(self, record: logging.LogRecord) -> None:
        wanted = [s for s in self._subscribers if record.levelno >= s.level]
        if not wanted or self._loop is None:
            return
        forms = {False: text_line(record), True: json_line(record)}
        for sub in wanted:
            self._hand(sub, forms[sub.as_json])

    def _hand(self, sub: Subscriber, line: str) -> None:
        assert self._loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._count(sub, line)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._count, sub, line)

    def _count(self, sub: Subscriber, line: str) -> None:
        before = sub.dropped
        sub.offer(line)
        self.dropped_total += sub.dropped - before

    @contextmanager
    def subscribed(self, level: int, as_json: bool) -> Iterator[Subscriber]:
        self._loop = asyncio.get_running_loop()
        sub = Subscriber(level, as_json, self.limit)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    @property
    def watchers(self) -> int:
        return len(self._subscribers)
