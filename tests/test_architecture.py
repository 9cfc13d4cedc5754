"""Import layering of the ``reviosa`` package: no import cycles between modules or top-level subpackages.

Every import counts, including the lazy ones inside functions: a function-level import hides a cycle from the
interpreter but not from the design, and it is the first thing to break when code moves.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "reviosa"


@dataclass(frozen=True)
class ImportSite:
    """One import statement in a module, resolved to the reviosa module it loads."""

    source: str
    target: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} -> {self.target}"


def module_name(path: Path) -> str:
    """The dotted module name of a ``.py`` file under the repository root."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _resolve_relative(current: str, is_package: bool, level: int, module: str | None) -> str:
    base = current.split(".") if is_package else current.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _known(name: str, modules: dict[str, Path]) -> str | None:
    # ``import reviosa.a.b.c`` where only ``reviosa.a.b`` is a module still depends on ``reviosa.a.b``.
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, source: str, rel: str, modules: dict[str, Path], *, is_package: bool) -> list[ImportSite]:
    """The imports of reviosa modules in one module's source, top-level and inside function bodies."""
    sites: dict[tuple[str, int], ImportSite] = {}
    for node in ast.walk(ast.parse(source, filename=rel)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(name, is_package, node.level, node.module) if node.level else node.module or ""
            # ``from x import y`` loads ``x`` and, when ``x.y`` is a submodule, ``x.y`` too.
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
        for target in targets:
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            resolved = _known(target, modules)
            if resolved is not None and resolved != name:
                sites[resolved, node.lineno] = ImportSite(name, resolved, rel, node.lineno)
    return list(sites.values())


def import_sites(modules: dict[str, Path]) -> list[ImportSite]:
    """Every import of a reviosa module from a reviosa module."""
    return [site for name, path in modules.items()
            for site in imports_of(name, path.read_text(), str(path.relative_to(ROOT)), modules,
                                   is_package=path.name == "__init__.py")]


def subpackage(module: str) -> str:
    """The top-level node a module belongs to: ``reviosa.data.format`` -> ``reviosa.data``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def graph(sites: list[ImportSite], node=lambda m: m) -> dict[str, dict[str, list[ImportSite]]]:
    """Adjacency ``source -> target -> import sites`` after mapping modules through ``node``."""
    edges: dict[str, dict[str, list[ImportSite]]] = defaultdict(lambda: defaultdict(list))
    for site in sites:
        a, b = node(site.source), node(site.target)
        if a != b:
            edges[a][b].append(site)
    return edges


def cycles(edges: dict[str, dict[str, list[ImportSite]]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    nodes = set(edges) | {w for targets in edges.values() for w in targets}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def describe(component: list[str], edges: dict[str, dict[str, list[ImportSite]]]) -> str:
    """The members of a cycle and every import line between them, for the failure message."""
    members = set(component)
    lines = [f"cycle between {', '.join(component)}:"]
    for a in component:
        for b, sites in sorted(edges.get(a, {}).items()):
            if b in members:
                lines += [f"    {site}" for site in sites]
    return "\n".join(lines)


MODULES = discover()
SITES = import_sites(MODULES)
MODULE_EDGES = graph(SITES)
PACKAGE_EDGES = graph(SITES, subpackage)


def test_graph_builder_sees_known_edges():
    """The graph is not empty by accident: known imports of the real package are found."""
    assert "reviosa.data.atomic" in MODULE_EDGES["reviosa.data.format"]
    assert "reviosa.data" in PACKAGE_EDGES["reviosa.model"]
    assert len(MODULES) > 50 and len(SITES) > 100


def test_graph_builder_resolves_import_forms():
    """``import a.b``, ``from a import module``, relative and function-level imports all become edges."""
    source = ("import reviosa.data.rle\nfrom reviosa.data import atomic\nfrom . import clips\nimport numpy\n"
              "def f():\n    from .video import read_image\n    from ..model.config import ModelConfig\n")
    found = {s.target for s in imports_of("reviosa.data.probe", source, "probe.py", MODULES, is_package=False)}
    assert found == {"reviosa.data", "reviosa.data.rle", "reviosa.data.atomic", "reviosa.data.clips",
                     "reviosa.data.video", "reviosa.model.config"}


def test_cycle_finder_reports_the_closing_imports():
    """A two-module loop is found and its message names both import lines."""
    sites = [ImportSite("reviosa.a", "reviosa.b", "reviosa/a.py", 3),
             ImportSite("reviosa.b", "reviosa.a", "reviosa/b.py", 7)]
    edges = graph(sites)
    assert cycles(edges) == [["reviosa.a", "reviosa.b"]]
    message = describe(["reviosa.a", "reviosa.b"], edges)
    assert "reviosa/a.py:3" in message and "reviosa/b.py:7" in message


def _assert_acyclic(edges: dict[str, dict[str, list[ImportSite]]], what: str) -> None:
    found = cycles(edges)
    assert not found, f"{len(found)} {what} import cycle(s); move code so the imports point one way:\n" + \
        "\n".join(describe(c, edges) for c in found)


def test_no_module_import_cycles():
    """No module imports itself back through any chain of imports."""
    _assert_acyclic(MODULE_EDGES, "module")


def test_no_subpackage_import_cycles():
    """Top-level subpackages form a layered graph: no two import each other, directly or around a loop."""
    _assert_acyclic(PACKAGE_EDGES, "subpackage")


def _cli_importers(sites: list[ImportSite]) -> list[ImportSite]:
    return [s for s in sites if subpackage(s.target) == "reviosa.cli" and subpackage(s.source) != "reviosa.cli"]


def test_nothing_imports_the_cli():
    """The CLI is the outermost layer: library code never depends on it."""
    offenders = _cli_importers(SITES)
    assert not offenders, "modules outside reviosa.cli import it:\n" + "\n".join(f"    {s}" for s in offenders)

