"""`acflow live` streams frames through the same pipeline as `analyze` (here: a pcapng stream on stdin)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from .conftest import ROOT, sample


def test_live_stdin_matches_analyze():
    d = sample("legacy-dtls")
    cap = (d / "capture.pcapng").read_bytes()
    live = subprocess.run([sys.executable, "-m", "analyzer.cli", "live", "--stdin", "--keylog", str(d / "keys.log"),
                           "--format", "json"], input=cap, capture_output=True)
    assert live.returncode == 0, live.stderr
    ana = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(d / "capture.pcapng"), "--keylog",
                          str(d / "keys.log"), "--format", "json"], capture_output=True)
    a, b = json.loads(live.stdout), json.loads(ana.stdout)
    assert [[(p["phase"], p["status"], p["frames"]) for p in s["phases"]] for s in a["sessions"]] == \
        [[(p["phase"], p["status"], p["frames"]) for p in s["phases"]] for s in b["sessions"]]
    assert [f["id"] for f in a["sessions"][0]["findings"]] == [f["id"] for f in b["sessions"][0]["findings"]]


def test_live_needs_a_source():
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "live"], capture_output=True, text=True)
    assert p.returncode == 2 and "--stdin" in p.stderr


def _live(*args, env=None, user=None, input=None, timeout=60):
    cmd = [sys.executable, "-m", "analyzer.cli", "live", *args]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=input is None, input=input, env=env, timeout=timeout,
                          cwd=ROOT)


def _one_clear_line(p, *words):
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("acflow live: "), p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    for w in words:
        assert w in lines[0], lines[0]


def test_live_refuses_before_capturing(tmp_path):
    """What prevents capturing is one clear line and exit 4, before any capture starts."""
    _one_clear_line(_live("-i", "acflow-nonexistent0"), "no network interface", "acflow-nonexistent0")
    _one_clear_line(_live("-i", "lo", "--keylog", str(tmp_path / "nodir" / "keys.log")), "does not exist",
                    "nodir")
    _one_clear_line(_live("-i", "lo", "-o", str(tmp_path / "nodir" / "r.json")), "report", "does not exist")
    _one_clear_line(_live("-i", "lo", "--write", str(tmp_path / "nodir" / "w.pcapng")), "--write", "does not exist")
    env = dict(os.environ, PATH=str(tmp_path))  # no dumpcap on PATH
    _one_clear_line(_live("-i", "lo", env=env), "dumpcap not found")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() != 0:  # root writes anywhere
        _one_clear_line(_live("-i", "lo", "-o", str(ro / "r.json")), "cannot create files")


def test_live_no_permission_to_capture():
    """dumpcap refuses (a user without capture rights): its reason in one line, exit 4."""
    if os.geteuid() != 0 or shutil.which("dumpcap") is None:
        pytest.skip("needs root (to drop the capture rights) and dumpcap")
    if shutil.which("unshare") and subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode == 0:
        # wherever the checkout is: in a new user namespace without a mapping acflow and dumpcap run with no
        # capabilities (after exec), while files are still read with root's own permissions
        p = subprocess.run(["unshare", "--user", sys.executable, "-m", "analyzer.cli", "live", "-i", "lo"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
        _one_clear_line(p, "cannot capture on lo", "permission")
        return
    if shutil.which("runuser") is None:
        pytest.skip("needs user namespaces or runuser")
    probe = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", "import analyzer.live"],
                           capture_output=True, cwd=ROOT)
    if probe.returncode:
        pytest.skip("the checkout is not readable by nobody")
    _one_clear_line(_live("-i", "lo", user="nobody"), "cannot capture on lo", "permission")


def test_live_key_log_that_does_not_exist_yet_is_accepted(tmp_path):
    """A key log whose directory exists is waited for (the client creates it when it starts)."""
    d = sample("baseline")
    p = _live("--stdin", "--keylog", str(tmp_path / "later.log"), "--format", "json",
              input=(d / "capture.pcapng").read_bytes())
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["captures"][0]["keys"]["entries"] == 0
    assert any(ph["status"] == "undecrypted" for s in doc["sessions"] for ph in s["phases"])


def test_ctrl_c_reports_and_a_second_one_aborts(tmp_path):
    """Ctrl-C ends the capture with the report (exit 0); a second one while it stops aborts (exit 130). dumpcap is
    held (SIGSTOP) so that the stop waits for it: the second Ctrl-C lands while acflow live is stopping."""
    if os.geteuid() != 0 or shutil.which("dumpcap") is None or shutil.which("pgrep") is None:
        pytest.skip("needs root (to capture on lo), dumpcap and pgrep")
    for second in (False, True):
        out = tmp_path / f"r{int(second)}.json"
        p = subprocess.Popen([sys.executable, "-m", "analyzer.cli", "live", "-i", "lo", "--format", "json", "-o",
                              str(out)], stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert p.stderr.readline().startswith("acflow live: capturing")
            if second:
                kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
                assert len(kids) == 1  # dumpcap
                os.kill(int(kids[0]), signal.SIGSTOP)
            p.send_signal(signal.SIGINT)
            assert "stopping" in p.stderr.readline()
            if second:
                p.send_signal(signal.SIGINT)
            rc = p.wait(30)
            rest = p.stderr.read()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert "Traceback" not in rest
        if second:
            assert rc == 130 and "aborted" in rest and not out.exists()
        else:
            assert rc == 0 and json.loads(out.read_text())["captures"][0]["path"] == "live:lo"


def test_live_lines_on_a_pipe():
    """Not a terminal: one line per event on standard error (phases, then findings as they are raised)."""
    d = sample("dtls-blocked")
    p = _live("--stdin", "--keylog", str(d / "keys.log"), "--format", "json",
              input=(d / "capture.pcapng").read_bytes())
    assert p.returncode == 0, p.stderr
    lines = p.stderr.decode().splitlines()
    assert lines[0].startswith("acflow live: capturing (<stdin>)")
    rows = [ln.split("  ") for ln in lines[1:]]
    phases = [r[2] for r in rows if r[1] == "s1" and r[2] != "finding"]
    assert phases == ["tls-handshake", "group-selection", "user-auth", "downloader", "cstp-connect", "dtls"]
    assert ["s1", "dtls", "failed"] == next(r[1:4] for r in rows if r[2] == "dtls")
    assert any(r[2] == "finding" and r[3].startswith("DTLS_NO_RESPONSE (warning)") for r in rows)
    assert json.loads(p.stdout)["sessions"][0]["phases"][5]["status"] == "failed"


def test_rich_view_shows_phases_tunnel_and_key_state():
    """The terminal view of a snapshot: the six phases, the tunnel counters, findings; and, before the key log
    has the session's keys, which ClientHello it waits for."""
    from rich.console import Console

    from analyzer.capture import read_capture_batches
    from analyzer.driver import Analyzer
    from analyzer.live import _key_state
    from analyzer.live_view import RichView
    from analyzer.report.json_report import to_document
    from dissectors.keylog import KeyStore
    from dissectors.tls.connection import KeyWait

    d = sample("baseline")
    for with_keys in (True, False):
        an = Analyzer(KeyStore(), key_wait=KeyWait())
        if with_keys:
            an.add_keylog((d / "keys.log").read_text())
        an.start_capture("live:test0")
        for batch in read_capture_batches(d / "capture.pcapng"):
            an.feed_events(batch)
        doc = to_document(an.snapshot(), version="test")
        console = Console(record=True, width=140, color_system=None)
        console.print(RichView.render(doc, {"capture": "live:test0", "frames": 61, "key_state": _key_state(an),
                                            "keylogs": [], "held": an.pipeline.held_datagrams}))
        text = console.export_text()
        if with_keys:
            for name in ("tls-handshake", "group-selection", "user-auth", "downloader", "cstp-connect", "dtls"):
                assert name in text
            assert "tunnel: CSTP ↑1 pkts/18 B" in text and "DTLS ↑" in text and "channel dtls" in text
            assert "SESSION_DISCONNECT" in text
        else:
            assert "waiting for keys for ClientHello frame 8" in text and "DTLS datagram(s) held" in text


def _replayed_events(name: str) -> tuple[list[dict], float]:
    """The live events of sample ``name`` replayed frame by frame, a snapshot after each frame, the capture's
    clock as the wall clock (line rate); returns (events, time of the last frame)."""
    from analyzer.capture import read_capture_batches
    from analyzer.driver import Analyzer
    from analyzer.live import _key_state
    from analyzer.live_view import EventDiffer
    from analyzer.report.json_report import to_document
    from dissectors.keylog import KeyStore
    from dissectors.pcapfile import Frame

    d = sample(name)
    an = Analyzer(KeyStore())
    an.add_keylog((d / "keys.log").read_text())
    an.start_capture("live:test0")
    differ = EventDiffer()
    events: list[dict] = []
    last = 0.0
    for batch in read_capture_batches(d / "capture.pcapng"):
        for ev in batch:
            an.feed_events([ev])
            if type(ev) is Frame:
                last = ev.ts
                events += differ.diff(to_document(an.snapshot(), version="t"), _key_state(an), wall=ev.ts)
    events += differ.diff(to_document(an.finish(), version="t"), _key_state(an), wall=last + 1, final=True)
    return events, last


def test_live_events_wait_for_a_phase_to_settle():
    """A snapshot taken while an answer is on its way shows the phase failed ("CONNECT sent, no answer"): such a
    state is not told until it has lasted, so a clean session streams only its real outcome, and a real failure
    (DTLS blocked) is told while the session still runs."""
    events, _ = _replayed_events("baseline")
    told = [(e["phase"], e["status"]) for e in events if e["event"] == "phase"]
    assert told == [("tls-handshake", "ok"), ("group-selection", "ok"), ("user-auth", "ok"), ("cstp-connect", "ok"),
                    ("dtls", "ok"), ("downloader", "absent")]
    assert {e["id"] for e in events if e["event"] == "finding"} == {"AUTH_MULTI_ROUND", "SESSION_DISCONNECT"}
    events, last = _replayed_events("dtls-blocked")
    dtls = next(e for e in events if e["event"] == "phase" and e["phase"] == "dtls")
    assert dtls["status"] == "failed" and dtls["wall"] < last - 60  # told while the session ran (~100 s)
    raised = next(e for e in events if e["event"] == "finding" and e["id"] == "DTLS_NO_RESPONSE")
    assert raised["wall"] < last - 60


def test_captive_portal_told_as_it_happens():
    """A laptop held at a captive portal (samples/captive-portal-firewall): no session ever begins, and the live
    events say why while the capture runs — the portal's answer first, then the gateway's unanswered SYNs — each
    once, capture-wide (no session); NO_VPN_SESSION stays the report's."""
    from analyzer.live_view import format_line

    events, last = _replayed_events("captive-portal-firewall")
    found = [e for e in events if e["event"] == "finding"]
    assert [e["id"] for e in found] == ["CAPTIVE_PORTAL", "TCP_CONNECT_FAILED"]
    assert all(e["session"] is None and e["status"] == "raised" for e in found)
    assert found[0]["wall"] < last  # told before the capture ended
    assert format_line(found[0]).split("  ")[1] == "-"


@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_write_keeps_the_keys(tmp_path, fmt):
    """--write: the capture with the keys embedded (a pcap stream, as tcpdump writes it, becomes pcapng for that);
    the file alone re-analyses to the same sessions."""
    d = sample("legacy-dtls")
    cap = d / "capture.pcapng"
    if fmt == "pcap":
        if shutil.which("editcap") is None:
            pytest.skip("editcap (Wireshark) not installed")
        cap = tmp_path / "in.pcap"
        subprocess.run(["editcap", "-F", "pcap", str(d / "capture.pcapng"), str(cap)], check=True)
    written = tmp_path / "out.pcapng"
    p = _live("--stdin", "--keylog", str(d / "keys.log"), "--format", "json", "--write", str(written),
              input=cap.read_bytes())
    assert p.returncode == 0, p.stderr
    live = json.loads(p.stdout)
    assert written.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a" and not (tmp_path / "out.pcapng.part").exists()
    a = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(written), "--format", "json"],
                       capture_output=True, text=True, cwd=ROOT, check=True)
    alone = json.loads(a.stdout)
    assert alone["captures"][0]["keys"]["embedded_secrets"] == 1
    assert json.dumps(alone["sessions"]).replace(str(written), "X") == \
        json.dumps(live["sessions"]).replace("<stdin>", "X")
    assert all(ph["status"] in ("ok", "absent") for ph in alone["sessions"][0]["phases"])


def test_a_connection_from_before_the_capture_is_named():
    """Started before the capture (its ClientHello is not in it): the live view says its keys cannot be matched and
    what to do, the connection does not wait for keys, and the report says the same (KEYS_MISSING)."""
    from analyzer.capture import read_capture_batches
    from analyzer.driver import Analyzer
    from analyzer.live import _key_state
    from analyzer.live_view import EventDiffer, format_line
    from analyzer.report.json_report import to_document
    from dissectors.keylog import KeyStore
    from dissectors.pcapfile import Frame
    from dissectors.tls.connection import KeyWait

    d = sample("baseline")
    evs = [ev for b in read_capture_batches(d / "capture.pcapng") for ev in b]
    an = Analyzer(KeyStore(), key_wait=KeyWait())
    an.add_keylog((d / "keys.log").read_text())
    an.start_capture("live:test0")
    an.feed_events([ev for ev in evs if type(ev) is not Frame or ev.number > 20])  # joined after the handshake
    assert not any(c.tls.waiting_for_keys for c in an.pipeline.tcp.values())
    lines = [format_line(e) for e in EventDiffer().diff(to_document(an.snapshot(), version="t"), _key_state(an))]
    assert any("keys  unmatchable  tcp.stream 0 started before the capture: its keys cannot be matched; start "
               "acflow live before the client connects" in ln for ln in lines), lines
    doc = to_document(an.finish(), version="t")
    km = [f for s in doc["sessions"] for f in s["findings"] if f["id"] == "KEYS_MISSING"]
    assert km and km[0]["evidence"]["client_hello_captured"] is False


def test_live_rate_bench_runs(capsys):
    """bench/live_rate.py end to end on the committed baseline sample (2 s at line rate; no timing asserted)."""
    from bench import live_rate

    from .conftest import SAMPLES

    assert live_rate.main(["--modes", "baseline", "--cache", str(SAMPLES)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("baseline: ")
    r = json.loads(line[len("baseline: "):])["acflow"]
    assert r["returncode"] == 0 and r["phases"]["dtls"] == "ok" and r["inner_packets"] == {"c2s": 6, "s2c": 9}
    assert r["span_s"] > 1.5 and r["writer_end_late_s"] >= 0
