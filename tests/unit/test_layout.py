"""The code layout of docs/architecture.md holds: no import cycles among the project's modules
(imports inside functions included), models never import the app, thin task modules, a small
top-level app package."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "tasks", "models")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> nx.DiGraph:
    """Module -> module it imports, for every import statement anywhere in the module."""
    files = [path for package in PACKAGES for path in (ROOT / package).rglob("*.py")]
    modules = {module_name(path): path for path in files}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
                if not any(target in modules for target in targets):
                    targets = [base]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph.add_edge(name, target)
    return graph


def test_no_import_cycles():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert cycles == []


def test_models_never_import_the_app():
    graph = import_graph()
    leaks = [(m, t) for m, t in graph.edges if m.startswith("models") and t.startswith("app")]
    assert leaks == []


def test_task_modules_stay_thin():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "tasks").glob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 120} == {}


def test_the_app_package_holds_at_most_ten_modules():
    assert len(list((ROOT / "app").glob("*.py"))) <= 10
