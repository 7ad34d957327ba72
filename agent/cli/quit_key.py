"""The `q` key that ends `gossamer top`, as it ends top, htop and `linkerd viz top`.

On a terminal, stdin is put in cbreak mode while `top` runs: each key arrives
as typed and is not echoed, so a key pressed neither waits for Enter nor
scribbles over the table; the terminal's own settings come back however the
loop ends. Ctrl-C still sends SIGINT (cbreak keeps ISIG). When stdin is not
a terminal (a pipe, /dev/null, a supervisor) no key is read and a wait is a
plain sleep.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator
from typing import TextIO

QUIT_KEYS = b"qQ"

Wait = Callable[[float], bool]  # waits up to that many seconds; True when `q` was pressed


@contextlib.contextmanager
def quit_key(stream: TextIO | None = None) -> Iterator[tuple[Wait, bool]]:
    """(wait, whether keys are read); stdin's terminal settings restored on the way out."""
    fd = _terminal_fd(sys.stdin if stream is None else stream)
    if fd is None:
        yield _sleep, False
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    before = _on_continue(fd)
    try:
        yield (lambda seconds: _wait(fd, seconds)), True
    finally:
        if before is not None:
            signal.signal(signal.SIGCONT, before)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _on_continue(fd: int) -> signal._HANDLER | None:
    """After Ctrl-Z the shell takes the terminal back in its own mode, and `fg` does not give
    ours back: `q` then waited for Enter. SIGCONT sets cbreak again (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def again(_signum: int, _frame: object) -> None:
        if _terminal_fd_of(fd) is not None:  # continued in the foreground, not with `bg`
            tty.setcbreak(fd)

    return signal.signal(signal.SIGCONT, again)


def _terminal_fd(stream: TextIO) -> int | None:
    """stdin's fd when it is the terminal this process group has in the foreground. A job
    in the background (`gossamer top > log &`) that set the terminal's mode would be
    stopped by SIGTTOU (and reading it, by SIGTTIN): it leaves the terminal alone."""
    try:
        return _terminal_fd_of(stream.fileno())
    except (AttributeError, ValueError, OSError):  # closed, or replaced (pytest's capture)
        return None


def _terminal_fd_of(fd: int) -> int | None:
    try:
        return fd if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp() else None
    except OSError:  # a terminal that is not this process's controlling one
        return None


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def _wait(fd: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return False
        keys = os.read(fd, 64)
        if not keys or any(k in QUIT_KEYS for k in keys):  # b"": the terminal hung up
            return True
    return False
