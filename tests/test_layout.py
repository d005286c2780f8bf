"""The project's layout rules (issue #11): the product does not depend on its lab, tests share helpers, not
each other."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path, module_level_only: bool = False) -> set[str]:
    out = set()
    tree = ast.parse(path.read_text(), str(path))
    nodes = [n for top in tree.body for n in ast.walk(top)
             if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))] \
        if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            out.add(base)
    return out


def test_test_modules_do_not_import_each_other():
    bad = {}
    for p in sorted((ROOT / "tests").glob("test_*.py")):
        imported = {m for m in _imports(p) if m.lstrip(".").split(".")[-1].startswith("test_")
                    or m.startswith("tests.test_")}
        if imported:
            bad[p.name] = sorted(imported)
    assert not bad, f"move shared code to tests/helpers.py (or a data module): {bad}"


def test_the_product_does_not_import_the_lab():
    bad = {}
    for pkg in ("analyzer", "dissectors", "replay"):
        for p in sorted((ROOT / pkg).rglob("*.py")):
            mods = {m for m in _imports(p, module_level_only=True)
                    if m.split(".")[0] in ("lab", "samples", "bench", "fuzz", "tests")}
            if mods:
                bad[str(p.relative_to(ROOT))] = sorted(mods)
    # only module-level imports count: `acflow lab` imports the lab of a source checkout inside the command,
    # after checking it is there (analyzer/cli.py _lab_entry)
    assert not bad, bad
