"""Rules of the house that the code itself can check (docs/architecture.md).

* `analyzer/` touches no private attribute of another object: it reads, writes or calls ``x._name`` only for
  ``x`` = ``self`` / ``cls``. A layer's state is the layer's own; what another module needs of it is a public
  method of that layer (the fast lanes are a sequence of such calls: docs/architecture.md, "Fast lanes").
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANALYZER = ROOT / "analyzer"

# (file relative to the repository, attribute): private attributes of other objects analyzer/ may touch, each with
# its reason. Keep it empty; add to it only with a comment that says why the owner cannot offer a public way.
ALLOWED: set[tuple[str, str]] = set()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line: expression`` for every attribute ``x._name`` in ``path`` where ``x`` is not self / cls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    rel = path.relative_to(root).as_posix()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if (rel, node.attr) in ALLOWED:
                continue
            out.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_analyzer_touches_no_private_attribute_of_another_object():
    found = [use for path in sorted(ANALYZER.rglob("*.py")) for use in private_uses(path)]
    assert not found, "private attributes of other objects used in analyzer/:\n" + "\n".join(found)


def test_the_check_sees_what_it_must(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "class A:\n"
        "    def f(self, other):\n"
        "        self._mine = 1\n"  # allowed: its own state
        "        other._theirs = 2\n"  # a write
        "        x = other.tls._d\n"  # a read through a chain
        "        other._call()\n"  # a call
        "        return self.__class__, other.__dict__\n"  # dunder names are not private
        "    @classmethod\n"
        "    def g(cls):\n"
        "        return cls._registry\n",  # allowed: the class's own
        encoding="utf-8")
    uses = private_uses(probe, tmp_path)
    assert [u.split(": ", 1)[1] for u in uses] == ["other._theirs", "other.tls._d", "other._call"]
