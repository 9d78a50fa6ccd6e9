"""The package's layers: no import runs back up, and no file loads another by its path.

utils < contract < data < models, engine < tools, cli, predict, configs. Models and the
engine meet only in ``fssam.contract``: neither imports the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fssam"
ALLOWED = {
    "utils": {"utils"},
    "contract": {"utils", "contract"},
    "data": {"utils", "contract", "data"},
    "models": {"utils", "contract", "data", "models"},
    "engine": {"utils", "contract", "data", "engine"},
}


def layer(module: str) -> str:
    """The layer of a ``fssam.*`` module name (``top`` for tools and entry points)."""
    part = module.split(".")[1] if module.count(".") else ""
    return part if part in ALLOWED else "top"


def imports(path: Path) -> set[str]:
    """Every ``fssam`` module a file imports, at any depth (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fssam"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.startswith("fssam"):
            found.add(node.module)
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def test_no_import_runs_back_up() -> None:
    arrows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = layer(module_name(path))
        if source == "top":
            continue
        for target in imports(path):
            if layer(target) not in ALLOWED[source]:
                arrows.append(f"{module_name(path)} -> {target}")
    assert not arrows, "imports that run back up the layers:\n" + "\n".join(arrows)


def test_the_checker_sees_a_bad_arrow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from fssam.engine.trainer import Trainer\n")
    assert imports(bad) == {"fssam.engine.trainer"}
    assert layer("fssam.engine.trainer") not in ALLOWED["models"]
    assert layer("fssam.tools.toy") == "top" and layer("fssam.contract") == "contract"


def test_no_file_loads_another_by_path() -> None:
    offenders = [str(p.relative_to(REPO)) for folder in ("fssam", "scripts", "tests")
                 for p in sorted((REPO / folder).rglob("*.py"))
                 if p != Path(__file__) and "spec_from_file_location" in p.read_text()]
    assert not offenders, f"files that load others by path: {offenders}"
