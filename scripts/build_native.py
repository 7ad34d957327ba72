"""Compile the proxy's data-path modules with mypyc into build/native (proxy/native.py).

    .venv/bin/python scripts/build_native.py [--check]

Needs mypy (mypyc ships with it), a C compiler and Python's headers
(scripts/setup.sh installs gcc and python3-dev). The modules are
proxy/native.py's COMPILED, read as the installed package reads them
(gossamer.proxy.<name>, through a symlink farm as scripts/lint.sh makes for
mypy), with the project's mypy configuration. The build goes to a fresh
directory and replaces build/native only once it is whole; its manifest
(SOURCES) is written last. About 30 s on 2 cores. Exit 1 if the build
fails (the proxy then runs as Python). `--check` only says whether the
current build is fresh (exit 0) or not (exit 1). Other arguments: exit 2.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "gossip", "catalog", "intentions", "proxy")


def main(argv: list[str]) -> int:
    from gossamer.proxy import native

    if argv not in ([], ["--check"]):
        print("usage: build_native.py [--check]", file=sys.stderr)
        return 2
    if argv == ["--check"]:
        state = native.state()
        print(state)
        return 0 if state == "fresh" else 1
    started = time.monotonic()
    work = ROOT / "build" / "native-work"
    shutil.rmtree(work, ignore_errors=True)
    farm = work / "src" / "gossamer"
    farm.mkdir(parents=True)
    for package in PACKAGES:
        (farm / package).symlink_to(ROOT / package)
    lines = native.source_lines()  # the sources as they are when the build starts
    os.chdir(work / "src")
    from mypyc.build import mypycify
    from setuptools import setup

    paths = [f"gossamer/proxy/{name}.py" for name in native.COMPILED]
    # -O2 (mypyc's default is -O3): as fast here (bench/http_path.py), 8 % less code to map.
    # Hidden symbols: the shared library exports its module init only (the per-module files
    # reach the rest through a capsule), so half its dynamic symbol table goes.
    os.environ["CFLAGS"] = f"{os.environ.get('CFLAGS', '')} -fvisibility=hidden".strip()
    extensions = mypycify(  # its first argument is mypy's command line: options, then files
        ["--config-file", str(ROOT / "pyproject.toml"), *paths], opt_level="2", debug_level="0",
        group_name=native.GROUP, target_dir=str(work / "c"),
    )  # fmt: skip
    out = work / "out"
    setup(name="gossamer-native", ext_modules=extensions, script_args=[
        "--quiet", "build_ext", "--build-lib", str(out), "--build-temp", str(work / "tmp"),
        "--parallel", str(os.cpu_count() or 1)])  # fmt: skip
    (out / "lib").mkdir()  # the shared library, on sys.path by itself (not out's gossamer/)
    for shared in out.glob(f"{native.GROUP}__mypyc*"):
        shared.rename(out / "lib" / shared.name)
    if native.source_lines() != lines:
        print("build_native: a source changed during the build; run it again", file=sys.stderr)
        return 1
    (out / "SOURCES").write_text("\n".join(lines) + "\n")
    shutil.rmtree(native.OUT, ignore_errors=True)
    out.rename(native.OUT)
    shutil.rmtree(work, ignore_errors=True)
    print(f"build_native: {len(paths)} modules compiled into {native.OUT.relative_to(ROOT)} "
          f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
