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


# -- the sessions' texts made on several processes (analyzer/parallel.py `json_pieces`, `acflow analyze --jobs N`)


def _many_sessions(n: int) -> Analysis:
    a = _analysis(SAMPLES / "baseline" / "capture.pcapng")
    a.sessions = a.sessions * n
    return a


def _no_leftovers(tmp_path) -> bool:
    return not list(tmp_path.glob("acflow-json-*"))


@pytest.fixture
def forking(monkeypatch, tmp_path):
    """json_pieces may fork here (pytest's own threads aside) and makes its files under tmp_path."""
    import tempfile
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("jobs", [2, 3])
def test_sessions_made_on_several_processes_are_the_same_text(forking, jobs):
    from analyzer.parallel import json_pieces

    a = _many_sessions(41)  # (not a multiple of the processes: the last round is short)
    a.sessions[7] = _analysis(SAMPLES / "dtls-blocked" / "capture.pcapng").sessions[0]  # not all the same
    for kw in ({}, {"show_secrets": True, "tz": parse_tz("Asia/Tokyo")}):
        pieces = json_pieces(a, jobs, **kw)
        assert pieces is not None
        assert "".join(iter_json(a, version=__version__, session_pieces=pieces, **kw)) == _whole(a, **kw)
        assert _no_leftovers(forking)


def test_sessions_made_here_when_forking_does_not_pay_or_is_unsafe(forking, monkeypatch):
    import threading

    from analyzer import parallel

    assert parallel.json_pieces(_many_sessions(parallel.JSON_MIN_SESSIONS * 2 - 1), 2) is None  # too few
    assert parallel.json_pieces(_many_sessions(40), 1) is None
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # another thread: no fork
    assert parallel.json_pieces(_many_sessions(40), 2) is None
    assert _no_leftovers(forking)


def test_a_child_that_dies_leaves_the_sessions_to_this_process(forking, monkeypatch):
    import os
    import signal

    from analyzer import parallel
    from analyzer.report import json_report

    me = os.getpid()
    real = json_report.session_piece

    def dying(*a, **k):
        if os.getpid() != me:  # a child: killed as the OOM killer would
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)

    monkeypatch.setattr(json_report, "session_piece", dying)
    a = _many_sessions(40)
    assert parallel.json_pieces(a, 2) is None
    assert _no_leftovers(forking)


def test_a_reader_dropped_half_way_leaves_no_files(forking):
    import gc

    from analyzer.parallel import json_pieces

    a = _many_sessions(40)
    pieces = json_pieces(a, 2)
    assert list(forking.glob("acflow-json-*"))
    next(pieces)
    del pieces
    gc.collect()
    assert _no_leftovers(forking)
    unread = json_pieces(a, 2)  # never started
    del unread
    gc.collect()
    assert _no_leftovers(forking)


def test_cli_jobs_report_made_on_several_processes(forking, monkeypatch):
    """`acflow analyze --jobs 2 -o FILE` on a capture of many clients: the file's report is the one process's, its
    sessions' texts made on two processes."""
    import io
    from contextlib import redirect_stdout

    from analyzer import parallel
    from analyzer.analyze import run_analyze
    from bench.scale import merge_clients

    from .test_jobs import MANY

    capture = forking / "many.pcapng"
    merge_clients([SAMPLES / n / "capture.pcapng" for n in MANY], capture)
    keylogs = [SAMPLES / n / "keys.log" for n in MANY]
    monkeypatch.setattr(parallel, "JSON_MIN_SESSIONS", 1)
    made: list = []
    real = parallel.json_pieces

    def noting(analysis, jobs, **kw):
        pieces = real(analysis, jobs, **kw)
        made.append((jobs, pieces is not None))
        return pieces

    monkeypatch.setattr(parallel, "json_pieces", noting)
    out = {}
    for jobs in (1, 2):
        path = forking / f"r{jobs}.json"
        with redirect_stdout(io.StringIO()):
            run_analyze(captures=[str(capture)], keylogs=keylogs, rsa_keys=[], fmt="json", output=str(path),
                        verbose=False, show_secrets=False, export_inner=None, jobs=jobs)
        out[jobs] = path.read_text()
    assert out[1] == out[2]
    assert made == [(2, True)]  # --jobs 1: not asked; --jobs 2: the sessions' texts made on two processes
    assert _no_leftovers(forking)
