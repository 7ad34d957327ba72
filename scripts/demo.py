"""scripts/demo.sh: a small mesh on this machine, brought up in one command.

Three hosts, each a network namespace with its own agent (as root; where
namespaces cannot be made, or with --loopback, three agents on 127.x.y.1-3
instead). The demo app (scripts/demo_app.py, shaped like emojivoto): `web`
on host 1, `emoji` on host 2, `voting` on host 3, each behind its sidecar
(`gossamer connect proxy`); web reaches the two backends only through its
upstream listeners. Intentions: `* -> *` deny, `web -> emoji` and
`web -> voting` allow, so the app's two paths work and nothing else does.

Interactive (default): print what to open and what to try, then wait;
Ctrl-C (or SIGTERM) stops every process it started and removes the
namespaces and the data dir. `--check`: bring it up, deny web -> voting,
see the front end degrade (voting unavailable, emoji still there) and the
denial reported at voting's agent and counted by `gossamer stat`, allow it
again, see it recover, tear
down, and exit 0 only if every step held and nothing was left behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from types import FrameType

from scripts.demo_mesh import (
    Demo,
    DemoError,
    bring_up_agents,
    check,
    register_app,
    status,
    teardown,
    wait_for,
)
from tests.harness.netns import netns_available


def guide(demo: Demo) -> str:
    """What to open and what to try, with the commands spelled out for this run."""
    cli = str(Path(sys.executable).parent / "gossamer")
    h1, h3 = demo.agents["web"].http, demo.agents["voting"].http
    at = f" --http-addr {h1}"
    where = "three network namespaces" if demo.hosts else "three loopback agents"
    return "\n".join([
        f"==> gossamer demo up: {where}, web -> emoji + voting, each behind its sidecar",
        f"    web page:     {demo.front}/",
        f"    agents:       web {h1}  emoji {demo.agents['emoji'].http}  voting {h3}",
        f"    terminal UI:  {cli} tui --http-addr {h3}    (x: the denials voting's proxy reports)",
        f"    stats:        {cli} stat --http-addr {h3}    (voting's edges; {h1}: web's)",
        f"    logs:         {demo.root}",
        "",
        "Things to try:",
        f"  1. Deny a backend:  {cli} intention create --replace --deny web voting{at}",
        "     Reload the page: the leaderboard is unavailable, the emoji still show; the TUI's",
        "     denials pane lists web -> voting.",
        f"  2. Allow it again:  {cli} intention create --replace --allow web voting{at}",
        f"  3. Anything else is denied:  {cli} intention check emoji voting{at}",
        "",
        "Ctrl-C stops everything and removes what the demo made.",
    ])  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/demo.sh", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="bring up, deny/allow, tear down")
    p.add_argument("--loopback", action="store_true", help="loopback agents, no namespaces")
    p.add_argument("--port", type=int, default=8080, help="the web front end's port (8080)")
    return p.parse_args(argv)


def preflight(args: argparse.Namespace) -> bool:
    """Whether to use loopback agents; DemoError when the demo cannot start at all."""
    if args.loopback:
        return True
    if os.geteuid() != 0:
        raise DemoError("the demo makes network namespaces and needs root (or use --loopback)")
    ok, why = netns_available()
    if not ok:
        print(f"==> no network namespaces here ({why}): three loopback agents instead")
    return not ok


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell's `&` ignores it
        signal.signal(sig, _interrupt)
    try:
        loopback = preflight(args)
        if loopback and not port_free(args.port):
            raise DemoError(f"port {args.port} is taken: free it or pass --port")
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    demo = Demo(Path(tempfile.mkdtemp(prefix="gossamer-demo-")), args.port)
    code = 0
    try:
        bring_up_agents(demo, loopback)
        register_app(demo)
        if args.check:
            check(demo)
        else:
            wait_for(lambda: status(demo) == {"emoji": True, "voting": True} or None,
                     "the front end to reach both backends")  # fmt: skip
            print(guide(demo), flush=True)
            signal.pause()
    except KeyboardInterrupt:
        print("\n==> stopping (proxies drain, agents leave: a few seconds)", flush=True)
    except DemoError as exc:
        print(f"demo: {exc} (logs: {demo.root})", file=sys.stderr)
        shutil.copytree(demo.root, demo.root.with_name(demo.root.name + "-failed"))
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut teardown short
            signal.signal(sig, signal.SIG_IGN)
        left = teardown(demo)
    if left:
        print(f"demo: left behind: {', '.join(left)}", file=sys.stderr)
        return 1
    print("==> removed everything the demo made" + (": check passed" if args.check and code == 0
                                                    else ""))  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
