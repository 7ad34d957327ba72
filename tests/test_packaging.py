"""What `pip install .` installs (the Kubernetes image, any non-editable install) runs.

The checkout runs as an editable install, whose finder maps each top-level
folder to `gossamer.<folder>` whatever pyproject.toml lists; a wheel holds
only the packages spelled out in `[tool.setuptools] packages`. A subpackage
left out of that list passes every other test and breaks the installed agent
at start-up (`gossamer.agent.identity` once did). So: the list names every
package folder, and every module imports from a real wheel, in an
interpreter that sees the wheel and the virtualenv's dependencies but not
the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setuptools_table() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        table: dict[str, object] = tomllib.load(f)["tool"]["setuptools"]
    return table


def package_folders() -> set[str]:
    """Every `gossamer.*` package of the tree: the folders under a package-dir with __init__.py."""
    dirs = setuptools_table()["package-dir"]
    assert isinstance(dirs, dict)
    found = set()
    for package, folder in dirs.items():
        for where, _, files in os.walk(ROOT / folder):
            if "__init__.py" in files and "__pycache__" not in where:
                rel = Path(where).relative_to(ROOT / folder).parts
                found.add(".".join((package, *rel)))
    return found


def test_pyproject_lists_every_package_folder() -> None:
    listed = setuptools_table()["packages"]
    assert isinstance(listed, list)
    assert sorted(package_folders() - set(listed)) == []
    assert sorted(set(listed) - package_folders()) == []


def test_every_module_imports_from_the_built_wheel(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, timeout=300, capture_output=True)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("gossamer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
        names = archive.namelist()
    assert "gossamer/intentions/tui/tui.tcss" in names  # package data: the TUI's stylesheet
    assert "gossamer/proxy/_heap.c" in names  # native.py hashes it to know a build is fresh
    modules = sorted(
        n.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for n in names
        if n.startswith("gossamer/") and n.endswith(".py") and not n.endswith("__main__.py")
    )
    # -S: no site, so no editable finder; the wheel first, then the virtualenv's dependencies.
    deps = [p for p in sys.path if p.endswith("site-packages")]
    script = (
        "import importlib, sys\n"
        f"sys.path[:0] = {[str(tmp_path / 'site'), *deps]!r}\n"
        "bad = []\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        module = importlib.import_module(name)\n"
        f"        assert module.__file__.startswith({str(tmp_path / 'site')!r}), module.__file__\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(bad))\n"
    )
    run = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""
    assert len(modules) > 300
