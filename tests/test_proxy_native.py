"""The compiled data path (proxy/native.py, scripts/build_native.py): used when fresh, never stale.

A build's manifest is checked against the sources; an edited source sets the
whole build aside (the module would otherwise be shadowed by its stale
extension) and GOSSAMER_NATIVE=0 does so on purpose. A real sidecar started
from this checkout runs the compiled modules: its start-up line says so and
its memory maps hold the shared library. Under CI the build must be there
(`scripts/setup.sh test` makes it); elsewhere that test skips without one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gossamer.proxy import native
from tests.harness.binaries import cannot_run
from tests.harness.cli import cli_env
from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    healthy_sidecars,
    register_pair,
    set_intention,
    sidecar,
    wait_listening,
    web_body,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """native.py pointed at a copy of two sources, one C source, and a build of them."""
    sources = tmp_path / "proxy"
    sources.mkdir()
    for name in ("side", "tally"):
        (sources / f"{name}.py").write_text(f"# {name}\n")
    (sources / "_fast.c").write_text("/* _fast */\n")
    monkeypatch.setattr(native, "COMPILED", ("side", "tally"))
    monkeypatch.setattr(native, "C_SOURCES", ("_fast.c",))
    monkeypatch.setattr(native, "PROXY_DIR", sources)
    monkeypatch.setattr(native, "MANIFEST", tmp_path / "SOURCES")
    monkeypatch.delenv("GOSSAMER_NATIVE", raising=False)
    return sources


def test_a_build_of_the_current_sources_is_fresh(fake_tree: Path) -> None:
    assert native.state() == "absent"
    native.MANIFEST.write_text("\n".join(native.source_lines()) + "\n")
    assert native.state() == "fresh"


def test_an_edited_source_sets_the_build_aside_naming_it(fake_tree: Path) -> None:
    native.MANIFEST.write_text("\n".join(native.source_lines()) + "\n")
    (fake_tree / "tally.py").write_text("# tally, edited\n")
    assert native.state() == "stale: tally changed since the build"


def test_an_edited_c_source_sets_the_build_aside_naming_it(fake_tree: Path) -> None:
    native.MANIFEST.write_text("\n".join(native.source_lines()) + "\n")
    (fake_tree / "_fast.c").write_text("/* _fast, edited */\n")
    assert native.state() == "stale: _fast.c changed since the build"


def test_a_build_for_another_python_or_module_list_is_stale(
    fake_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = native.source_lines()
    native.MANIFEST.write_text("\n".join(["python cpython-310", *lines[1:]]) + "\n")
    assert native.state() == "stale: the Python changed since the build"
    native.MANIFEST.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(native, "COMPILED", ("side",))
    assert native.state() == "stale: the module list changed since the build"


def test_gossamer_native_0_runs_the_python(
    fake_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    native.MANIFEST.write_text("\n".join(native.source_lines()) + "\n")
    monkeypatch.setenv("GOSSAMER_NATIVE", "0")
    assert native.state() == "off"


def test_use_puts_a_fresh_build_first_and_modules_imported_before_it_turn_it_off() -> None:
    """In fresh interpreters: the proxy's own order (use, then imports), and the wrong one."""
    if native.state() != "fresh":
        cannot_run(f"the compiled build is {native.state()} (scripts/build_native.py)")
    script = (
        "from gossamer.proxy import native\n"
        "{early}print(native.use())\n"
        "import gossamer.proxy.http1 as m\n"
        "print(m.__file__)\n"
    )
    run = [sys.executable, "-c"]
    good = subprocess.run([*run, script.format(early="")], capture_output=True, text=True,
                          env=cli_env(), timeout=60, check=True).stdout.split()  # fmt: skip
    assert good[0] == "fresh" and good[1].startswith(str(native.OUT)) and good[1].endswith(".so")
    late = subprocess.run([*run, script.format(early="import gossamer.proxy.side\n")],
                          capture_output=True, text=True, env=cli_env(), timeout=60,
                          check=True).stdout.split()  # fmt: skip
    assert late[0] == "off:" and late[1] == "side" and late[-1].endswith("http1.py")


def test_gossamer_native_dir_points_at_another_build(tmp_path: Path) -> None:
    """What build_native.py's profiling run uses to load the instrumented build."""
    script = "from gossamer.proxy import native\nprint(native.OUT, native.use())\n"
    env = {**cli_env(), "GOSSAMER_NATIVE_DIR": str(tmp_path / "elsewhere")}
    env.pop("GOSSAMER_NATIVE", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=60, check=True).stdout.split()  # fmt: skip
    assert out == [str(tmp_path / "elsewhere"), "absent"]


def test_build_native_refuses_an_unknown_argument_with_its_usage() -> None:
    argv = [sys.executable, "scripts/build_native.py", "--fast"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=cli_env(),
                         timeout=60, check=False)  # fmt: skip
    assert run.returncode == 2 and "usage: build_native.py [--check | --plain]" in run.stderr


def test_a_sidecar_runs_the_compiled_data_path(cluster: Cluster, tmp_path: Path) -> None:
    if native.state() != "fresh":
        cannot_run(f"the compiled build is {native.state()} (scripts/build_native.py)")
    (agent,) = cluster.start(1, prefix="nat")
    db_in, _ = register_pair(agent, 1, free_port("127.0.0.1"))
    set_intention(agent, "web", "db", "allow")
    proxy = sidecar(agent, tmp_path, "db")
    try:
        wait_listening(agent.ip, db_in, proxy)
        eventually(lambda: "running for db" in proxy.log(), 20, what="the start-up line")
        assert "running for db; data path compiled (mypyc)" in proxy.log()
        assert proxy.proc is not None
        maps = Path(f"/proc/{proxy.proc.pid}/maps").read_text()
        assert f"{native.GROUP}__mypyc" in maps
        assert f"{native.H2_GROUP}__mypyc" not in maps  # a TCP sidecar: no HTTP/2 code mapped
        assert "/gossamer/proxy/_heap." in maps  # the heap trimmer's extension (heap.py)
    finally:
        proxy.stop()


def test_only_a_sidecar_meeting_http2_maps_the_http2_library(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The HTTP/2 modules are a library of their own (native.H2_GROUP): web's sidecar, with a
    `grpc` upstream, maps it once a client connects through it, not before."""
    if native.state() != "fresh":
        cannot_run(f"the compiled build is {native.state()} (scripts/build_native.py)")
    (agent,) = cluster.start(1, prefix="nath2")
    app = App("127.0.0.1").start()
    up_port, web_in = free_port("127.0.0.1"), free_port(agent.ip)
    db_in = free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db", "Port": app.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip}},
    })  # fmt: skip
    upstream = {"DestinationName": "db", "LocalBindPort": up_port, "Config": {"protocol": "grpc"}}
    agent.put("/v1/agent/service/register", web_body(agent, web_in, [upstream]))
    set_intention(agent, "web", "db", "allow")
    proxies = [sidecar(agent, tmp_path, "db"), sidecar(agent, tmp_path, "web")]
    try:
        wait_listening(agent.ip, db_in, proxies[0])
        # not wait_listening: a connection to web's upstream port is what loads the library
        eventually(lambda: _listens(up_port), 20, what="web's upstream listener, unconnected")
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 20, what="db's sidecar passing")
        assert proxies[1].proc is not None
        maps = Path(f"/proc/{proxies[1].proc.pid}/maps")
        assert f"{native.GROUP}__mypyc" in maps.read_text()
        assert f"{native.H2_GROUP}__mypyc" not in maps.read_text()
        with socket.create_connection(("127.0.0.1", up_port), timeout=10) as client:
            client.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # h2c's preface
            eventually(lambda: f"{native.H2_GROUP}__mypyc" in maps.read_text(), 10,
                       what="the HTTP/2 library mapped")  # fmt: skip
    finally:
        for proxy in proxies:
            proxy.stop()
        app.stop()


def _listens(port: int) -> bool:
    """Whether something listens on TCP `port` (IPv4), read from the kernel's table: no
    connection made."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A" for row in rows)
