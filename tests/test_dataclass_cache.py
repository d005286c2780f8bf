"""analyzer/_dataclass_cache.py: the compiled methods of acflow's dataclasses kept between runs. The classes made
with the table are the ones `dataclasses` makes without it, the table is used when present, ignored when damaged,
and written only where Python writes bytecode."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import ROOT

# every dataclass method generated in acflow's modules: its code object exactly (marshal), annotations, defaults and
# the names it closes over; with "plain", `dataclasses` is left as it is (the table is not installed)
_PROBE = r"""
import sys
if sys.argv[1] == "plain":
    import builtins, dataclasses
    dataclasses.exec = builtins.exec  # (install() leaves a module whose exec is already set alone)
import dataclasses, hashlib, importlib, json, marshal, pkgutil
import analyzer, dissectors
from analyzer import _dataclass_cache
names = sorted(m.name for pkg in (analyzer, dissectors)
               for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."))
prints = {}
for name in names:
    mod = importlib.import_module(name)
    for cname, cls in sorted(vars(mod).items()):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == name):
            continue
        for attr, fn in sorted(vars(cls).items()):
            code = getattr(fn, "__code__", None)
            if code is None or code.co_filename != "<string>":
                continue
            prints[f"{name}.{cname}.{attr}"] = [hashlib.sha1(marshal.dumps(code)).hexdigest(),
                                                repr(fn.__annotations__), repr(fn.__defaults__),
                                                repr(fn.__kwdefaults__), list(code.co_freevars)]
print(json.dumps({"stats": _dataclass_cache.stats(), "prints": prints,
                  "table": str(_dataclass_cache.table_path())}))
"""


def _probe(tmp_path, mode: str, write: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"PYTHONPYCACHEPREFIX": str(tmp_path / "pycache"), "PYTHONPATH": str(ROOT)})
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    p = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, cwd=str(tmp_path), capture_output=True,
                       text=True, check=False, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


def test_methods_are_the_same_with_and_without_the_table(tmp_path):
    plain = _probe(tmp_path, "plain")
    assert plain["stats"] == {"loaded": 0, "compiled": 0, "reused": 0}  # not installed
    first = _probe(tmp_path, "table")  # compiles every text, writes the table at exit
    second = _probe(tmp_path, "table")  # loads it: compiles nothing
    assert len(plain["prints"]) > 300
    assert first["prints"] == plain["prints"] and second["prints"] == plain["prints"]
    assert first["stats"]["loaded"] == 0 and first["stats"]["compiled"] > 300
    assert second["stats"]["compiled"] == 0 and second["stats"]["reused"] == first["stats"]["compiled"]
    assert second["table"].startswith(str(tmp_path / "pycache"))  # beside the bytecode (PYTHONPYCACHEPREFIX)


def test_damaged_table_is_ignored_and_written_again(tmp_path):
    table = _probe(tmp_path, "table")["table"]
    for damage in (b"", b"\x00" * 64, (open(table, "rb").read()[:4] + b"\xff" * 1000),
                   open(table, "rb").read()[:5000]):
        with open(table, "wb") as f:
            f.write(damage)
        again = _probe(tmp_path, "table")
        assert again["stats"]["loaded"] == 0 and again["stats"]["compiled"] > 300
        assert _probe(tmp_path, "table")["stats"]["compiled"] == 0  # the run before wrote a good one


def test_no_table_written_when_python_writes_no_bytecode(tmp_path):
    out = _probe(tmp_path, "table", write=False)
    assert out["stats"]["compiled"] > 300
    assert not os.path.exists(out["table"])
