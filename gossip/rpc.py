"""asyncio client for the RPC port of a `serf agent`.

The agent runs serf as a child and drives it through this client: members,
join/leave, tags, user events, queries, keyring rotation, coordinates, and
long-lived event streams.

Behaviour worth knowing:

* `connect()` makes the first connection (handshake, then auth when a key
  is given) and raises if it fails; it does not retry.
* With `reconnect=True`, a lost connection is re-established in the
  background with backoff (0.1 s doubling to 5 s), redoing handshake and
  auth and re-subscribing open streams and monitors under new Seqs, so their
  iterators keep going. Queries in flight end with SerfConnectionError.
* Calls made while disconnected fail fast with SerfConnectionError rather
  than wait: the caller (a sync loop, an HTTP handler) knows better whether
  to retry, and a fast failure never stacks up waiting requests.
* When the connection drops, every pending call fails at once with
  SerfConnectionError. A call serf does not answer within `timeout` raises
  SerfTimeoutError (a SerfConnectionError and a TimeoutError). Serf refusing
  a request raises SerfRpcError.
* A malformed regex in `members_filtered` makes serf close the connection;
  the call fails with SerfConnectionError (and the client reconnects).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gossamer.gossip import rpc_records as records
from gossamer.gossip.errors import SerfConnectionError, SerfError, SerfRpcError, SerfTimeoutError
from gossamer.gossip.members import Member
from gossamer.gossip.rpc_link import RpcLink
from gossamer.gossip.rpc_records import (
    Coordinate,
    KeyResponse,
    MemberEvent,
    QueryEvent,
    QueryRecord,
    StreamEvent,
    UserEvent,
)
from gossamer.gossip.rpc_stream import Subscription

__all__ = [
    "Coordinate",
    "KeyResponse",
    "MemberEvent",
    "QueryEvent",
    "QueryRecord",
    "SerfConnectionError",
    "SerfError",
    "SerfRpcClient",
    "SerfRpcError",
    "SerfTimeoutError",
    "StreamEvent",
    "Subscription",
    "UserEvent",
]


class SerfRpcClient:
    """Client for one serf agent's RPC address ("host:port").

    `timeout` bounds each call: serf not answering in time raises
    SerfTimeoutError (when connecting, SerfConnectionError).
    """

    def __init__(
        self,
        addr: str,
        auth_key: str | None = None,
        *,
        reconnect: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self._link = RpcLink(addr, auth_key, reconnect, timeout)
        self.addr = addr

    @property
    def connected(self) -> bool:
        """True while a handshaken (and authenticated) connection is up."""
        return self._link.connected

    async def connect(self) -> None:
        """Connect, handshake and authenticate; raise SerfError on failure."""
        await self._link.connect()

    async def close(self) -> None:
        """Disconnect for good: pending calls fail, stream iterators end."""
        await self._link.close()

    async def __aenter__(self) -> SerfRpcClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- one-shot commands -------------------------------------------------

    async def members(self) -> list[Member]:
        return records.members((await self._link.call("members")).body)

    async def members_filtered(
        self,
        tags: Mapping[str, str] | None = None,
        status: str | None = None,
        name: str | None = None,
    ) -> list[Member]:
        """Members whose tags, status and name match these anchored Go regexps."""
        body = {"Tags": dict(tags or {}), "Status": status or "", "Name": name or ""}
        return records.members((await self._link.call("members-filtered", body)).body)

    async def join(self, addrs: Iterable[str] | str, replay: bool = False) -> int:
        """Join the cluster through `addrs`; return how many were contacted.

        With `replay` false, user events from before the join are not replayed.
        If any address fails serf reports an error even when others worked;
        the SerfRpcError's `body` then still holds {"Num": contacted}.
        """
        existing = [addrs] if isinstance(addrs, str) else list(addrs)
        frame = await self._link.call("join", {"Existing": existing, "Replay": replay})
        return records.join_count(frame.body)

    async def leave(self) -> None:
        """Leave gracefully; serf then shuts down and closes the connection."""
        await self._link.call("leave")

    async def force_leave(self, node: str, prune: bool = False) -> None:
        """Mark a failed node left; with `prune`, drop it from the member list."""
        await self._link.call("force-leave", {"Node": node, "Prune": prune})

    async def tags(
        self,
        set_tags: Mapping[str, str] | None = None,
        delete_tags: Iterable[str] | None = None,
    ) -> None:
        """Add or change tags and delete others on the local node."""
        body = {"Tags": dict(set_tags or {}), "DeleteTags": list(delete_tags or [])}
        await self._link.call("tags", body)

    async def event(self, name: str, payload: bytes = b"", coalesce: bool = True) -> None:
        """Fire a user event to the whole cluster."""
        await self._link.call("event", {"Name": name, "Payload": payload, "Coalesce": coalesce})

    async def respond(self, query_id: int, payload: bytes) -> None:
        """Answer a QueryEvent received on one of this client's streams."""
        await self._link.call("respond", {"ID": query_id, "Payload": payload})

    async def install_key(self, key: str) -> KeyResponse:
        return await self._key_op("install-key", {"Key": key})

    async def use_key(self, key: str) -> KeyResponse:
        return await self._key_op("use-key", {"Key": key})

    async def remove_key(self, key: str) -> KeyResponse:
        return await self._key_op("remove-key", {"Key": key})

    async def list_keys(self) -> KeyResponse:
        return await self._key_op("list-keys", None)

    async def stats(self) -> dict[str, dict[str, str]]:
        return records.stats((await self._link.call("stats")).body)

    async def get_coordinate(self, node: str) -> Coordinate | None:
        """The node's network coordinate, or None if serf has none yet."""
        return records.coordinate((await self._link.call("get-coordinate", {"Node": node})).body)

    # -- streams -----------------------------------------------------------

    def stream(self, types: str = "*") -> Subscription[StreamEvent]:
        """Events matching a serf filter, e.g. "member-join,user:deploy" or "*"."""
        return self._link.subscription("stream", {"Type": types}, records.stream_event, True)

    def monitor(self, level: str = "INFO") -> Subscription[str]:
        """Serf's log lines at `level` and above (recent lines are replayed first)."""
        return self._link.subscription("monitor", {"LogLevel": level}, records.log_line, True)

    def query(
        self,
        name: str,
        payload: bytes = b"",
        *,
        filter_nodes: Iterable[str] | None = None,
        filter_tags: Mapping[str, str] | None = None,
        request_ack: bool = False,
        relay_factor: int = 0,
        timeout: float | None = None,
    ) -> Subscription[QueryRecord]:
        """Run a query; yields acks and responses, then a "done" record, then ends.

        `timeout` (seconds) of None lets serf pick its default from cluster size.
        """
        body = {
            "FilterNodes": list(filter_nodes or []),
            "FilterTags": dict(filter_tags or {}),
            "RequestAck": request_ack,
            "RelayFactor": relay_factor,
            "Timeout": round(timeout * 1e9) if timeout else 0,  # Go time.Duration
            "Name": name,
            "Payload": payload,
        }
        return self._link.subscription("query", body, records.query_record, False)

    # -- plumbing ----------------------------------------------------------

    async def _key_op(self, command: str, body: dict[str, Any] | None) -> KeyResponse:
        try:
            return records.key_response((await self._link.call(command, body)).body)
        except SerfRpcError as exc:
            # Per-node messages explain a partial failure; keep them, typed.
            raise SerfRpcError(exc.message, records.key_response(exc.body)) from None
