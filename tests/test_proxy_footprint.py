"""The proxy process stays lean: no heavy library creeps back into it (issue goal: RSS ≤ 30 MiB).

A running sidecar pair, after traffic went through it both ways, must have
mapped none of the native libraries that made the proxy heavy before: every
one of these packages ships a compiled extension, so /proc/<pid>/maps shows
it whether it was imported at start-up or lazily on a rare path the traffic
took. `cryptography` alone was ~11 MiB of RSS (its wheel carries its own
OpenSSL); the proxy reads certificates with `ssl` and proxy/ca/cert_facts.py.
The import-only check names the module, so a failure says which one came in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.cli import cli_env
from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    healthy_sidecars,
    register_pair,
    roundtrip,
    set_intention,
    sidecar,
    wait_listening,
)

HEAVY = ("cryptography", "aiohttp", "pydantic", "yaml", "rich", "msgpack", "textual")
# what each of HEAVY maps when imported (the compiled parts of their wheels)
NATIVE = ("/cryptography/", "/aiohttp/", "/pydantic_core/", "/yaml/", "/_yaml", "/msgpack/")


def test_the_proxy_modules_import_no_heavy_package_and_nothing_of_the_agent() -> None:
    script = (
        "import sys, gossamer.proxy.__main__\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{HEAVY!r} or m.startswith('gossamer.agent'))))"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=cli_env(), timeout=60, check=True).stdout.split()  # fmt: skip
    assert found == []


# Standard modules the proxy process has no use for, each a few hundred KiB of RSS once
# imported (bench/proxy_rss.py): pathlib, urllib.parse and the ipaddress it imports, tempfile;
# fractions, with decimal and numbers (~0.5 MiB), only nested splitters need (split_targets.py).
LIGHT_ONLY = ("pathlib", "urllib.parse", "ipaddress", "tempfile", "fractions", "decimal")


def test_the_proxy_process_imports_none_of_the_stdlib_it_does_not_use(tmp_path: Path) -> None:
    """Started with -S: in the checkout's editable install, `site` itself imports pathlib and
    urllib.parse (setuptools' finder), which an installed proxy does not; `gossamer` here is a
    link to the checkout, as an installed package is a folder."""
    (tmp_path / "gossamer").symlink_to(Path(__file__).resolve().parent.parent)
    deps = [p for p in sys.path if p.endswith("site-packages")]
    script = (
        f"import sys; sys.path[:0] = {[str(tmp_path), *deps]!r}\n"
        "from gossamer.proxy import native; native.use()\n"
        "import gossamer.proxy.__main__\n"
        f"print(' '.join(m for m in {LIGHT_ONLY!r} if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True,
                         env=cli_env(), timeout=60, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == []


def test_a_serving_sidecar_pair_maps_no_heavy_library(cluster: Cluster, tmp_path: Path) -> None:
    (agent,) = cluster.start(1, prefix="fp")
    db_app = App("127.0.0.1").start()
    up_port = free_port("127.0.0.1")
    db_in, _ = register_pair(agent, db_app.port, up_port)
    set_intention(agent, "web", "db", "allow")
    proxies = [sidecar(agent, tmp_path, "db"), sidecar(agent, tmp_path, "web")]
    try:
        wait_listening(agent.ip, db_in, proxies[0])
        wait_listening("127.0.0.1", up_port, proxies[1])
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        for payload in (b"first", b"resumed"):  # a full handshake, then a resumed session
            eventually(lambda p=payload: roundtrip(("127.0.0.1", up_port), p) == p + b"<eof>",  # type: ignore[misc]
                       20, what="web -> db through the sidecars")  # fmt: skip
        for proxy in proxies:
            assert proxy.proc is not None and proxy.proc.poll() is None
            maps = Path(f"/proc/{proxy.proc.pid}/maps").read_text()
            assert [lib for lib in NATIVE if lib in maps] == [], proxy.args
            # Listeners on IP literals are bound without the resolver (proxy/listen.py): no
            # libuv thread pool (four threads) and no idna codec; one thread in all.
            assert len(list(Path(f"/proc/{proxy.proc.pid}/task").iterdir())) == 1, proxy.args
    finally:
        for proxy in proxies:
            proxy.stop()
        db_app.stop()
