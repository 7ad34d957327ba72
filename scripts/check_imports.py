"""Keep the dependency direction of DESIGN.md and the pure cores free of I/O.

Each top-level folder of the tree is the package gossamer.<folder>. Every
`import` and `from ... import` is read with ast, including ones inside
functions (a lazy import cannot sneak past) and relative ones (resolved to
the gossamer module they name). Dynamic imports (importlib, __import__) are
not followed; no gossamer module uses them.

Rules:
1. Direction between the top-level packages (ALLOWED): gossip imports
   nothing else of gossamer; catalog may import gossip; intentions imports
   nothing else of gossamer; proxy may import gossip, catalog, intentions;
   nothing but agent imports agent (it is the composition root).
2. Direction inside agent (NEVER_IMPORTS): agent.http and agent.dns never
   import the composition root (agent.lifecycle) or the CLI; agent.dns
   never imports agent.http.
3. Pure cores (PURE_MODULES): a pure module imports none of
   FORBIDDEN_IN_PURE directly, and of gossamer only other pure modules. The
   check is direct, but the second half makes it transitive: nothing a pure
   module imports through gossamer can reach I/O. Importing a module runs
   its packages' __init__ files, so those count as pure too. A folder entry
   does not cover the shell folders inside it (SHELLS_IN_PURE_FOLDERS).
4. Every path in PURE_MODULES exists: a rename must update the list.

Usage: check_imports.py [ROOT]; exit 1 listing "path:line: problem".
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED: dict[str, set[str]] = {
    "gossip": set(),
    "catalog": {"gossip"},
    "intentions": set(),
    "proxy": {"gossip", "catalog", "intentions"},
    "agent": {"gossip", "catalog", "intentions", "proxy"},
}
NEVER_IMPORTS: dict[str, frozenset[str]] = {
    "agent.http": frozenset({"agent.lifecycle", "agent.cli"}),
    "agent.dns": frozenset({"agent.lifecycle", "agent.cli", "agent.http"}),
}
FORBIDDEN_IN_PURE = frozenset({"asyncio", "socket", "sqlite3", "aiohttp", "subprocess", "time"})
# Paths from the root; one ending in "/" is every module under that folder.
PURE_MODULES: tuple[str, ...] = (
    # catalog: merge, absorb, queries, filter, blocking math, sync, models, parsers
    "catalog/absorb.py",
    "catalog/merge.py",
    "catalog/model.py",
    "catalog/consul_json.py",
    "catalog/plain_json.py",
    "catalog/tagged.py",
    "catalog/severity.py",
    "catalog/names.py",
    "catalog/durations.py",
    "catalog/filter.py",
    "catalog/filter_ast.py",
    "catalog/filter_scan.py",
    "catalog/filter_schema.py",
    "catalog/filter_values.py",
    "catalog/filter_parse.py",
    "catalog/filter_eval.py",
    "catalog/blocking.py",
    "catalog/hlc.py",
    "catalog/lww.py",
    "catalog/lww_sync.py",
    "catalog/sync_protocol.py",
    "catalog/sync_exchange.py",
    "catalog/sync_answer.py",
    "catalog/range_sums.py",
    "catalog/wire.py",
    "catalog/wire_fields.py",
    "catalog/view.py",
    "catalog/check_definition.py",
    "catalog/config_entries.py",
    "catalog/config_resolver.py",
    "catalog/resolver_chain.py",
    "catalog/config_router.py",
    "catalog/router_match.py",
    "catalog/router_destination.py",
    "catalog/config_defaults.py",
    "catalog/check_kinds.py",
    "catalog/registration.py",
    "catalog/registration_fields.py",
    "catalog/registration_check.py",
    "catalog/registration_draft.py",
    "catalog/registration_expose.py",
    "catalog/expose_checks.py",
    "catalog/registration_proxy.py",
    "catalog/registration_sidecar.py",
    "catalog/registration_service.py",
    "catalog/registration_node.py",
    "agent/local/proxy_keys.py",  # the proxy keys a registration is refused for
    # intentions: all of it but the TUI's shells (SHELLS_IN_PURE_FOLDERS)
    "intentions/",
    # the TUI's screen logic that needs no terminal
    "intentions/tui/denial_rows.py",
    "intentions/tui/form.py",
    "intentions/tui/history.py",
    "intentions/tui/matrix.py",
    "intentions/tui/plan_view.py",
    "intentions/tui/rows.py",
    # the mesh CA: certificates, SPIFFE checks, Consul JSON shapes
    "proxy/ca/",
    # the sidecar proxy's pure cores
    "proxy/config.py",
    "proxy/config_fields.py",
    "proxy/config_registration.py",
    "proxy/expose_config.py",
    "proxy/config_flags.py",
    "proxy/config_metrics.py",
    "proxy/node_ports.py",
    "proxy/authorize.py",
    "proxy/policy.py",
    "proxy/intention_memo.py",
    "proxy/json_items.py",
    "proxy/balance.py",
    "proxy/split.py",
    "proxy/resolver_routes.py",
    "proxy/routing.py",
    "proxy/routes.py",
    "proxy/route_rules.py",
    "proxy/outlier.py",
    "proxy/tally.py",
    "proxy/log_limit.py",
    "proxy/tls_pipe.py",
    "proxy/relay_state.py",
    "proxy/sessions.py",
    "proxy/protocol.py",
    "proxy/config_error.py",
    "proxy/retry_budget.py",
    "proxy/retry_backoff.py",
    "proxy/peak_ewma.py",
    "proxy/http_codec.py",
    "proxy/http_target.py",
    "proxy/http_upgrade.py",
    "proxy/xfcc.py",
    "proxy/h2_fields.py",
    "proxy/h2_cut.py",
    "proxy/h2_client.py",
    "proxy/local_peer.py",
    "proxy/h2_frames.py",
    "proxy/h2_gate.py",
    "proxy/h2_app.py",
    "proxy/config_unused.py",
    "gossip/host_port.py",
    "agent/replicated/later_keys.py",
    "proxy/h2_app_blocks.py",
    "proxy/h2_table_sizes.py",
    "proxy/h2_calls.py",
    "proxy/h2_follow.py",
    "proxy/h2_deadlines.py",
    "proxy/http_limits.py",
    "proxy/hpack_reader.py",
    "proxy/h2_split.py",
    "proxy/h2_split_calls.py",
    "proxy/h2_split_core.py",
    "proxy/h2_split_flow.py",
    "proxy/h2_split_peer.py",
    "proxy/h2_split_upstream.py",
    "proxy/h2_split_wire.py",
    "proxy/h2_split_timed.py",
    "proxy/h2_balanced_guard.py",
    "proxy/h2_balanced_replay.py",
    "proxy/h2_split_routed.py",
    "proxy/edge_metrics.py",
    "proxy/prom_text.py",
    "proxy/metrics_families.py",
    "agent/http/metrics_prom.py",
    "agent/http/metrics_figures.py",
    "agent/http/front_head.py",  # which request heads the light front takes; its answer heads
    "proxy/stat_rows.py",
    "proxy/stat_table.py",
    "proxy/stat_routes.py",
    "proxy/stats_shape.py",
    # Kubernetes injector: annotations, patch, AdmissionReview, registration
    "agent/k8s/annotations.py",
    "agent/k8s/patch.py",
    "agent/k8s/registration.py",
    "agent/k8s/review.py",
    # DNS question -> answer
    "agent/dns/answer.py",
    "agent/dns/names.py",
    "agent/dns/prepared.py",
    "agent/dns/query_shape.py",
    "agent/dns/records.py",
    "agent/dns/settings.py",
    "agent/dns/wire.py",
    "agent/dns/zone.py",
    # checks: status tables and aggregation, the runner's check spec
    "agent/checks/spec.py",
    "agent/checks/status.py",
    # this node's own record, built from what is registered
    "agent/local/own_record.py",
    # ACLs: rule language, authorizer, endpoint permissions, token records
    "agent/acl/",
    "agent/cli/config_hcl.py",
    "agent/cli/consul_flags.py",
    # gossamer check: results, the judges of each group, rendering
    "agent/preflight/result.py",
    "agent/preflight/host_checks.py",
    "agent/preflight/cluster_checks.py",
    "agent/preflight/identity_checks.py",
    "agent/preflight/proxy_checks.py",
    "agent/preflight/proxy_cert.py",
    "agent/preflight/render.py",
    # agent RPC: who a peer is, what it may do, the refusal counters
    "agent/sync/identity.py",
    "agent/sync/peer_check.py",
    "agent/sync/refusals.py",
    "agent/sync/verified_memory.py",
    # replicated state: intentions as last-writer-wins entries
    "agent/replicated/intention_entries.py",
    "agent/replicated/intention_view.py",
    # gossip: the serf RPC codec, records and errors, members, tags, addresses
    "gossip/addresses.py",
    "gossip/coordinates.py",
    "gossip/errors.py",
    "gossip/member_table.py",
    "gossip/members.py",
    "gossip/rpc_codec.py",
    "gossip/rpc_records.py",
    "gossip/serf_output.py",
    "gossip/tags.py",
)

# Folders inside a PURE_MODULES folder that hold I/O shells (the TUI's widgets and HTTP
# client): a folder entry does not cover them; their pure modules are listed one by one.
SHELLS_IN_PURE_FOLDERS: tuple[str, ...] = ("intentions/tui/",)


@dataclass(frozen=True)
class Import:
    """One imported module: where, and its absolute dotted name."""

    line: int
    module: str


@dataclass(frozen=True)
class Tree:
    """The gossamer modules found under a root, by dotted name."""

    root: Path
    modules: dict[str, Path]

    @classmethod
    def scan(cls, root: Path) -> Tree:
        modules: dict[str, Path] = {}
        for package in ALLOWED:
            for path in sorted((root / package).rglob("*.py")):
                modules[module_name(path.relative_to(root))] = path
        return cls(root, modules)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def resolve(self, name: str) -> str:
        """The longest prefix of `name` that is a module here (a name may end in an attribute)."""
        parts = name.split(".")
        for end in range(len(parts), 1, -1):
            candidate = ".".join(parts[:end])
            if candidate in self.modules:
                return candidate
        return name


def module_name(rel: Path) -> str:
    """gossamer.<dotted path>; a package is named by its folder."""
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["gossamer", *parts])


def _from_base(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The absolute module a `from X import ...` reads from; None if it climbs past gossamer."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 >= len(package):
        return None
    base = ".".join(package[: len(package) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


def imports_of(tree: Tree, path: Path) -> list[Import]:
    """Every module `path` imports (stdlib, third party and gossamer), relative ones resolved."""
    module = module_name(path.relative_to(tree.root))
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, tree.resolve(a.name)) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module, is_package)
            if base is None:
                found.append(Import(node.lineno, "." * node.level + (node.module or "")))
                continue
            for alias in node.names:
                found.append(Import(node.lineno, tree.resolve(f"{base}.{alias.name}")))
    return sorted(set(found), key=lambda i: (i.line, i.module))  # one per name a line reads


def _package_under_gossamer(module: str) -> str | None:
    """'catalog.merge' for gossamer.catalog.merge; None for anything outside gossamer."""
    parts = module.split(".")
    return ".".join(parts[1:]) if parts[0] == "gossamer" and len(parts) > 1 else None


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _direction(importer: str, target: str) -> list[str]:
    """What is wrong with gossamer module `importer` importing `target` (both without gossamer.)."""
    own, top = importer.split(".")[0], target.split(".")[0]
    wrong = []
    if top != own and top not in ALLOWED[own]:
        wrong.append(f"gossamer.{own} must not import gossamer.{top}")
    for inner, banned in NEVER_IMPORTS.items():
        if _inside(importer, inner):
            wrong += [
                f"gossamer.{inner} must not import gossamer.{other}"
                for other in sorted(banned)
                if _inside(target, other)
            ]
    return wrong


def direction_problems(tree: Tree) -> list[str]:
    """Rules 1 and 2, plus relative imports that climb out of gossamer."""
    problems = []
    for name, path in tree.modules.items():
        importer = name.removeprefix("gossamer.")
        for imp in imports_of(tree, path):
            where = f"{tree.rel(path)}:{imp.line}"
            if imp.module.startswith("."):
                problems.append(f"{where}: relative import {imp.module} climbs out of gossamer")
            elif (target := _package_under_gossamer(imp.module)) is not None:
                problems += [f"{where}: {wrong}" for wrong in _direction(importer, target)]
    return problems


def _listed(rel: str, entry: str) -> bool:
    """Whether the module at `rel` is what the PURE_MODULES `entry` names."""
    if not entry.endswith("/"):
        return rel == entry
    return rel.startswith(entry) and not any(
        rel.startswith(shell) and shell != entry for shell in SHELLS_IN_PURE_FOLDERS
    )


def pure_modules(tree: Tree) -> tuple[set[str], list[str]]:
    """Dotted names of the pure modules and their packages; problems for listed paths missing."""
    pure: set[str] = set()
    problems = []
    for entry in PURE_MODULES:
        found = [name for name, path in tree.modules.items() if _listed(tree.rel(path), entry)]
        if not found:
            problems.append(f"PURE_MODULES: {entry} does not exist (renamed? update the list)")
        pure.update(found)
    for name in list(pure):
        parts = name.split(".")
        pure.update(".".join(parts[:end]) for end in range(2, len(parts)))
    return pure, problems


def purity_problems(tree: Tree) -> list[str]:
    """Rules 3 and 4."""
    pure, problems = pure_modules(tree)
    for name in sorted(pure):
        path = tree.modules[name]
        for imp in imports_of(tree, path):
            where = f"{tree.rel(path)}:{imp.line}: pure module {name}"
            if imp.module.split(".")[0] in FORBIDDEN_IN_PURE:
                problems.append(f"{where} must not import {imp.module}")
            elif _package_under_gossamer(imp.module) and imp.module not in pure:
                problems.append(f"{where} must not import {imp.module}, which is not pure")
    return problems


def violations(root: Path = ROOT) -> list[str]:
    tree = Tree.scan(root)
    return direction_problems(tree) + purity_problems(tree)


if __name__ == "__main__":
    found = violations(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    for problem in found:
        print(problem, file=sys.stderr)
    sys.exit(1 if found else 0)
