"""A stand-in `systemctl` for replaying the VM walkthrough where systemd is not running.

It reads the unit files the walkthrough copied into /etc/systemd/system and
runs their lines as systemd would, for the handful of verbs the walkthrough
uses: `daemon-reload` (nothing to do), `enable --now` / `start` (run
ExecStart with `%i` filled in, in its own session, with systemd's default
PATH; for `Type=notify` create a `$NOTIFY_SOCKET` and return only once the
service sends READY=1, as `systemctl start` does), `reload` (run
ExecReload with `$MAINPID`), `stop` (KillSignal, then SIGKILL after
TimeoutStopSec), `is-active`. Not emulated: users (`DynamicUser`), limits,
restarts, dependencies, cgroups. The main pid of each unit is kept in
`$SYSTEMCTL_SHIM_STATE/<unit>.pid`.

    python -m tests.harness.systemctl_shim enable --now gossamer-proxy@web
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

UNIT_DIR = Path("/etc/systemd/system")
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT_S = 90.0  # systemd's DefaultTimeoutStartSec


class ShimError(RuntimeError):
    pass


@dataclass(frozen=True)
class Unit:
    name: str  # gossamer-proxy@web
    instance: str  # web
    service: dict[str, str]  # the [Service] section

    def command(self, key: str, mainpid: int | None = None) -> list[str]:
        line = self.service.get(key.lower())
        if line is None:
            raise ShimError(f"{self.name}: no {key}")
        line = line.lstrip("-@:+!").replace("%i", self.instance).replace("%%", "%")
        if mainpid is not None:
            line = line.replace("$MAINPID", str(mainpid))
        return shlex.split(line)

    def seconds(self, key: str, default: float) -> float:
        value = self.service.get(key.lower(), "")
        return float(value.rstrip("s")) if value else default


def load(name: str) -> Unit:
    base, _, instance = name.removesuffix(".service").partition("@")
    path = UNIT_DIR / (f"{base}@.service" if instance else f"{base}.service")
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    if not parser.read(path):
        raise ShimError(f"Unit {name}.service not found.")
    return Unit(name.removesuffix(".service"), instance, dict(parser["Service"]))


def state_dir() -> Path:
    path = Path(os.environ["SYSTEMCTL_SHIM_STATE"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def mainpid(unit: Unit) -> int | None:
    try:
        pid = int((state_dir() / f"{unit.name}.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(unit: Unit) -> None:
    if mainpid(unit) is not None:
        return
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8"}
    notify = None
    if unit.service.get("type", "simple") == "notify":
        sock_path = state_dir() / f"{unit.name}.notify"
        sock_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(sock_path))
        env["NOTIFY_SOCKET"] = str(sock_path)
    log = (state_dir() / f"{unit.name}.log").open("ab")
    proc = subprocess.Popen(unit.command("ExecStart"), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
    (state_dir() / f"{unit.name}.pid").write_text(str(proc.pid))
    if notify is not None:
        with notify:
            _wait_ready(unit, proc, notify)


def _wait_ready(unit: Unit, proc: subprocess.Popen[bytes], notify: socket.socket) -> None:
    deadline = time.monotonic() + unit.seconds("TimeoutStartSec", START_TIMEOUT_S)
    while (left := deadline - time.monotonic()) > 0:
        notify.settimeout(min(left, 0.5))
        try:
            message = notify.recv(4096).decode()
        except TimeoutError:
            if proc.poll() is not None:
                raise ShimError(
                    f"{unit.name}: exited with {proc.returncode} before READY=1"
                ) from None
            continue
        if "READY=1" in message.splitlines():
            return
    proc.kill()
    raise ShimError(f"{unit.name}: no READY=1 within the start timeout")


def stop(unit: Unit) -> None:
    pid = mainpid(unit)
    if pid is None:
        return
    os.kill(pid, signal.Signals[unit.service.get("killsignal", "SIGTERM")])
    deadline = time.monotonic() + unit.seconds("TimeoutStopSec", 90.0)
    while time.monotonic() < deadline:
        if mainpid(unit) is None or _zombie(pid):
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    (state_dir() / f"{unit.name}.pid").unlink(missing_ok=True)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def main(argv: list[str]) -> int:
    verb, *rest = argv
    names = [a for a in rest if not a.startswith("-")]
    try:
        if verb == "daemon-reload":
            return 0
        units = [load(n) for n in names]
        for unit in units:
            if verb in ("start",) or (verb == "enable" and "--now" in rest):
                start(unit)
            elif verb == "stop":
                stop(unit)
            elif verb == "reload":
                pid = mainpid(unit)
                if pid is None:
                    raise ShimError(f"{unit.name} is not active, cannot reload.")
                subprocess.run(unit.command("ExecReload", pid), check=True)
            elif verb == "is-active":
                print("active" if mainpid(unit) else "inactive")
                return 0 if mainpid(unit) else 3
            elif verb != "enable":
                raise ShimError(f"verb {verb!r} is not emulated")
    except ShimError as exc:
        print(f"systemctl (shim): {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
