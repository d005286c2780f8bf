"""The JSON report written a session at a time (analyzer/report/json_report.py `iter_json`, what `acflow analyze
--format json -o FILE` writes) is the text of the whole document, and never holds the whole document in memory."""
from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.model import Analysis
from analyzer.report.json_report import dumps, iter_json, to_document
from analyzer.timefmt import parse_tz

from .conftest import ROOT
from .helpers import ALL

SAMPLES = ROOT / "samples"
CAPTURES = [SAMPLES / n / "capture.pcapng" for n in [*ALL, "mixed-traffic", "keepalive-dpd"]] + \
    sorted(SAMPLES.glob("cut/*/capture.pcapng")) + sorted(SAMPLES.glob("scripted/*/capture.pcapng"))[:6]


def _analysis(capture: Path) -> Analysis:
    keylog = capture.parent / "keys.log"
    keys, info = load_keys([keylog] if keylog.exists() else [], [])
    return analyze_paths([capture], keys, info)


def _whole(analysis, **kw) -> str:
    return dumps(to_document(analysis, version=__version__, **kw)) + "\n"


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: str(p.parent.relative_to(SAMPLES)))
def test_pieces_are_the_whole_documents_text(capture):
    analysis = _analysis(capture)
    for kw in ({}, {"show_secrets": True}, {"tz": parse_tz("America/New_York"), "filters": {"client": ["x"]}}):
        pieces = list(iter_json(analysis, version=__version__, **kw))
        assert "".join(pieces) == _whole(analysis, **kw)
        assert len(pieces) == (len(analysis.sessions) + 2 if analysis.sessions else 1)


def test_no_sessions_and_many_sessions():
    empty = Analysis()
    assert "".join(iter_json(empty, version=__version__)) == _whole(empty)
    a = _analysis(SAMPLES / "baseline" / "capture.pcapng")
    a.sessions = a.sessions * 5  # (the same session five times: five objects in the list, commas between them)
    assert "".join(iter_json(a, version=__version__)) == _whole(a)


def test_pieces_hold_one_session_at_a_time():
    """Traced memory while the pieces are made (and dropped, as a file writer does) against the whole document and
    its text: the streamed report's peak is that of one session, not of all of them."""
    a = _analysis(SAMPLES / "baseline" / "capture.pcapng")
    a.sessions = a.sessions * 200
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        size = sum(len(p) for p in iter_json(a, version=__version__))
        _, streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        text = _whole(a)
        _, whole = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == len(text)
    assert streamed * 10 < whole, (streamed, whole)


def test_cli_file_and_standard_output_get_the_same_report(tmp_path):
    d = SAMPLES / "dtls-blocked"
    out = tmp_path / "r.json"
    args = [sys.executable, "-m", "analyzer.cli", "analyze", str(d / "capture.pcapng"), "--keylog",
            str(d / "keys.log"), "--format", "json"]
    subprocess.run([*args, "-o", str(out)], check=False, cwd=ROOT, capture_output=True)
    std = subprocess.run(args, check=False, cwd=ROOT, capture_output=True, text=True)
    assert out.read_text() == std.stdout == _whole(_analysis(d / "capture.pcapng"))
