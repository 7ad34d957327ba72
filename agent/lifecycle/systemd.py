"""sd_notify without libsystemd: one datagram per state change.

Under systemd with `Type=notify`, `$NOTIFY_SOCKET` names a unix datagram
socket (a leading `@` means the abstract namespace). Anywhere else the
variable is unset and every call is a no-op, so there is no hard dependency.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("gossamer.systemd")


def notify(*fields: str) -> bool:
    """Send `READY=1`, `STATUS=...` and friends; True when a datagram went out."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    address = "\0" + target[1:] if target.startswith("@") else target
    payload = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, address)
    except OSError as exc:
        log.warning("systemd notification to %s failed: %s", target, exc)
        return False
    return True
