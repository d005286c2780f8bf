"""Rules of the house that the code itself can check (docs/architecture.md).

* `analyzer/` touches no private attribute of another object: it reads, writes or calls ``x._name`` only for
  ``x`` = ``self`` / ``cls``. A layer's state is the layer's own; what another module needs of it is a public
  method of that layer (the fast lanes are a sequence of such calls: docs/architecture.md, "Fast lanes").
* The state a layer's fast method checks before taking the common case (TLS direction, TLS record reader, DTLS
  connection) has every one of its fields placed: checked, or not in the way. A new field fails the test until
  someone decides which.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANALYZER = ROOT / "analyzer"

# (file relative to the repository, attribute): private attributes of other objects analyzer/ may touch, each with
# its reason. Keep it empty; add to it only with a comment that says why the owner cannot offer a public way.
ALLOWED: set[tuple[str, str]] = {
    # the standard library's own names with a leading underscore: os._exit (documented: end the process without
    # the interpreter's teardown) and atexit._run_exitfuncs (the exit handlers, run before it): `exit_now`
    ("analyzer/analyze.py", "_exit"),
    ("analyzer/analyze.py", "_run_exitfuncs"),
}


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


# -- the fast methods' view of their layer's state ------------------------------------------------------------
#
# A fast method (docs/architecture.md, "Fast lanes") takes the common case only when the state it checked says so.
# A field added to that state later must be placed below, in "checked" (the fast method looks at it) or in
# "not in the way" (it cannot change how the common case is handled), so that nobody adds a flag the fast path
# would silently ignore.


def test_tls_steady_check_places_every_field_of_a_direction():
    from dissectors.tls.connection import _Dir

    checked = {  # TLSConnection._steady / feed_application_data
        "cipher", "dead", "decrypting", "early", "encrypted", "epoch", "ok_epoch", "reader", "seq", "seq_lost",
        "steady_gen", "switch", "tls13", "unverified", "zlib"}
    not_in_the_way = {  # read on other paths only: key changes, failures, resynchronisation, early data
        "app_gen", "app_probe", "app_secret", "early_seq", "fail_epoch", "hs", "missing", "name", "nonce_offset",
        "phase", "reason", "region_known",
        # after missing data only: the reader is then out of step (the fast method needs it in step), and a direction
        # whose ChangeCipherSpec was missed is not yet encrypted (it needs it encrypted)
        "gapped", "late_ts"}
    assert set(_Dir.__slots__) == checked | not_in_the_way


def test_tls_record_reader_fields_are_placed():
    from dissectors.tls.record import RecordReader

    checked = {  # RecordReader.in_step / open_records
        "_base", "_buf", "_candidate", "_frames", "_off", "avg_wire", "last_end", "max_len", "records", "synced",
        "_cut"}  # (a record the capture cut, waiting for its last bytes: not in step; `_hole` is only set with it)
    not_in_the_way = {"_pattern", "_scanned", "expected_version", "min_len", "require_chain",  # resync only
                      "_hole"}
    assert set(RecordReader.__slots__) == checked | not_in_the_way


def test_dtls_steady_check_places_every_field_of_a_connection():
    from dissectors.dtls.connection import DTLSConnection

    checked = {  # DTLSConnection._steady_for / feed_application_record
        "_backlog", "_epochs", "_replay_wanted", "_steady", "datagrams", "gen", "records",
        "_window"}  # (the duplicate window: the fast path takes only a record newer than any, and notes it)
    not_in_the_way = {  # handshakes and keys reach the fast path through _epochs (derived by feed / set_keys)
        "_handshakes", "_hs", "_keys", "_orphan", "_serial", "backlog_dropped",
        "_max_backlog_bytes", "_backlog_bytes",  # (the backlog's bound: only _backlog's emptiness matters to it)
        "_plain", "duplicates",  # epoch-0 records and the copies counted: the general path's
        "_gaps"}  # record numbers skipped: a record out of sequence only, which the fast path never takes
    assert set(vars(DTLSConnection(None))) == checked | not_in_the_way
