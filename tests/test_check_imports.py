"""scripts/check_imports.py: each rule broken once in a throwaway tree, and the real tree passes.

The throwaway tree holds an empty module at every path of PURE_MODULES (and
the packages around them), so it passes as built; each test adds or changes
one file and expects exactly the violation lines it causes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.check_imports import PURE_MODULES, ROOT, Tree, imports_of, violations

PACKAGES = ("agent/http", "agent/dns", "agent/lifecycle", "agent/checks", "proxy")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A tree with every listed pure module (empty) and the agent packages the rules name."""
    for entry in PURE_MODULES:
        path = tmp_path / (entry + "__init__.py" if entry.endswith("/") else entry)
        write(tmp_path, path.relative_to(tmp_path).as_posix(), "")
    for package in PACKAGES:
        write(tmp_path, f"{package}/__init__.py", "")
    assert violations(tmp_path) == []
    return tmp_path


def write(root: Path, rel: str, text: str) -> None:
    """Write `rel` and an empty __init__.py in each folder above it that lacks one."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    for folder in path.relative_to(root).parents:
        init = root / folder / "__init__.py"
        if folder != Path(".") and not init.exists():
            init.write_text("")


def test_the_real_tree_passes() -> None:
    assert violations() == []
    assert violations(ROOT) == []


def test_an_absolute_import_against_the_direction(root: Path) -> None:
    write(root, "catalog/bad.py", '"""Doc."""\nimport gossamer.agent.lifecycle.runtime\n')
    assert violations(root) == ["catalog/bad.py:2: gossamer.catalog must not import gossamer.agent"]


def test_a_relative_import_is_resolved_to_its_package(root: Path) -> None:
    write(root, "gossip/bad.py", "from ..catalog import merge\n")
    assert violations(root) == ["gossip/bad.py:1: gossamer.gossip must not import gossamer.catalog"]


def test_a_relative_import_of_a_sibling_package_module(root: Path) -> None:
    write(root, "proxy/layer.py", "")
    write(root, "intentions/helper.py", "from . import decide\nfrom ..proxy import layer\n")
    assert violations(root) == [
        "intentions/helper.py:2: gossamer.intentions must not import gossamer.proxy",
        "intentions/helper.py:2: pure module gossamer.intentions.helper must not import"
        " gossamer.proxy.layer, which is not pure",
    ]


def test_a_relative_import_climbing_out_of_gossamer(root: Path) -> None:
    write(root, "catalog/bad.py", "from ... import elsewhere\n")
    assert violations(root) == [
        "catalog/bad.py:1: relative import ... climbs out of gossamer",
    ]


def test_a_lazy_import_inside_a_function(root: Path) -> None:
    write(root, "gossip/bad.py", "def f():\n    from gossamer.catalog import merge\n")
    assert violations(root) == ["gossip/bad.py:2: gossamer.gossip must not import gossamer.catalog"]


def test_lazy_imports_are_seen_with_their_modules(root: Path) -> None:
    """Names resolve to the longest module that exists (agent.nowhere and proxy.x do not here)."""
    lazy = "def f():\n    from gossamer.agent import nowhere\n    import gossamer.proxy.x\n"
    write(root, "x/bad.py", lazy)
    found = imports_of(Tree.scan(root), root / "x/bad.py")
    assert [(i.line, i.module) for i in found] == [(2, "gossamer.agent"), (3, "gossamer.proxy")]


def test_a_pure_module_importing_asyncio(root: Path) -> None:
    write(root, "catalog/merge.py", '"""Doc."""\n\nimport asyncio\n')
    assert violations(root) == [
        "catalog/merge.py:3: pure module gossamer.catalog.merge must not import asyncio"
    ]


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("from time import monotonic", "time.monotonic"),
        ("import socket", "socket"),
        ("import sqlite3", "sqlite3"),
        ("from aiohttp import web", "aiohttp.web"),
        ("import subprocess", "subprocess"),
        ("import asyncio.subprocess", "asyncio.subprocess"),
    ],
)
def test_every_forbidden_module_in_a_pure_one(root: Path, line: str, named: str) -> None:
    write(root, "agent/checks/status.py", f"def later():\n    {line}\n")
    pure = "pure module gossamer.agent.checks.status"
    assert violations(root) == [f"agent/checks/status.py:2: {pure} must not import {named}"]


def test_a_pure_module_importing_an_impure_one_relatively(root: Path) -> None:
    write(root, "agent/dns/server.py", "import socket\n")
    write(root, "agent/dns/answer.py", "from .server import serve\n")
    assert violations(root) == [
        "agent/dns/answer.py:1: pure module gossamer.agent.dns.answer must not import"
        " gossamer.agent.dns.server, which is not pure",
    ]


def test_the_package_of_a_pure_module_is_pure_too(root: Path) -> None:
    write(root, "agent/dns/__init__.py", "import asyncio\n")
    assert violations(root) == [
        "agent/dns/__init__.py:1: pure module gossamer.agent.dns must not import asyncio"
    ]


def test_http_importing_the_composition_root(root: Path) -> None:
    write(root, "agent/http/bad.py", "from gossamer.agent.lifecycle.runtime import Agent\n")
    assert violations(root) == [
        "agent/http/bad.py:1: gossamer.agent.http must not import gossamer.agent.lifecycle"
    ]


def test_dns_importing_http(root: Path) -> None:
    write(root, "agent/dns/frontend.py", "\nfrom ..http import app\n")
    assert violations(root) == [
        "agent/dns/frontend.py:2: gossamer.agent.dns must not import gossamer.agent.http"
    ]


def test_a_listed_pure_path_that_does_not_exist(root: Path) -> None:
    (root / "catalog/merge.py").unlink()
    assert violations(root) == [
        "PURE_MODULES: catalog/merge.py does not exist (renamed? update the list)"
    ]


def test_the_script_exits_1_and_lists_each_problem(root: Path) -> None:
    write(root, "agent/http/bad.py", "import gossamer.agent.lifecycle\n")
    script = ROOT / "scripts" / "check_imports.py"
    run = subprocess.run(
        [sys.executable, str(script), str(root)], capture_output=True, text=True, timeout=60
    )
    assert (run.returncode, run.stderr) == (
        1,
        "agent/http/bad.py:1: gossamer.agent.http must not import gossamer.agent.lifecycle\n",
    )
    clean = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
