"""The cluster secret this agent proves membership with, and the sealing keys made from it.

Which secret (README, "Identity"):
- `join_token` set in config: that token (stretched with scrypt, seal.py).
  It wins over the keyring: an operator who set one means it.
- else gossip encryption on (`encrypt`): every key of the gossip keyring,
  as serf lists them cluster-wide (one seal each, so a keyring rotation
  keeps working); the configured key if serf cannot be asked.
- else the fixed "open" secret: anyone who can reach the cluster can enrol.
  The agent logs one warning at start and /v1/agent/self says `Open: true`.

A seal whose secret is not among the current ones (a removed gossip key,
the "open" seal of a cluster that turned encryption on) is dropped by an
agent whose list is `complete`, so a retired secret opens nothing new.

Sealing keys are derived once per (secret, cluster id) and cached: a
token's scrypt costs ~0.1 s, which a renewal loop must not pay each pass.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gossamer.gossip.errors import SerfConnectionError, SerfRpcError
from gossamer.gossip.rpc import KeyResponse
from gossamer.proxy.ca.seal import (
    GOSSIP,
    OPEN,
    TOKEN,
    ClusterSecret,
    SealError,
    SealKey,
    gossip_secret,
    open_secret,
    seal_key,
    token_secret,
)

log = logging.getLogger("gossamer.identity")

OPEN_WARNING = (
    "identity: no gossip encryption and no join_token: the mesh is OPEN, anyone who can "
    "reach an agent can enrol and obtain certificates (set `encrypt` or `join_token`)"
)


def enrolment(join_token: str | None, encrypt: str | None) -> str:
    """How this agent proves it belongs: "join-token", "gossip-keyring" or "open"."""
    if join_token:
        return TOKEN
    if encrypt:
        return GOSSIP
    return OPEN


class ClusterSecrets:
    def __init__(
        self,
        *,
        join_token: str | None,
        encrypt: str | None,
        list_keys: Callable[[], Awaitable[KeyResponse]],
    ) -> None:
        """`join_token` and `encrypt` as configured; `list_keys` asks serf for the keyring."""
        self.kind = enrolment(join_token, encrypt)
        self._token, self._encrypt = join_token, encrypt
        self._list_keys = list_keys
        self._secrets = self._configured()
        # Whether the secrets held are all the cluster's current ones, so seals of
        # others may be dropped: the token (config) always; a keyring once serf listed it.
        self.complete = self.kind != GOSSIP
        self._keys: dict[tuple[ClusterSecret, str], SealKey] = {}

    def _configured(self) -> list[ClusterSecret]:
        if self._token:
            return [token_secret(self._token)]
        if self._encrypt:
            return [gossip_secret(self._encrypt)]
        return [open_secret()]

    async def refresh(self) -> None:
        """Read the gossip keyring again (a no-op for a token or an open cluster)."""
        if self.kind != GOSSIP:
            return
        try:
            keys = sorted((await self._list_keys()).keys or {})
        except (SerfRpcError, SerfConnectionError) as exc:
            log.debug("listing gossip keys for the CA seals failed: %s", exc)
            return
        found = []
        for key in keys:
            try:
                found.append(gossip_secret(key))
            except SealError:
                continue
        if found:
            self._secrets = found
            self.complete = True

    def seal_keys(self, cluster_id: str) -> list[SealKey]:
        """One sealing key per secret held, for the cluster `cluster_id`."""
        out = []
        for secret in self._secrets:
            cached = self._keys.get((secret, cluster_id))
            if cached is None:
                cached = self._keys[(secret, cluster_id)] = seal_key(secret, cluster_id)
            out.append(cached)
        return out
