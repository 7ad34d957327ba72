"""A test-only asyncio shell around H2Splitter (proxy/h2_split.py): a listener that splits
each accepted h2c connection's calls over plain TCP backends, round robin. Not the proxy's
wiring (no mTLS, no catalog, no timers): enough to put real gRPC stacks at both ends of the
pure core, in a thread of its own so a blocking grpcio client can call through it."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable

from gossamer.proxy.h2_split import H2Splitter
from gossamer.proxy.h2_split_calls import Close, CloseClient, Command, Open, ToClient, ToUpstream
from tests.harness.cluster import free_port


class SplitShell:
    def __init__(self, backends: dict[str, int]) -> None:
        self.backends = backends  # key -> port on 127.0.0.1
        self.port = free_port("127.0.0.1")
        self.done: list[tuple[str, int, float]] = []
        self.dials: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> SplitShell:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        turn = itertools.count()

        def choose(exclude: set[str]) -> str | None:  # (the backends as they are now)
            pool = [k for k in sorted(self.backends) if k not in exclude]
            return pool[next(turn) % len(pool)] if pool else None

        split: H2Splitter[str] = H2Splitter(
            choose, clock=asyncio.get_running_loop().time,
            done=lambda key, status, seconds: self.done.append((key, status, seconds)))  # fmt: skip
        ups: dict[str, asyncio.StreamWriter] = {}
        tasks: dict[str, asyncio.Task[None]] = {}

        def run(commands: list[Command[str]]) -> None:
            for command in commands:
                if isinstance(command, ToClient):
                    writer.write(command.data)
                elif isinstance(command, ToUpstream):
                    ups[command.key].write(command.data)
                elif isinstance(command, Open):
                    self.dials.append(command.key)
                    tasks[command.key] = asyncio.create_task(upstream(command.key))
                elif isinstance(command, Close):
                    tasks.pop(command.key).cancel()
                    up = ups.pop(command.key, None)
                    if up is not None:
                        up.close()
                elif isinstance(command, CloseClient):
                    writer.close()

        async def upstream(key: str) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.backends[key]
                )
            except OSError:
                tasks.pop(key, None)
                run(split.open_failed(key))
                return
            ups[key] = up_writer
            run(split.opened(key))
            await pour(up_reader.read, lambda data: run(split.from_upstream(key, data)))
            if tasks.get(key) is asyncio.current_task():
                del tasks[key]
                ups.pop(key).close()
                run(split.upstream_closed(key))

        run(split.start())
        await pour(reader.read, lambda data: run(split.from_client(data)))
        run(split.client_closed())
        for task in tasks.values():
            task.cancel()
        writer.close()


async def pour(read: Callable[[int], object], each: Callable[[bytes], None]) -> None:
    """Each chunk `read` gives to `each`, until EOF or a reset."""
    while True:
        try:
            data = await read(65536)  # type: ignore[misc]
        except ConnectionError:
            return
        if not data:
            return
        each(data)
