"""Start-up: the methods `dataclasses` generates for acflow's dataclasses, compiled once and kept between runs.

Creating a dataclass compiles generated source text, one ``exec`` per method (``__init__``, ``__repr__``, ``__eq__``,
``__setattr__`` of a frozen class…): for acflow's ~125 dataclasses that was half of what importing acflow costs
(~55 of ~155 ms of imports here). The text depends on the class's fields only, so its compiled code can be
kept as Python keeps a module's bytecode: `install` has `dataclasses` compile the texts of acflow's own classes
(modules of analyzer/, dissectors/, replay/) through a table of code objects keyed by the text's SHA-1. The table is
read from a file beside acflow's bytecode (`importlib.util.cache_from_source`: ``__pycache__`` or
PYTHONPYCACHEPREFIX) and, when this run compiled texts it lacked, written back at exit — never when Python writes no
bytecode (PYTHONDONTWRITEBYTECODE, ``-B``). The file starts with the interpreter's bytecode magic number; a file
that does not match, cannot be read or does not load is ignored (the texts are compiled as before). The code
compiled is what ``exec`` of the text compiles in `dataclasses` (no inherited ``__future__`` flags), so the classes
are the same (tests/test_dataclass_cache.py compares every generated method with and without the table).
"""
from __future__ import annotations

import atexit
import builtins
import dataclasses
import hashlib
import importlib.util
import marshal
import os
import sys
import types
from pathlib import Path

_PACKAGES = frozenset({"analyzer", "dissectors", "replay"})
_MAX = 4000  # entries kept in the file at most (texts no class generates any more are dropped past it)

_state: dict | None = None


def table_path() -> Path | None:
    """The table's file for this interpreter (None: this Python keeps no bytecode cache)."""
    try:
        pyc = importlib.util.cache_from_source(str(Path(__file__).with_name("dataclass_fns.py")))
    except (NotImplementedError, ValueError):
        return None
    return Path(pyc).with_suffix(".marshal")


def _load(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = path.read_bytes()
        if data[:4] != importlib.util.MAGIC_NUMBER:
            return {}
        table = marshal.loads(memoryview(data)[4:])
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if type(table) is not dict:
        return {}
    return {k: v for k, v in table.items() if type(k) is bytes and type(v) is types.CodeType}


def install() -> None:
    """Route the compiling of acflow's dataclass methods through the table (once per process)."""
    global _state  # noqa: PLW0603 - one table per process
    if _state is not None or "exec" in vars(dataclasses):
        return
    path = table_path()
    _state = {"path": path, "codes": _load(path), "new": {}, "used": set()}
    dataclasses.exec = _exec  # `dataclasses` calls exec by its global name: this one is found first
    atexit.register(_save)


def stats() -> dict:
    """How many code objects the table held when loaded, and how many texts this process compiled."""
    if _state is None:
        return {"loaded": 0, "compiled": 0, "reused": 0}
    return {"loaded": len(_state["codes"]), "compiled": len(_state["new"]),
            "reused": len(_state["used"] - _state["new"].keys())}


def _exec(source, globals=None, locals=None):  # noqa: A002 - exec's own parameter names
    if type(source) is str and type(globals) is dict and \
            str(globals.get("__name__", "")).partition(".")[0] in _PACKAGES:
        key = hashlib.sha1(source.encode()).digest()
        st = _state
        code = st["codes"].get(key)
        if code is None:
            code = st["new"].get(key)
            if code is None:
                # (dont_inherit: as exec compiles the text inside `dataclasses`, without this module's __future__
                # annotations flag)
                code = st["new"][key] = compile(source, "<string>", "exec", dont_inherit=True)
        st["used"].add(key)
        source = code
    return builtins.exec(source, globals, locals)


def _save() -> None:
    st = _state
    if st is None or not st["new"] or st["path"] is None or sys.dont_write_bytecode:
        return
    table = {**st["codes"], **st["new"]}
    if len(table) > _MAX:
        table = {k: table[k] for k in st["used"]}
    path = st["path"]
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(importlib.util.MAGIC_NUMBER)
            marshal.dump(table, f)
        os.replace(tmp, path)  # (another process writing at the same time: one of the two complete files wins)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
