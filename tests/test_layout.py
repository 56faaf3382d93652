"""The package's folders are the workflow's stages: a module imports only from its own stage, earlier ones and the
shared core, and the core imports no stage."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import REPO

PACKAGE = REPO / "src" / "mrisr"
# The stages in the order data flows through them; the shared core comes before all of them.
ORDER = {"core": 0, "data": 1, "preprocess": 2, "pairs": 3, "model": 4, "inference": 5, "evaluation": 6}
CORE = {"io", "config", "grids", "figures", "provenance", "workflow"}


def place(module: str) -> str:
    """The stage (or ``core``) of a dotted module name inside mrisr."""
    first = module.split(".")[1] if module.count(".") else ""
    return first if first in ORDER else "core"


def imports(path: Path) -> set[str]:
    """The mrisr modules ``path`` imports, as dotted names (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                found |= {f"{target}.{alias.name}" if not node.module else target for alias in node.names}
            elif node.module and node.module.startswith("mrisr"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mrisr")}
    return found


MODULES = sorted(path for path in PACKAGE.rglob("*.py") if path.name != "cli.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_imports_a_later_stage(path):
    here = place(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    later = sorted(name for name in imports(path) if ORDER[place(name)] > ORDER[here])
    assert not later, f"{path.relative_to(PACKAGE)} ({here}) imports later stages: {later}"


def test_every_module_is_in_a_stage_or_the_core():
    top_level = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "cli"}
    assert top_level == CORE
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()} \
        == set(ORDER) - {"core"}
