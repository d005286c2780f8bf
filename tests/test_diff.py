"""`acflow diff` (analyzer/diff.py, analyzer/diff_run.py, analyzer/report/diff_report.py) on the committed lab
captures: a capture against itself is the same (exit 0); the mtu scenario against the baseline names the headers,
tunnel parameters and findings that changed (exit 1); JSON reports are accepted as inputs; --ignore, pairing,
unusable inputs."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

from analyzer.diff import diff_documents
from analyzer.report.diff_report import render_diff

from .conftest import facts, sample
from .helpers import doc


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer.cli", "diff", *args], capture_output=True, text=True)


def cap(name: str) -> str:
    return str(sample(name) / "capture.pcapng")


def key(name: str) -> str:
    return str(sample(name) / "keys.log")


def _fields(result) -> set[str]:
    return {c.field for p in result.pairs for c in p.changes}


def test_a_capture_against_itself_is_the_same():
    p = run(cap("baseline"), cap("baseline"), "--keylog", key("baseline"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SAME" in p.stdout and "difference" not in p.stdout


def test_baseline_against_mtu_names_headers_parameters_and_findings():
    p = run(cap("baseline"), cap("mtu"), "--keylog", key("baseline"), "--keylog-new", key("mtu"), "--format", "json")
    assert p.returncode == 1, p.stderr
    d = json.loads(p.stdout)
    assert d["verdict"] == "differs" and len(d["pairs"]) == 1
    ch = {(c["field"], c["where"]): c for c in d["pairs"][0]["changes"]}
    granted = facts("mtu")["tunnel_mtu_granted"]
    mtu = ch[("cstp.response.X-CSTP-MTU", "CONNECT /CSCOSSLC/tunnel #1")]
    assert mtu["kind"] == "changed" and mtu["new"] == str(granted) and mtu["baseline"] != mtu["new"]
    assert ("cstp.response.X-CSTP-Base-MTU", "CONNECT /CSCOSSLC/tunnel #1") in ch
    assert ("cstp.request.X-CSTP-MTU", "CONNECT /CSCOSSLC/tunnel #1") in ch  # the client asked for less too
    assert ch[("tunnel.mtu", "")]["new"] == granted
    # findings: the mtu capture's own warnings are "added", a severity change is "changed"
    base_ids = {f["id"] for f in doc("baseline", show_secrets=False)["sessions"][0]["findings"]}
    mtu_ids = {f["id"] for f in doc("mtu", show_secrets=False)["sessions"][0]["findings"]}
    for fid in mtu_ids - base_ids:
        assert ch[(f"finding.{fid}", "")]["kind"] == "added"
    assert "MTU_EXCEEDED" in mtu_ids - base_ids
    # what differs on every run (the DTLS app id, STRAP keys, cookies) is never a difference
    assert not any("App-ID" in f or "STRAP" in f or "Cookie" in f for f, _ in ch)
    # the rekey countdown moved by seconds: within its tolerance, not a change
    tol = {c["field"] for c in d["pairs"][0]["within_tolerance"]}
    assert "cstp.response.X-CSTP-Rekey-Time" in tol and ("cstp.response.X-CSTP-Rekey-Time", "") not in ch


def test_terminal_output_names_the_change():
    p = run(cap("baseline"), cap("mtu"), "--keylog", key("baseline"), "--keylog-new", key("mtu"))
    assert p.returncode == 1
    assert "cstp.response.X-CSTP-MTU" in p.stdout and "MTU_EXCEEDED" in p.stdout and "DIFFERS" in p.stdout


def test_ignoring_every_change_makes_it_the_same():
    a, b = doc("baseline", show_secrets=False), doc("mtu", show_secrets=False)
    first = diff_documents(a, b)
    assert first.differs
    second = diff_documents(a, b, ignore=sorted(_fields(first)))
    assert not second.differs and second.pairs[0].ignored
    # a prefix and a glob work too
    third = diff_documents(a, b, ignore=["cstp", "tunnel", "traffic.*", "finding.*", "tls.certificate"])
    assert not third.differs, [c.to_json() for c in third.pairs[0].changes]


def test_json_reports_as_inputs(tmp_path):
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps(doc("baseline", show_secrets=False)))
    p = run(str(base), cap("baseline"), "--keylog-new", key("baseline"))
    assert p.returncode == 0, p.stdout + p.stderr
    p = run(str(base), cap("dtls-blocked"), "--keylog-new", key("dtls-blocked"), "--format", "json")
    assert p.returncode == 1
    ch = {c["field"]: c for c in json.loads(p.stdout)["pairs"][0]["changes"]}
    assert ch["phase.dtls"]["baseline"] == "ok" and ch["phase.dtls"]["new"] == "failed"
    assert ch["dtls.established"]["new"] is False
    assert ch["finding.DTLS_NO_RESPONSE"]["kind"] == "added"


def test_html_report_is_escaped(tmp_path):
    b = copy.deepcopy(doc("baseline", show_secrets=False))
    b["sessions"][0]["phases"][4]["details"]["connects"][0]["response_headers"].append(
        ["X-CSTP-Banner", "<script>alert(1)</script>"])
    a_path, b_path, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "d.html"
    a_path.write_text(json.dumps(doc("baseline", show_secrets=False)))
    b_path.write_text(json.dumps(b))
    p = run(str(a_path), str(b_path), "--format", "html", "-o", str(out))
    assert p.returncode == 1
    page = out.read_text()
    assert "X-CSTP-Banner" in page and "<script>" not in page and "&lt;script&gt;" in page
    assert "Content-Security-Policy" in page


def test_different_sessions_are_said_to_be_different():
    a = doc("baseline", show_secrets=False)
    none = dict(a, sessions=[])
    r = diff_documents(a, none)
    assert r.differs and any("different sessions" in n for n in r.notes)
    assert r.pairs[0].changes[0].field == "session" and r.pairs[0].changes[0].kind == "removed"
    # two sessions paired by their groups, not by position
    gs = doc("group-select", show_secrets=False)
    both = dict(a, sessions=[gs["sessions"][0], a["sessions"][0]])
    swapped = dict(a, sessions=[a["sessions"][0], gs["sessions"][0]])
    r = diff_documents(both, swapped)
    assert not r.differs, [c.to_json() for p in r.pairs for c in p.changes]


def test_unusable_inputs_exit_4(tmp_path):
    junk = tmp_path / "junk.pcapng"
    junk.write_bytes(b"not a capture at all")
    notreport = tmp_path / "x.json"
    notreport.write_text('{"hello": 1}')
    for args in ([str(junk), cap("baseline")], [str(notreport), cap("baseline")],
                 [cap("baseline"), str(tmp_path / "missing.pcapng")]):
        p = run(*args)
        assert p.returncode == 4, (args, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr and p.stderr.startswith("acflow diff:")


def _mangle(x, rnd, junk):
    """A copy of ``x`` with about one value in eight replaced by a value of another type."""
    if rnd.random() < 0.125:
        return rnd.choice(junk)
    if isinstance(x, dict):
        return {k: _mangle(v, rnd, junk) for k, v in x.items()}
    if isinstance(x, list):
        return [_mangle(v, rnd, junk) for v in x]
    return x


def test_damaged_reports_never_crash_the_diff():
    import random

    rnd = random.Random(15)
    junk = [None, 7, -1.5, "x", [], {}, [1, "a"], {"k": [None]}, True]
    a = doc("baseline", show_secrets=False)
    for i in range(200):
        b = _mangle(doc(("mtu", "dtls-blocked", "downloader", "group-select")[i % 4], show_secrets=False), rnd, junk)
        if not isinstance(b, dict):
            continue
        r = diff_documents(a, b)
        for fmt in ("terminal", "json", "html"):
            render_diff(r, fmt, version="test")
        diff_documents(b, b)
