"""DTLS_RECORDS_LOST: records of the tunnel's DTLS channel lost before the capture point, read from the gaps in
their senders' record numbers (analyzer/rules/dtls_loss.py, DTLSConnection.sequence_gaps).

The oracle is the other capture of the same path: lab sample both-sides-loss (a router between client and gateway
drops 3 % of the packets at random, both ways) holds the client's capture and the gateway's; every record number
the gateway sent is in the gateway's capture, and the ones the client's capture lacks are the ones lost on the way
down — tshark lists both captures' record numbers. The same the other way for the gateway's capture.
"""
from __future__ import annotations

import subprocess

import pytest

from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document
from dissectors.dtls import DTLSConnection

from .conftest import sample

GATEWAY, CLIENT = "198.18.0.1", "198.18.0.2"


def _analyse(name: str, capture: str = "capture.pcapng", keys: bool = True) -> dict:
    d = sample(name)
    store, info = load_keys([d / "keys.log"] if keys else [], [])
    return to_document(analyze_paths([d / capture], store, info), version="test", show_secrets=False)


def _numbers(tshark: str, path, sender: str) -> dict[int, int]:
    """record number -> frame of the epoch-1 DTLS records ``sender`` sent, as tshark reads ``path``."""
    out = subprocess.run([tshark, "-n", "-r", str(path), "-Y", f"dtls.record.epoch == 1 && ip.src == {sender}",
                          "-T", "fields", "-e", "frame.number", "-e", "dtls.record.sequence_number"],
                         capture_output=True, text=True, check=True).stdout
    numbers = {}
    for line in out.splitlines():
        frame, _, seqs = line.partition("\t")
        for seq in seqs.split(","):
            numbers.setdefault(int(seq), int(frame))
    return numbers


def _finding(docu: dict) -> dict | None:
    [s] = docu["sessions"]
    return next((f for f in s["findings"] if f["id"] == "DTLS_RECORDS_LOST"), None)


@pytest.mark.tshark
@pytest.mark.parametrize("keys", [True, False], ids=["keys", "keyless"])
@pytest.mark.parametrize("capture,sender,other", [("capture.pcapng", GATEWAY, "gateway-side.pcapng"),
                                                  ("gateway-side.pcapng", CLIENT, "capture.pcapng")],
                         ids=["client-side", "gateway-side"])
def test_lost_records_are_the_ones_the_other_capture_has(tshark, capture, sender, other, keys):
    d = sample("both-sides-loss")
    here, there = _numbers(tshark, d / capture, sender), _numbers(tshark, d / other, sender)
    span = range(min(here), max(here) + 1)
    lost = sorted(n for n in span if n not in here)
    assert lost and set(lost) <= set(there)  # the other capture holds every number this one lacks: sent, then lost
    f = _finding(_analyse("both-sides-loss", capture, keys))
    assert f is not None and f["severity"] == "warning"
    direction = "s2c" if sender == GATEWAY else "c2s"
    ev = f["evidence"]["directions"]
    assert set(ev) == {direction}  # the capture's own side sends everything it captures
    assert ev[direction]["lost"] == len(lost) and ev[direction]["records"] == len(span)
    # each gap is told at the record after it: the frame of the first number following each lost run
    after = sorted({here[min(m for m in here if m > n)] for n in lost})
    assert ev[direction]["gap_frames"] == after and f["frames"] == after[:10]
    who = "gateway" if sender == GATEWAY else "client"
    assert f"{len(lost)} of the {who}'s {len(span)} DTLS records" in f["message"]
    [s] = _analyse("both-sides-loss", capture, keys)["sessions"]
    if keys:  # (without keys the keyless reading's own verdict speaks)
        assert s["verdict"]["outcome"] == "degraded" and "DTLS_RECORDS_LOST" in s["verdict"]["findings"]


def test_big_records_lost_name_the_unanswered_mtu_probes():
    """A path MTU black hole toward the client (both-sides-mtu-blackhole): the gateway's big records are the lost
    ones, and its MTU probes went unanswered: the finding says so."""
    f = _finding(_analyse("both-sides-mtu-blackhole"))
    assert f is not None and f["evidence"]["mtu_probes_unanswered"] is True
    assert "MTU probes also went unanswered" in f["message"]
    g = _finding(_analyse("both-sides-mtu-blackhole", "gateway-side.pcapng"))
    assert g is not None and set(g["evidence"]["directions"]) == {"c2s"}


def _record(epoch: int, seq: int, body: bytes = b"\x00" * 24) -> bytes:
    return (bytes([23, 0xFE, 0xFD]) + epoch.to_bytes(2, "big") + seq.to_bytes(6, "big")
            + len(body).to_bytes(2, "big") + body)


def test_sequence_gaps_count_skips_late_records_and_new_epochs():
    """Numbers skipped in an epoch are missing, less those that come late; a copy is no late record; a new
    epoch's numbering starts afresh; a record before the first one taken widens the span."""
    c = DTLSConnection(None)
    ts = 100.0
    for frame, (epoch, seq) in enumerate([(1, 5), (1, 6), (1, 4), (1, 9), (1, 8), (1, 8), (1, 10), (1, 14),
                                          (2, 0), (2, 1), (2, 3)], start=1):
        ts += 0.01
        c.feed("s2c", _record(epoch, seq), ts, frame)
    g = c.sequence_gaps()["s2c"]
    # epoch 1: 4..14 spanned (11 numbers), 4, 5, 6, 8, 9, 10, 14 taken: 7 missing (skipped 2 + 3, 8 late)
    # epoch 2: 0..3 spanned, 2 missing
    assert g["records"] == 11 + 4
    assert g["late"] == 1  # 8, after 9 (its copy is a duplicate, not a late record)
    assert g["missing"] == (11 - 7) + 1
    assert g["gaps"] == 3 and [n for _b, _t, n, _f in g["first_gaps"]] == [2, 3, 1]
    assert [fr for *_x, fr in g["first_gaps"]] == [4, 8, 11]
    assert "c2s" not in c.sequence_gaps()


def test_no_gap_no_field():
    """A flow without missing numbers has no records_missing in the report (baseline)."""
    docu = _analyse("baseline")
    flows = [f for s in docu["sessions"] for p in s["phases"] if p["phase"] == "dtls" and p["details"]
             for f in p["details"].get("flows") or []]
    assert flows and all("records_missing" not in f for f in flows)


@pytest.mark.tshark
def test_records_missing_both_ways_may_be_the_captures_own_holes(tshark, tmp_path):
    """A capture at one end sees every record its own end sends: records of both ends missing (here the client's
    capture of both-sides-loss with three of the client's own records deleted, as a capturing program that dropped
    them would) may be the capture's holes — information, saying so, not the path's loss (warning)."""
    d = sample("both-sides-loss")
    own = sorted(_numbers(tshark, d / "capture.pcapng", CLIENT).items())
    frames = [fr for _n, fr in own[10:40:10]]  # three of the client's records, apart
    cut = tmp_path / "holes.pcapng"
    subprocess.run(["editcap", str(d / "capture.pcapng"), str(cut), *map(str, frames)], check=True,
                   capture_output=True)
    store, info = load_keys([d / "keys.log"], [])
    f = _finding(to_document(analyze_paths([cut], store, info), version="test", show_secrets=False))
    assert f is not None and f["severity"] == "info"
    assert set(f["evidence"]["directions"]) == {"c2s", "s2c"} and f["evidence"]["directions"]["c2s"]["lost"] == 3
    assert "the capturing program itself missed them" in f["message"]


@pytest.mark.parametrize("name,shown", [("both-sides-loss", True), ("baseline", False)])
def test_terminal_and_html_tell_the_records_lost_per_direction(name, shown):
    """The session's Tunnel part (terminal and HTML) tells the DTLS records lost per direction whenever a number is
    missing (below the finding's threshold too), and says nothing of them on a clean path."""
    from analyzer.report.html import render_html
    from analyzer.report.terminal import render_terminal

    d = sample(name)
    a = analyze_paths([d / "capture.pcapng"], *load_keys([d / "keys.log"], []))
    text = " ".join(render_terminal(a, version="test", width=200).split())
    html = render_html(a, version="test")
    line = "client→gateway 0 of 65 (0.0 %), gateway→client 4 of 65 (6.2 %)"
    assert ("DTLS records lost before the capture point (their record numbers skip): " + line in text) is shown
    assert (f"records lost before the capture point: {line}" in html) is shown
    assert ("records lost before the capture point" in text + html) is shown


@pytest.mark.tshark
def test_the_finding_says_when_the_records_were_lost(tshark):
    """Each gap's time is that of the record after it (tshark's time of the gap frames); the message spans them."""
    d = sample("both-sides-loss")
    docu = _analyse("both-sides-loss")
    f = _finding(docu)
    ev = f["evidence"]["directions"]["s2c"]
    [s] = docu["sessions"]
    times = ev["gap_times"]
    out = subprocess.run([tshark, "-n", "-r", str(d / "capture.pcapng"), "-T", "fields", "-e", "frame.number", "-e",
                          "frame.time_epoch"], capture_output=True, text=True, check=True).stdout
    epoch = {int(a): float(b) for a, b in (line.split("\t") for line in out.splitlines())}
    assert times == pytest.approx([epoch[fr] for fr in ev["gap_frames"]], abs=1e-6)
    assert f"from +{times[0] - s['start']:.1f} s to +{times[-1] - s['start']:.1f} s" in f["message"]
    assert f["time"] == times[0]


def test_numbers_skipped_across_a_long_silence_are_an_interruption_not_loss():
    """A run of numbers skipped across more than OUTAGE_S of silence (a path down, a laptop asleep: the findings of
    silences tell it) is counted apart, out of the rate; the short gaps are the loss."""
    from analyzer.phases.dtls import DTLSRecordGap, DTLSRecordsMissing
    from analyzer.rules.dtls_loss import OUTAGE_S, lost

    m = DTLSRecordsMissing(records=400, missing=60, late=0, gaps=4, first_gaps=[
        DTLSRecordGap(before=10.0, time=10.05, missing=2, frame=20),
        DTLSRecordGap(before=11.0, time=11.0 + OUTAGE_S + 1, missing=50, frame=40),
        DTLSRecordGap(before=30.0, time=30.1, missing=5, frame=60),
        DTLSRecordGap(before=31.0, time=31.2, missing=3, frame=70)])
    n, outage, gaps, n_gaps = lost(m)
    assert (n, outage, n_gaps) == (10, 50, 3) and [g.frame for g in gaps] == [20, 60, 70]


@pytest.mark.tshark
def test_records_lost_in_a_capture_with_tcp_holes_are_information(tshark, tmp_path):
    """The gateway's records lost on the way down (both-sides-loss, client side) in a capture that also misses TCP
    data of the session (a gateway segment of the tunnel's TLS connection deleted: CAPTURE_GAP) may be the capture's
    own holes: information naming the connection, no longer a warning."""
    d = sample("both-sides-loss")
    out = subprocess.run([tshark, "-n", "-r", str(d / "capture.pcapng"), "-Y",
                          f"tcp.len > 0 && ip.src == {GATEWAY}", "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True).stdout
    segment = [int(x) for x in out.split()][-2]  # a data segment the client acknowledged after it
    cut = tmp_path / "hole.pcapng"
    subprocess.run(["editcap", str(d / "capture.pcapng"), str(cut), str(segment)], check=True, capture_output=True)
    store, info = load_keys([d / "keys.log"], [])
    docu = to_document(analyze_paths([cut], store, info), version="test", show_secrets=False)
    [s] = docu["sessions"]
    assert "CAPTURE_GAP" in [x["id"] for x in s["findings"]]
    f = _finding(docu)
    assert f is not None and f["severity"] == "info" and f["evidence"]["capture_holes"] == ["tcp.stream 0"]
    assert "The capture itself missed data on tcp.stream 0 (CAPTURE_GAP)" in f["message"]
