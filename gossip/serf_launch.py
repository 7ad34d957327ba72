"""What a serf agent is started with: its settings, its state dir files and its command line.

`SerfSettings` is what gossamer decides about its serf; `write_launch_files`
prepares the state dir and `serf_argv` spells the command that
`process.SerfProcess` spawns. Rules this module keeps:
- the state dir is 0700 and the RPC config 0600: it holds the RPC auth key,
  which serf takes only from a config file (`rpc_auth` has no flag);
- the gossip keyring is seeded from `encrypt` once, then serf owns it (key
  rotation writes it), and it is passed whenever it exists;
- the RPC listener is on loopback only; tags are given sorted, so the
  command line of one configuration is always the same.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gossamer.gossip.keyring import check_keyring, seed_keyring
from gossamer.gossip.serf_output import serf_log_level

log = logging.getLogger("gossamer.serf")

RECONNECT_INTERVAL = "10s"


@dataclass(frozen=True)
class SerfSettings:
    node: str
    bind: str
    port: int
    state_dir: Path  # holds the keyring, the snapshot and the RPC config
    advertise: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    encrypt: str | None = None
    log_level: str = "info"
    rejoin: bool = False
    binary: str = "serf"

    @property
    def keyring_file(self) -> Path:
        return self.state_dir / "local.keyring"


def write_launch_files(settings: SerfSettings, auth_key: str) -> Path:
    """Create the state dir, seed the keyring, write the RPC config; returns its path.

    KeyringFileError for a keyring that holds no keys; OSError when a file cannot be written."""
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    check_keyring(settings.keyring_file)
    if seed_keyring(settings.keyring_file, settings.encrypt):
        log.info("wrote gossip keyring %s", settings.keyring_file)
    rpc_conf = state / "rpc.json"
    fd = os.open(rpc_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(
            {
                "rpc_auth": auth_key,
                # serf tries failed members again every reconnect_interval
                # (30 s by default, and randomly skipped while most peers
                # are alive); 10 s heals a cut link about three times
                # sooner for one TCP connect per failed member per try.
                "reconnect_interval": RECONNECT_INTERVAL,
                # A failed member is reaped (and its catalog record with
                # it) after this long; Consul's default, serf's is 24 h.
                "reconnect_timeout": "72h",
            },
            fh,
        )
    return rpc_conf


def serf_argv(settings: SerfSettings, rpc_port: int, rpc_conf: Path) -> list[str]:
    """The `serf agent` command line for `settings`, its RPC on loopback `rpc_port`."""
    s = settings
    argv = [
        s.binary, "agent",
        f"-node={s.node}",
        f"-bind={_format_addr(s.bind, s.port)}",
        f"-rpc-addr=127.0.0.1:{rpc_port}",
        f"-config-file={rpc_conf}",
        f"-snapshot={s.state_dir / 'snapshot'}",
        f"-log-level={serf_log_level(s.log_level)}",
    ]  # fmt: skip
    if s.advertise:
        argv.append(f"-advertise={_format_addr(s.advertise, s.port)}")
    if s.keyring_file.exists():
        argv.append(f"-keyring-file={s.keyring_file}")
    if s.rejoin:
        argv.append("-rejoin")
    for key, value in sorted(s.tags.items()):
        argv.append(f"-tag={key}={value}")
    return argv


def _format_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
