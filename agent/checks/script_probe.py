"""The script probe: run a check's Args as a process, keep the tail of its output.

Consul's rules: exit 0 is passing, 1 warning, anything else critical; the
output kept is the *last* bytes (a script's verdict is usually at its end).
The script runs in its own session and, at the timeout or when the probe is
cancelled, its whole process group is killed, so a wrapper shell cannot
leave children behind. The pipe is ours, not asyncio's, so waiting for the
process never hangs on a pipe that an escaped grandchild keeps open. Like
every probe it never raises for a failing script: that is a critical result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence

from gossamer.agent.checks.status import DEFAULT_OUTPUT_MAX, ProbeResult, captured_tail
from gossamer.catalog.durations import format_seconds


class _Tail:
    """The last `limit` bytes written, and how many were written in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return captured_tail(bytes(self.data), self.total)


async def _drain(stream: asyncio.StreamReader, sink: _Tail) -> None:
    while chunk := await stream.read(65536):
        sink.write(chunk)


# After a kill, how long the pipe may take to close (a process that left the
# group with setsid would otherwise hold it open forever).
_DRAIN_GRACE_S = 1.0


def _kill_group(pgid: int) -> None:
    """SIGKILL the script's whole process group: its children die with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _pipe_reader(read_fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    return reader, transport


async def _reap(proc: asyncio.subprocess.Process, drain: asyncio.Task[None], kill: bool) -> None:
    """Kill the group if asked, wait for the process, then stop reading."""
    if kill:
        _kill_group(proc.pid)
        await proc.wait()
        # The pipe closes once the group is dead; the grace keeps output
        # written just before the kill, and bounds the wait if a process
        # escaped the group (setsid) and still holds the pipe.
        await asyncio.wait({drain}, timeout=_DRAIN_GRACE_S)
    drain.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drain


async def probe_script(
    args: Sequence[str], *, timeout_s: float = 30.0, max_output: int = DEFAULT_OUTPUT_MAX
) -> ProbeResult:
    """Run `args` (no shell); exit 0 passing, 1 warning, anything else critical.

    stdout and stderr share one pipe, of which the last `max_output` bytes
    are kept. The script runs in its own session, so at the timeout — or
    when the probe is cancelled — its whole process group is killed, not
    just the first process: a wrapper shell cannot leave its children
    behind. The pipe is ours, not asyncio's, so waiting for the process
    never hangs on a pipe that an escaped grandchild keeps open.
    """
    if not args:
        return ProbeResult("critical", "script check has no Args")
    read_fd, write_fd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            start_new_session=True,
        )
    except OSError as exc:
        os.close(read_fd)
        return ProbeResult("critical", f"Failed to invoke {args[0]!r}: {exc}")
    finally:
        os.close(write_fd)
    sink = _Tail(max_output)
    timed_out = await _run_to_end(proc, read_fd, sink, timeout_s)
    return _script_result(proc.returncode, timed_out, timeout_s, sink.text())


async def _run_to_end(
    proc: asyncio.subprocess.Process, read_fd: int, sink: _Tail, timeout_s: float
) -> bool:
    """Read the pipe into `sink` until the script exits; True if it timed out (then killed)."""
    stream, transport = await _pipe_reader(read_fd)
    drain = asyncio.create_task(_drain(stream, sink))
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            # Wait for the pipe too: output written just before exit counts.
            await asyncio.gather(asyncio.shield(drain), proc.wait())
    except TimeoutError:
        timed_out = True
    finally:
        await _reap(proc, drain, kill=timed_out or proc.returncode is None)
        transport.close()
    return timed_out


def _script_result(
    returncode: int | None, timed_out: bool, timeout_s: float, output: str
) -> ProbeResult:
    """Consul's verdict on a script: exit 0 passing, 1 warning, else (or timed out) critical."""
    if timed_out:
        message = f"Timed out ({format_seconds(timeout_s)}) running check"
        return ProbeResult("critical", f"{message}\n\n{output}" if output else message)
    if returncode == 0:
        return ProbeResult("passing", output)
    if returncode == 1:
        return ProbeResult("warning", output)
    return ProbeResult("critical", output)
