"""Whether the data path runs compiled: the proxy modules mypyc built from this checkout.

`scripts/build_native.py` compiles the modules named in `COMPILED` (the
same typed source, checked by mypy --strict) into C extensions under
`build/native/`, with a manifest of each source's SHA-256. The proxy
process calls `use()` first thing (`__main__.py`, before any data-path
module is imported): it puts that directory in front of the package's path
when every listed source still matches its manifest line, so `import
gossamer.proxy.http1` loads the extension; otherwise the modules run as
Python, as they always can. Other processes (the agent, the tests that
import these modules directly) run them as Python. A source edited since
the build is never shadowed by its stale extension: the whole build is set
aside and one line on stderr says so. `GOSSAMER_NATIVE=0` sets it aside on purpose
(to compare, or to debug with Python tracebacks).
"""

from __future__ import annotations

import hashlib
import os
import sys

# The data path, per request and per byte (bench/http_path.py, proxy_pair.py). Left out: the
# control plane (watches, config, identity: per change, not per request).
COMPILED = (
    "balance", "dial", "edge_metrics", "h2_app", "h2_app_blocks", "h2_balanced",
    "h2_balanced_guard", "h2_balanced_replay", "h2_calls", "h2_client", "h2_split",
    "h2_split_calls", "h2_split_core", "h2_split_flow", "h2_split_peer", "h2_split_routed",
    "h2_split_timed", "h2_split_upstream", "h2_split_wire",
    "h2_cut", "h2_deadlines", "h2_fields", "h2_follow", "h2_followed", "h2_frames",
    "h2_gate", "h2_relay", "h2_table_sizes", "h2_timer", "hpack_reader", "http1",
    "http_app_link", "http_codec",
    "http_deadlines", "http_joint", "http_limits", "http_reply", "http_request", "http_target",
    "http_upstream", "inbound", "inbound_http", "inbound_mux", "linger", "mux", "mux_frames",
    "mux_open", "mux_pool", "mux_stream", "outbound", "outlier", "peak_ewma", "relay",
    "relay_state", "retry_budget", "side", "split", "tally", "tls_pipe", "tls_side", "xfcc",
)  # fmt: skip
# Hand-written C built alongside them (under the same manifest): proxy/heap.py's extension.
C_SOURCES = ("_heap.c",)
# Plain os.path strings: every proxy process imports this module, and pathlib (with the
# urllib.parse and ipaddress it pulls in) would be its only user there.
PROXY_DIR = os.path.dirname(os.path.realpath(__file__))
# The checkout's build/ (gitignored); GOSSAMER_NATIVE_DIR points elsewhere (build_native.py's
# training run uses it to load the instrumented build it is about to profile).
OUT = os.environ.get("GOSSAMER_NATIVE_DIR") or os.path.join(
    os.path.dirname(PROXY_DIR), "build", "native"
)
MANIFEST = os.path.join(OUT, "SOURCES")
# mypyc's shared libraries (build/native/lib/<group>__mypyc.*.so), each module in one. HTTP/2's
# modules are a library of their own, loaded only by a sidecar that meets HTTP/2: a TCP or
# HTTP/1 sidecar maps none of their code (~0.5 MiB of RSS, bench/proxy_rss.py).
H2_GROUP = "gossamer_h2"
GROUP = "gossamer_proxy"  # the rest of the data path, every sidecar's


def group_of(module: str) -> str:
    """The shared library a compiled module is built into."""
    return H2_GROUP if module.startswith(("h2_", "hpack_")) else GROUP


def source_lines() -> list[str]:
    """The manifest a build of the current sources writes: the Python it targets, then one
    `sha256 module` line per compiled module and one `sha256 file.c` per C source."""
    lines = [f"python {sys.implementation.cache_tag}"]
    for name in (*(f"{module}.py" for module in COMPILED), *C_SOURCES):
        with open(os.path.join(PROXY_DIR, name), "rb") as source:
            digest = hashlib.sha256(source.read()).hexdigest()
        lines.append(f"{digest} {name.removesuffix('.py')}")
    return lines


def state() -> str:
    """One of: "off" (GOSSAMER_NATIVE=0), "absent" (no build), "stale: <why>", "fresh"."""
    if os.environ.get("GOSSAMER_NATIVE", "1") == "0":
        return "off"
    try:
        with open(MANIFEST) as manifest:
            built = manifest.read().splitlines()
    except OSError:
        return "absent"
    now = source_lines()
    if built == now:
        return "fresh"
    changed = [line.split()[-1] if i else "the Python" for i, line in enumerate(now)
               if line not in built]  # fmt: skip
    return f"stale: {', '.join(changed) or 'the module list'} changed since the build"


def use() -> str:
    """Put the build in front of gossamer.proxy's path when it is fresh; the state either way,
    kept in `MODE` for the proxy's start-up log line."""
    global MODE
    if MODE != UNDECIDED:  # once per process
        return MODE
    import gossamer.proxy as package

    early = [name for name in COMPILED if f"{package.__name__}.{name}" in sys.modules]
    MODE = f"off: {', '.join(early)} imported before use()" if early else state()
    if MODE == "fresh":
        package.__path__.insert(0, os.path.join(OUT, "gossamer", "proxy"))
        sys.path.append(os.path.join(OUT, "lib"))  # the shared library all compiled modules import
    elif MODE.startswith("stale"):
        print(f"gossamer: compiled proxy modules set aside ({MODE}); running them as Python; "
              "rebuild with .venv/bin/python scripts/build_native.py", file=sys.stderr)  # fmt: skip
    return MODE


UNDECIDED = "not decided"
MODE = UNDECIDED
