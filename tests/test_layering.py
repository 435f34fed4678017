"""The package's layers: imports point downward only, and no two modules need each other.

Every ``import tvlars...`` in the source counts, including those inside functions (a lazy
import is still a dependency). Layers, lowest first: the optimizers with their schedules
and telemetry; data and models; the training loop; Barlow Twins pre-training; the
experiments; the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

LAYER_OF_TOP_LEVEL = {
    "_cache_dir": 0,
    "errors": 0,
    "folder_lock": 0,
    "optim": 0,
    "schedules": 0,
    "schedule_plot": 0,
    "telemetry": 0,
    "data": 1,
    "models": 1,
    "train": 2,
    "pretrain": 3,
    "experiments": 4,
    "commands": 5,
    "cli": 5,
    "__main__": 5,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_tvlars_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "tvlars")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "tvlars":
                found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {
        module_name(path): imported_tvlars_modules(path)
        for path in sorted((SOURCE / "tvlars").rglob("*.py"))
    }


def layer(module: str) -> int | None:
    """The layer of ``tvlars.<top>...``; None for the package itself (``tvlars``)."""
    parts = module.split(".")
    return LAYER_OF_TOP_LEVEL[parts[1]] if len(parts) > 1 else None


def test_every_top_level_module_has_a_layer():
    tops = {module.split(".")[1] for module in import_graph() if "." in module}
    assert tops <= set(LAYER_OF_TOP_LEVEL), sorted(tops - set(LAYER_OF_TOP_LEVEL))


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{module} imports {dep}"
        for module, deps in import_graph().items()
        for dep in deps
        if layer(module) is not None and layer(dep) is not None and layer(dep) > layer(module)
    ]
    assert upward == []


def test_only_the_command_line_imports_the_command_line():
    offenders = [
        f"{module} imports {dep}"
        for module, deps in import_graph().items()
        if layer(module) is not None and layer(module) < LAYER_OF_TOP_LEVEL["cli"]
        for dep in deps
        if dep.split(".")[1:2] in (["cli"], ["commands"])
    ]
    assert offenders == []


def test_no_two_modules_import_each_other():
    graph = import_graph()

    def same_package_chain(a: str, b: str) -> bool:
        # A package's __init__ re-exporting its own modules is not a circle.
        return a.startswith(b + ".") or b.startswith(a + ".")

    circles = sorted(
        f"{a} <-> {b}"
        for a, deps in graph.items()
        for b in deps
        if a < b and a in graph.get(b, ()) and not same_package_chain(a, b)
    )
    assert circles == []


@pytest.mark.parametrize("module", ["tvlars.experiments.grid", "tvlars.experiments.figures"])
def test_library_modules_named_in_the_design_do_not_reach_up(module):
    """The two places that used to reach into the layer above or beside them."""
    deps = import_graph()[module]
    assert "tvlars.cli" not in deps
    assert "tvlars.experiments.cell_run" not in deps
