"""The shape the runtime is held to (docs/ARCHITECTURE.md): small classes and functions, no import
cycle inside the package, each framework imported in one or two modules, public APIs only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "sweeps"
MODULES = {p.stem: ast.parse(p.read_text()) for p in PACKAGE.glob("*.py")}


def test_no_class_over_400_lines_and_no_function_over_80() -> None:
    big = [(name, node.name, node.end_lineno - node.lineno + 1)
           for name, tree in MODULES.items() for node in ast.walk(tree)
           if (isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 400)
           or (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80)]
    assert big == []


def _imports(tree: ast.AST) -> set[str]:
    """Top-level names of what a module imports (``.x`` as ``sweeps.x``), wherever in the module."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                out.update(f"sweeps.{node.module.split('.')[0]}" if node.module else
                           {f"sweeps.{alias.name}" for alias in node.names})
            elif node.module:
                out.add(node.module.split(".")[0])
    return out


def test_no_import_cycle_inside_the_package() -> None:
    graph = {name: {m.removeprefix("sweeps.") for m in _imports(tree) if m.startswith("sweeps.")}
             for name, tree in MODULES.items()}

    def visit(name: str, path: tuple[str, ...]) -> None:
        for dep in graph.get(name, ()):
            assert dep not in path, f"import cycle: {' -> '.join(path + (dep,))}"
            visit(dep, path + (dep,))

    for name in graph:
        visit(name, (name,))


def test_ray_mlflow_and_wandb_are_each_imported_in_one_module() -> None:
    where = {lib: sorted(name for name, tree in MODULES.items() if lib in _imports(tree))
             for lib in ("ray", "mlflow", "wandb")}
    assert where == {"ray": ["execution"], "mlflow": ["tracking"], "wandb": ["mirror"]}


def test_no_private_api_of_a_framework_and_no_process_global_trick() -> None:
    text = "\n".join(p.read_text() for p in PACKAGE.glob("*.py"))
    for banned in ("ray._private", "_internal_kv", "gc.freeze", "setpriority", "os.nice(",
                   "artifact_repository_registry", "DELETE FROM", "trial._suggest"):
        assert banned not in text, banned
