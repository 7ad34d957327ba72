"""Compile the proxy's data-path modules with mypyc into build/native (proxy/native.py).

    .venv/bin/python scripts/build_native.py [--check | --plain]

Needs mypy (mypyc ships with it), a C compiler and Python's headers
(scripts/setup.sh installs gcc and python3-dev). The modules are
proxy/native.py's COMPILED, read as the installed package reads them
(gossamer.proxy.<name>, through a symlink farm as scripts/lint.sh makes for
mypy), with the project's mypy configuration, and beside them the
hand-written C of native.C_SOURCES (proxy/_heap.c).

Profile-guided (GCC's -fprofile-generate, then -fprofile-use): the C is
compiled once instrumented, bench/http_path.py runs both HTTP roles and
new connections on that build for a few seconds and bench/h2_gate.py the
HTTP/2 gate and follower, and the C is compiled
again with the counts, so GCC lays the hot paths out together and moves
what never ran aside. At one connection, where each wake-up starts with
cold caches, the L7 pair's user time per request fell ~6-8 % (bench/README,
http_path.py). When the instrumented build or its run fails, the build goes
on without a profile and says so. `--plain` skips the profile.

The build goes to a fresh directory and replaces build/native only once it
is whole; its manifest (SOURCES) is written last. About 75 s on 2 cores (30
s `--plain`). Exit 1 if the build fails (the proxy then runs as Python).
`--check` only says whether the current build is fresh (exit 0) or not
(exit 1). Other arguments: exit 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gossamer.proxy import native

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "gossip", "catalog", "intentions", "proxy")
# The profiling runs, in process: both HTTP/1 roles and new connections (http_path.py), the
# HTTP/2 gate and follower (h2_gate.py); each with what it prints when it ran the build.
TRAINING = (
    (("bench/http_path.py", "--requests", "5000", "--repeats", "1"), "modules: fresh"),
    (("bench/h2_gate.py", "--requests", "3000", "--repeats", "1"), "compiled (fresh)"),
)
PROFILE_USE = "-fprofile-use -fprofile-partial-training -Wno-missing-profile"
CFLAGS, LDFLAGS = os.environ.get("CFLAGS", ""), os.environ.get("LDFLAGS", "")  # the caller's


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"], ["--plain"]):
        print("usage: build_native.py [--check | --plain]", file=sys.stderr)
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

    paths = [f"gossamer/proxy/{name}.py" for name in native.COMPILED]
    groups = [([path for name, path in zip(native.COMPILED, paths, strict=True)
                if native.group_of(name) == group], group)
              for group in (native.GROUP, native.H2_GROUP)]  # fmt: skip
    extensions = mypycify(  # its first argument is mypy's command line: options, then files
        ["--config-file", str(ROOT / "pyproject.toml"), *paths], opt_level="2", debug_level="0",
        separate=groups, target_dir=str(work / "c"),
    )  # fmt: skip
    from setuptools import Extension  # the hand-written C (native.C_SOURCES), built alongside

    for name in native.C_SOURCES:
        extensions.append(Extension(f"gossamer.proxy.{name[:-2]}", [f"gossamer/proxy/{name}"]))
    profiled = argv != ["--plain"] and _profile(extensions, work, lines)
    out = work / "out"
    _compile(extensions, work, out, PROFILE_USE if profiled else "")
    if native.source_lines() != lines:
        print("build_native: a source changed during the build; run it again", file=sys.stderr)
        return 1
    (out / "SOURCES").write_text("\n".join(lines) + "\n")
    shutil.rmtree(native.OUT, ignore_errors=True)
    out.rename(native.OUT)
    shutil.rmtree(work, ignore_errors=True)
    how = "profile-guided" if profiled else "without a profile"
    count = len(paths) + len(native.C_SOURCES)
    print(f"build_native: {count} modules compiled ({how}) into {native.OUT} in "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    return 0


def _compile(extensions: list[Any], work: Path, out: Path, flags: str, ldflags: str = "") -> None:
    """mypyc's C into `out` as build/native lays it out: the per-module files under
    gossamer/proxy, the shared libraries (native.GROUP, H2_GROUP) under lib/. The same object
    paths each time (GCC finds an object's profile by its path), rebuilt each time
    (`--force`)."""
    from setuptools import setup

    # -O2 (mypyc's default is -O3): as fast here (bench/http_path.py), 8 % less code to map.
    # Hidden symbols: the shared library exports its module init only (the per-module files
    # reach the rest through a capsule), so half its dynamic symbol table goes.
    os.environ["CFLAGS"] = " ".join(filter(None, [CFLAGS, "-fvisibility=hidden", flags]))
    os.environ["LDFLAGS"] = " ".join(filter(None, [LDFLAGS, ldflags]))
    setup(name="gossamer-native", ext_modules=extensions, script_args=[
        "--quiet", "build_ext", "--build-lib", str(out), "--build-temp", str(work / "tmp"),
        "--parallel", str(os.cpu_count() or 1), "--force"])  # fmt: skip
    (out / "lib").mkdir()  # the shared library, on sys.path by itself (not out's gossamer/)
    for group in (native.GROUP, native.H2_GROUP):
        for shared in out.glob(f"{group}__mypyc*"):
            shared.rename(out / "lib" / shared.name)


def _profile(extensions: list[Any], work: Path, lines: list[str]) -> bool:
    """Build instrumented and run the training on it; whether counts were recorded."""
    profiling = work / "profiling"
    try:
        _compile(extensions, work, profiling, "-fprofile-generate", "-fprofile-generate")
    except (SystemExit, Exception) as exc:  # setuptools exits on a compiler error
        print(f"build_native: the instrumented build failed ({exc}); no profile", file=sys.stderr)
        return False
    (profiling / "SOURCES").write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GOSSAMER_NATIVE", "CFLAGS", "LDFLAGS")}
    env["GOSSAMER_NATIVE_DIR"] = str(profiling)
    for argv, ran_compiled in TRAINING:
        run = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=600, check=False)  # fmt: skip
        if run.returncode != 0 or ran_compiled not in run.stdout:
            tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
            print(f"build_native: the profiling run failed; no profile: {tail}", file=sys.stderr)
            return False
    return any(work.rglob("*.gcda"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
