"""The running agent: wires data dir, listeners, serf, HTTP and joins together.

Start order is chosen so that every failure that a person must fix (data dir
in use, port taken, serf cannot bind, name taken, join impossible) happens
before the agent reports ready, with one clear line and exit code 1.
Shutdown order is the reverse: stop answering, leave the ring (so peers see
`left`, not `failed`), stop serf, release the data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from gossamer.agent.config import AgentConfig, ConfigError, diff_configs
from gossamer.agent.config.registrations import decoded
from gossamer.agent.dns.frontend import DnsFrontend
from gossamer.agent.http.app import make_app
from gossamer.agent.http.intention_access import IntentionsAccess, default_allow
from gossamer.agent.lifecycle import systemd
from gossamer.agent.lifecycle.datadir import DataDir, DataDirError
from gossamer.agent.lifecycle.describe import banner, self_info, status_line
from gossamer.agent.lifecycle.listeners import ListenError, bind_socket
from gossamer.agent.lifecycle.logs import setup_logging
from gossamer.agent.lifecycle.reload import added_joins, apply_reloadable
from gossamer.agent.lifecycle.version import VERSION
from gossamer.agent.local.external_nodes import ExternalNodes
from gossamer.agent.local.node import LocalNode, NodeIdentity
from gossamer.agent.local.reaper import reap_forever
from gossamer.agent.replicated.intention_entries import MAP_NAME as INTENTIONS_MAP
from gossamer.agent.replicated.intention_store import IntentionStore
from gossamer.agent.sync.replicator import Replicator
from gossamer.agent.sync.server import PeerRpcServer
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Service
from gossamer.catalog.store import FILE_NAME as STORE_FILE
from gossamer.catalog.store import CatalogStore, StoreError
from gossamer.gossip.addresses import format_host_port
from gossamer.gossip.joining import JoinError, join_once, join_targets, retry_join
from gossamer.gossip.member_watch import MemberWatch
from gossamer.gossip.members import Member
from gossamer.gossip.process import SerfFatalError, SerfProcess
from gossamer.gossip.rpc import SerfError, SerfRpcClient
from gossamer.gossip.serf_launch import SerfSettings
from gossamer.gossip.tags import TAG_RECORD_VERSION, own_tags

log = logging.getLogger("gossamer.agent")

HTTP_SHUTDOWN_TIMEOUT = 3.0  # seconds in-flight requests get when the agent stops
REJOIN_ATTEMPTS = 8  # after a serf restart; then gossip from peers must find us
EXIT_OK = 0
EXIT_FAILURE = 1


# Faults a person must fix; each is reported as one line and exit code 1.
_STARTUP_ERRORS = (StoreError, DataDirError, ListenError, SerfFatalError, JoinError)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Agent:
    def __init__(self, config: AgentConfig, reload_config: Callable[[], AgentConfig]) -> None:
        self.config = config
        self._reload_config = reload_config
        self._data_dir: DataDir | None = None
        self._temp_dir: Path | None = None
        self._serf_process: SerfProcess | None = None
        self._runner: web.AppRunner | None = None
        self._peer_rpc: PeerRpcServer | None = None
        self._replicator: Replicator | None = None
        self._dns: DnsFrontend | None = None
        self._store: CatalogStore | None = None
        self._local: LocalNode | None = None
        self._external: ExternalNodes | None = None
        self.catalog: LiveCatalog | None = None
        self.intentions: IntentionStore | None = None
        self._record_version = 0
        self._published_version = 0
        self._tag_task: asyncio.Task[Any] | None = None
        self._members: MemberWatch | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._retry_task: asyncio.Task[Any] | None = None
        self._shutdown = asyncio.Event()
        self._leave_on_shutdown = config.leave_on_terminate
        self._exit_code = EXIT_OK
        self.node_id = ""
        self.ready = False
        self.started_at = time.monotonic()

    # -- what the HTTP handlers see (AgentApi) ---------------------------------

    @property
    def serf(self) -> SerfRpcClient:
        assert self._serf_process is not None
        return self._serf_process.client

    @property
    def node_name(self) -> str:
        return self.config.node

    @property
    def advertise_address(self) -> str:
        return self.config.advertise

    @property
    def rpc_address(self) -> str:
        return format_host_port(self.advertise_address, self.config.rpc_port)

    def self_info(self) -> dict[str, Any]:
        data_dir = str(self._data_dir.path) if self._data_dir else ""
        parked = self.catalog.watchers if self.catalog is not None else 0
        return self_info(
            self.config,
            node_id=self.node_id,
            ready=self.ready,
            data_dir=data_dir,
            blocking_queries=parked,
        )

    async def reload(self) -> list[str]:
        systemd.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = self._reload_config()
        except ConfigError:
            systemd.notify("READY=1", "STATUS=reload rejected: invalid configuration")
            raise
        changes = diff_configs(self.config, new)
        old, self.config = self.config, apply_reloadable(self.config, new)
        setup_logging(self.config.log_level, self.config.log_json)
        for line in changes or ["no changes"]:
            log.info("reload: %s", line)
        self._apply_joins(old)
        if (old.services, old.checks) != (self.config.services, self.config.checks):
            self._apply_config_registrations()
        systemd.notify("READY=1", f"STATUS={status_line(self.config)}")
        return changes

    def _apply_joins(self, old: AgentConfig) -> None:
        c = self.config
        if added := added_joins(old, c):
            self._spawn(self._join_in_background(added), "reload-join")
        if (c.retry_join, c.retry_interval, c.retry_max) != (
            old.retry_join,
            old.retry_interval,
            old.retry_max,
        ) and c.retry_join:
            if self._retry_task is not None:
                self._retry_task.cancel()
            self._retry_task = self._spawn(self._retry_join(), "retry-join")

    async def _join_in_background(self, addresses: list[str]) -> None:
        try:
            await join_once(self.serf, join_targets(addresses, self.config.serf_port))
        except JoinError as exc:
            log.warning("%s", exc)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(task)
        return task

    def request_shutdown(self, *, leave: bool) -> None:
        self._leave_on_shutdown = leave
        self._shutdown.set()

    def fail(self, message: str) -> None:
        """A fault after start-up that ends the agent (e.g. serf's name conflict)."""
        log.error("%s", message)
        self._exit_code = EXIT_FAILURE
        self._leave_on_shutdown = False
        self._shutdown.set()

    # -- lifecycle --------------------------------------------------------------

    async def run(self) -> int:
        """Start, serve until a signal or a fatal fault, stop; returns the exit code.

        Signals are handled from the first moment, so a SIGTERM while a
        retry-join is still waiting stops the agent cleanly too.
        """
        self._install_signal_handlers()
        starting = asyncio.create_task(self._start(), name="start")
        stopping = asyncio.create_task(self._shutdown.wait(), name="shutdown")
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_STARTUP_ERRORS):
                await starting
        elif (exc := starting.exception()) is not None:
            stopping.cancel()
            if not isinstance(exc, _STARTUP_ERRORS):
                raise exc
            log.error("%s", exc)
            await self._stop(leave=False)
            return EXIT_FAILURE
        await stopping
        systemd.notify("STOPPING=1", "STATUS=leaving the cluster")
        await self._stop(leave=self._leave_on_shutdown)
        return self._exit_code

    async def _start(self) -> None:
        c = self.config
        self._open_data_dir()
        http_sock = bind_socket("the HTTP API", c.client, c.http_port)
        dns_udp = bind_socket("DNS (udp)", c.client, c.dns_port, socket.SOCK_DGRAM)
        dns_tcp = bind_socket("DNS (tcp)", c.client, c.dns_port)
        rpc_sock = bind_socket("agent RPC", c.bind, c.rpc_port)
        self._open_catalog()
        self._serf_process = SerfProcess(
            self._serf_settings(), on_fatal=self._serf_fatal, on_restart=self._serf_restarted
        )
        await self._serf_process.start()
        assert self.catalog is not None
        assert self.intentions is not None
        replicas = {INTENTIONS_MAP: self.intentions}
        self._replicator = Replicator(
            self.catalog, self_origin=c.node, peers=self._peers, rng=random.Random(),
            replicas=replicas,
        )  # fmt: skip
        self.intentions.announce = partial(self._replicator.spread, INTENTIONS_MAP)
        self._members = MemberWatch(
            self.serf,
            on_event=self._replicator.on_member_event,
            on_resync=self._replicator.reconcile,
        )
        await self._members.resync()
        self._spawn(self._members.run(), "members")
        # Sockets were bound above so a taken port fails before serf starts;
        # they answer from here on, when there is a serf to ask.
        await self._serve_http(http_sock)
        self._peer_rpc = PeerRpcServer(self.catalog, self_origin=c.node, replicas=replicas)
        await self._peer_rpc.start(rpc_sock)
        self._spawn(self._replicator.run(), "replication")
        self._spawn(reap_forever(self.local_node), "reaper")
        self._spawn(self.intentions.collect_forever(), "intention-gc")
        self._dns = DnsFrontend(
            c, self.catalog, node=c.node, coordinate=lambda node: self.serf.get_coordinate(node)
        )
        await self._dns.start(dns_udp, dns_tcp)
        await self._join()
        self.ready = True
        systemd.notify("READY=1", f"STATUS={status_line(self.config)}")
        log.info("agent ready: %s", status_line(self.config))
        print(banner(self.config, self.node_id), flush=True)

    def _open_catalog(self) -> None:
        """The store, the merged catalog and this node's own record, before serf starts.

        The node's record version goes into serf's start-up tags, so peers
        that see this agent join already know which record to pull.
        """
        c = self.config
        assert self._data_dir is not None
        self._store = CatalogStore.open(self._data_dir.path / STORE_FILE)
        self.catalog = LiveCatalog(c.datacenter, self._store, wall_ms=wall_ms)
        agent_service = Service(id="consul", name="consul", port=c.rpc_port)
        identity = NodeIdentity(
            node=c.node, node_id=self.node_id, datacenter=c.datacenter,
            address=self.advertise_address, meta=dict(c.node_meta),
            builtin_services=(agent_service,),
        )  # fmt: skip
        self._local = LocalNode(
            identity,
            self._store,
            self.catalog,
            wall_ms=wall_ms,
            on_version=self._record_published,
            allow_script_checks=c.enable_script_checks,
            allow_local_script_checks=c.enable_local_script_checks,
        )
        self._local.restore()
        self._apply_config_registrations()
        self.intentions = IntentionStore(
            self._store, node=c.node, wall_ms=wall_ms, notify=self.catalog.touch
        )
        self._external = ExternalNodes(
            self.catalog, owner=c.node, wall_ms=wall_ms, is_member=self._is_cluster_member
        )

    def _is_cluster_member(self, name: str) -> bool:
        """A gossip member owns its record: the catalog API may not write it."""
        member = self._members.table.get(name) if self._members is not None else None
        return member is not None and member.status != "left"

    def _apply_config_registrations(self) -> None:
        assert self._local is not None
        problems = self._local.apply_config(
            decoded(self.config.services), decoded(self.config.checks)
        )
        for problem in problems:
            log.error("config registration not applied: %s", problem)

    @property
    def local_node(self) -> LocalNode:
        assert self._local is not None
        return self._local

    def _record_published(self, version: int) -> None:
        """Our record changed: tell peers through the `cv` serf tag (once serf runs)."""
        self._record_version = version
        if self._serf_process is None or self._serf_process.pid is None:
            return
        if self._tag_task is None or self._tag_task.done():
            self._tag_task = self._spawn(self._publish_version_tag(), "cv-tag")

    async def _publish_version_tag(self) -> None:
        """One tag update in flight at a time, always the latest version.

        Serf takes ~0.6 s per tag update (it waits for the broadcast), so a
        burst of registrations must not queue one update each: the burst
        would delay every later serf call, a graceful leave included.
        """
        while self._published_version != self._record_version:
            version = self._record_version
            try:
                await self.serf.tags(set_tags={TAG_RECORD_VERSION: str(version)})
            except SerfError as exc:
                log.warning("could not publish record version %d in serf tags: %s", version, exc)
                return
            self._published_version = version

    def _open_data_dir(self) -> None:
        c = self.config
        if c.data_dir is not None:
            path = Path(c.data_dir)
        else:  # dev mode: a scratch dir that _stop removes
            path = self._temp_dir = Path(tempfile.mkdtemp(prefix="gossamer-dev-"))
        self._data_dir = DataDir(path)
        self._data_dir.open()
        self.node_id = self._data_dir.node_id()
        log.info("node %s (id %s), data dir %s", c.node, self.node_id, self._data_dir.path)

    async def _serve_http(self, sock: socket.socket) -> None:
        assert self.catalog is not None
        self._runner = web.AppRunner(
            make_app(self, self.catalog, self._external, self._intentions_access()),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT,
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def _intentions_access(self) -> IntentionsAccess:
        assert self.intentions is not None
        return IntentionsAccess(self.intentions, lambda: default_allow(self.config))

    def _serf_settings(self) -> SerfSettings:
        c = self.config
        assert self._data_dir is not None
        return SerfSettings(
            node=c.node,
            bind=c.bind,
            port=c.serf_port,
            advertise=c.advertise,
            state_dir=self._data_dir.serf_dir,
            tags=own_tags(
                datacenter=c.datacenter, node_id=self.node_id, rpc_port=c.rpc_port, version=VERSION
            )
            | {TAG_RECORD_VERSION: str(self._record_version)},
            encrypt=c.encrypt,
            log_level=c.log_level,
            rejoin=c.rejoin_after_leave,
        )

    def _peers(self) -> list[Member]:
        return list(self._members.table.values()) if self._members is not None else []

    def _serf_fatal(self, exc: SerfFatalError) -> None:
        self.fail(str(exc))

    def _serf_restarted(self) -> None:
        """Rejoin the peers known before serf died, plus the configured joins."""
        c = self.config
        table = self._members.table if self._members is not None else {}
        peers = [
            format_host_port(m.addr, m.port)
            for m in table.values()
            if m.name != c.node and m.status == "alive"
        ]
        targets = list(dict.fromkeys(peers + join_targets([*c.join, *c.retry_join], c.serf_port)))
        if targets:
            self._spawn(self._rejoin(targets), "rejoin")

    async def _rejoin(self, targets: list[str]) -> None:
        try:
            await retry_join(
                self.serf,
                targets,
                cap=self.config.retry_interval.total_seconds(),
                max_attempts=REJOIN_ATTEMPTS,
            )
        except JoinError as exc:
            log.warning("rejoin after serf restart failed: %s", exc)

    async def _join(self) -> None:
        c = self.config
        if c.join:
            await join_once(self.serf, join_targets(c.join, c.serf_port))
            log.info("joined %s", ", ".join(c.join))
        if c.retry_join:
            systemd.notify(f"STATUS=joining {', '.join(c.retry_join)}")
            await self._retry_join()

    async def _retry_join(self) -> None:
        c = self.config
        await retry_join(
            self.serf,
            join_targets(c.retry_join, c.serf_port),
            cap=c.retry_interval.total_seconds(),
            max_attempts=c.retry_max,
        )

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_shutdown_signal, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.request_shutdown_signal, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def request_shutdown_signal(self, name: str) -> None:
        if self._shutdown.is_set():
            return
        log.info("%s received: leaving the cluster and stopping", name)
        self.request_shutdown(leave=self.config.leave_on_terminate)

    def _on_sighup(self) -> None:
        self._spawn(self._reload_logged(), "reload")

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except ConfigError as exc:
            log.error("reload rejected; keeping the running configuration:\n%s", exc)

    async def _stop(self, *, leave: bool) -> None:
        for task in self._tasks:
            task.cancel()
        if self.catalog is not None:
            self.catalog.release_all()  # parked blocking queries would hold up the shutdown
        if self._runner is not None:
            await self._runner.cleanup()
        if self._replicator is not None:
            self._replicator.stop()
        if self._peer_rpc is not None:
            self._peer_rpc.close()
            await self._peer_rpc.wait_closed()
        if self._dns is not None:
            self._dns.close()
        if self._local is not None:
            await self._local.stop()
        if self._serf_process is not None:
            await self._serf_process.stop(leave=leave)
            if leave:
                log.info("left the cluster")
        if self._store is not None:
            self._store.close()
        if self._data_dir is not None:
            self._data_dir.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
