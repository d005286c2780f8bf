"""Captures that hold every packet twice: a capture on two interfaces of the path, `tcpdump -i any` on a router,
Windows pktmon on several components. The copies are read once (dissectors/flows.py `Duplicate`, the DTLS layer's
record window `DTLSDuplicate`): the analysis equals the one of the capture without them, and CAPTURE_DUPLICATES
says how many there were.

Before: the baseline sample with its packets doubled was 'degraded: 14 retransmitted TCP segments', DTLS_BACKOFF
read ClientHello retries from the copies, dtls-blocked counted 16 unanswered ClientHellos instead of 8.
The copies here are made by mergecap (each frame twice, same time) and by mergecap with a copy shifted in time
(editcap -t), from the lab's real captures.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from analyzer.analyze import analyze_paths, load_keys

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
CAPTURES = sorted(p.parent for p in SAMPLES.rglob("capture.pcapng"))


def _tools():
    tools = {t: shutil.which(t) for t in ("mergecap", "editcap")}
    if not all(tools.values()):
        pytest.skip("mergecap/editcap not installed")
    return tools


def _doubled(d: Path, tmp: Path, shift: float = 0.0) -> Path:
    tools = _tools()
    src = d / "capture.pcapng"
    copy = src
    if shift:
        copy = tmp / "shifted.pcapng"
        subprocess.run([tools["editcap"], "-t", str(shift), str(src), str(copy)], check=True, capture_output=True)
    out = tmp / "doubled.pcapng"
    subprocess.run([tools["mergecap"], "-w", str(out), str(src), str(copy)], check=True, capture_output=True)
    return out


def _reading(cap: Path, keylog: Path | None, fast_lanes: bool = True):
    keys, info = load_keys([keylog] if keylog else [], [])
    a = analyze_paths([cap], keys, info, fast_lanes=fast_lanes)
    sessions = []
    for s in a.sessions:
        tunnel = s.tunnel.to_json() if s.tunnel is not None else {}
        sessions.append((s.client, s.gateway, s.verdict.outcome, tuple(p.status for p in s.phases),
                         tuple(sorted((f.id, f.severity) for f in s.findings)),
                         {k: tunnel.get(k) for k in ("cstp", "dtls") if k in tunnel}))
    return sessions, [f for f in a.findings if f.id == "CAPTURE_DUPLICATES"]


def _inner(readings):
    """The inner packet counts of every channel, per session (the tunnel's JSON form, frames left out)."""
    out = []
    for *_rest, tunnel in readings:
        out.append({ch: {k: v for k, v in (t or {}).items() if k in ("inner_packets", "inner_bytes",
                                                                      "undecrypted_records")}
                    for ch, t in tunnel.items()})
    return out


@pytest.mark.parametrize("d", CAPTURES, ids=[str(d.relative_to(SAMPLES)) for d in CAPTURES])
def test_every_packet_twice_reads_as_once(tmp_path, d):
    keylog = d / "keys.log" if (d / "keys.log").exists() else None
    doubled = _doubled(d, tmp_path)
    for k in (keylog, None):
        once, none = _reading(d / "capture.pcapng", k)
        twice, copies = _reading(doubled, k)
        assert not none
        assert [r[:5] for r in twice] == [r[:5] for r in once], d
        assert _inner(twice) == _inner(once), d
        if once:
            (f,) = copies
            assert f.severity == "info" and f.evidence["duplicates"] > 0


def test_copies_read_the_same_with_and_without_fast_lanes(tmp_path):
    for name in ("baseline", "dpd-loss", "dtls-blocked"):
        (tmp_path / name).mkdir()
        doubled = _doubled(SAMPLES / name, tmp_path / name)
        keylog = SAMPLES / name / "keys.log"
        fast = _reading(doubled, keylog, True)[0]
        assert fast == _reading(doubled, keylog, False)[0], name
        if name == "baseline":  # the inner packets the comparisons count, once each (the sample's 6 + 9)
            assert _inner(fast)[0]["dtls"]["inner_packets"] == {"c2s": 6, "s2c": 9}


def test_a_segment_again_after_milliseconds_is_a_retransmission(tmp_path):
    """The same TCP segment 5 ms later is a retransmission as before (a sender's, as far as the capture tells); the
    DTLS records it carries again are still copies (a record number is never reused)."""
    doubled = _doubled(SAMPLES / "baseline", tmp_path, shift=0.005)
    keylog = SAMPLES / "baseline" / "keys.log"
    sessions, copies = _reading(doubled, keylog)
    (s,) = sessions
    assert ("TCP_RETRANSMISSIONS", "warning") in s[4]
    assert copies and copies[0].evidence["duplicates"] > 0  # the DTLS records
    # half a millisecond: copies
    near = tmp_path / "near"
    near.mkdir()
    sessions, copies = _reading(_doubled(SAMPLES / "baseline", near, shift=0.0005), keylog)
    assert ("TCP_RETRANSMISSIONS", "warning") not in sessions[0][4] and sessions[0][2] == "healthy"


@pytest.mark.parametrize("name", ["dtls-blocked", "nat-rebinding", "dpd-loss"])
def test_pktmon_defaults_cut_and_doubled_read_as_cut_once(tmp_path, name):
    """Windows pktmon's defaults do both: 128 bytes of each packet, and a copy per component. The copies of cut
    packets are told apart too (the DTLS record numbers in the kept headers, the TCP segments' ends)."""
    tools = _tools()
    cut = tmp_path / "cut.pcapng"
    subprocess.run([tools["editcap"], "-s", "128", str(SAMPLES / name / "capture.pcapng"), str(cut)], check=True,
                   capture_output=True)
    doubled = tmp_path / "cut-doubled.pcapng"
    subprocess.run([tools["mergecap"], "-w", str(doubled), str(cut), str(cut)], check=True, capture_output=True)
    once, none = _reading(cut, None)
    twice, copies = _reading(doubled, None)
    assert [r[:5] for r in twice] == [r[:5] for r in once] and not none and copies
    assert ("CAPTURE_TRUNCATED", "warning") in once[0][4] and once[0][2] in ("degraded", "tunnel-lost")
