"""The package's layers point one way and nothing imports in a circle (read from the source: nothing is imported).

Floors, lowest first: configuration, infrastructure, the core packages (no Dagster), the stage runners (no
Dagster), then the Dagster wiring — orchestration, checks, assets, sensors, the code location — and on top the
in-process runner and the CLI. A module may import its own floor (without a cycle) and the floors below it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import hca_assets

PACKAGE = Path(hca_assets.__file__).parent
CORE = ("dicom", "models", "search", "evaluation", "segmentation", "synthetic", "export", "sources", "lake")
FLOORS: dict[str, int] = {"config": 0, "_infra": 1, **dict.fromkeys(CORE, 2), "stages": 3, "orchestration": 4,
                          "checks": 5, "assets": 6, "sensors": 7, "definitions": 8, "in_process": 9, "cli": 10}
NO_DAGSTER = {"config", "_infra", *CORE, "stages"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (TYPE_CHECKING blocks too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} | {
        m.split(".")[0] for m in _imports(path) if m.split(".")[0] in ("dagster", "dagster_dbt")}
        for name, path in modules.items()}


def _part(module: str) -> str:
    """The floor-bearing part: ``hca_assets.stages.deid`` -> ``stages``; the package itself has none."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_package_and_root_module_has_a_floor() -> None:
    parts = {_part(m) for m in _graph()} - {""}
    assert parts and parts <= set(FLOORS), f"modules outside every floor: {sorted(parts - set(FLOORS))}"


def test_imports_point_down() -> None:
    graph = _graph()
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
              if b.startswith("hca_assets.") and _part(a) and FLOORS[_part(b)] > FLOORS[_part(a)]]
    assert graph and not upward, "imports that point up a floor:\n" + "\n".join(sorted(upward))


def test_core_and_stages_never_import_dagster() -> None:
    graph = _graph()
    wired = [a for a, targets in graph.items() if _part(a) in NO_DAGSTER and targets & {"dagster", "dagster_dbt"}]
    assert graph and not wired, f"modules below the Dagster floors that import Dagster: {sorted(wired)}"


def test_no_import_cycle_between_modules() -> None:
    graph = {a: {b for b in targets if b.startswith("hca_assets")} for a, targets in _graph().items()}
    # a package's __init__ importing its own modules is how it re-exports, not a cycle of meaning
    graph = {a: {b for b in targets if not b.startswith(a + ".")} for a, targets in graph.items()}
    assert graph and not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_no_import_cycle_between_packages() -> None:
    packages: dict[str, set[str]] = defaultdict(set)
    for a, targets in _graph().items():
        for b in targets:
            if b.startswith("hca_assets.") and _part(a) and _part(b) != _part(a):
                packages[_part(a)].add(_part(b))
    assert packages and not _cycles(packages), f"package cycles: {_cycles(packages)}"


def _asset_functions() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in sorted((PACKAGE / "assets").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any("asset" in ast.unparse(d) for d in node.decorator_list):
                found.append((f"{path.name}:{node.name}", node))
    return found


def test_assets_are_wiring() -> None:
    """Every asset body is at most 30 lines, and no asset module reads or writes a table or the store itself: the
    stage runners own that I/O."""
    functions = _asset_functions()
    long = [f"{name} ({node.end_lineno - node.lineno + 1} lines)" for name, node in functions
            if node.end_lineno - node.lineno + 1 > 30]
    doing_io = sorted({name.split(":")[0] for name, node in functions for call in ast.walk(node)
                       if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                       and call.func.attr in ("read", "write") and call.args
                       and isinstance(call.args[0], ast.Name) and call.args[0].id == "settings"})
    storage = sorted(a for a, targets in _graph().items() if _part(a) == "assets" and "hca_assets._infra.storage" in targets)
    assert len(functions) >= 19 and not long and not doing_io and not storage, (
        f"too long: {long}; table I/O: {doing_io}; store I/O: {storage}")
