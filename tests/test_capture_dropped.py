"""CAPTURE_DROPPED: packets the capturing program itself reported dropped (pcapng Interface Statistics Blocks), and
what they change: DTLS records missing from such a capture may be its own drops, not the path's (DTLS_RECORDS_LOST
is then information, not a warning).

Live (lab scenario capture-drops, needs root): a real openconnect/ocserv session captured by dumpcap, which is
stopped while a ping flood crosses the tunnel — its buffer overflows and the kernel drops packets of both directions
that the peers exchanged all the same. The oracle is dumpcap's own closing report on stderr (facts.json action
capture-statistics), against acflow's reading of the Interface Statistics Block in the file. Every committed
sample's dumpcap counted its packets and dropped none: acflow reads that too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document
from dissectors.pcapfile import InterfaceStatistics, PcapParser
from lab.netns import missing_tools
from lab.runner import REQUIRED_TOOLS

from .conftest import ROOT, SAMPLES, sample
from .helpers import require as _require


def _doc(cap, keylog=None, jobs: int | None = None) -> dict:
    if jobs is None:
        store, info = load_keys([keylog] if keylog else [], [])
        return to_document(analyze_paths([cap], store, info), version="test", show_secrets=False)
    out = cap.parent / f"jobs{jobs}.json"
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(cap), *(["--keylog", str(keylog)]
                        if keylog else []), "--format", "json", "-o", str(out), "--jobs", str(jobs)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 1), p.stderr
    return json.loads(out.read_text())


@pytest.mark.lab
def test_a_capture_that_dropped_packets_says_so(tmp_path, tshark):
    _require(os.geteuid() == 0, "needs root")
    _require(not missing_tools(REQUIRED_TOOLS), f"not installed: {', '.join(missing_tools(REQUIRED_TOOLS))}")
    p = subprocess.run([sys.executable, "-m", "lab", "--out", str(tmp_path), "capture-drops"], cwd=ROOT,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    out = tmp_path / "capture-drops"
    facts = json.loads((out / "facts.json").read_text())
    [told] = [a for a in facts["actions"] if a["action"] == "capture-statistics"]
    assert told["dropped"] > 0, told  # the flood overflowed the stopped dumpcap's buffer
    cap, keylog = out / "capture.pcapng", out / "keys.log"
    doc = _doc(cap, keylog)
    [itf] = doc["captures"][0]["interfaces"]
    assert itf["dropped"] == told["dropped"] and itf["name"] == told["interface"]
    assert itf["received"] == doc["captures"][0]["frames"]  # dumpcap's isb_ifrecv: the packets it kept
    [f] = [f for f in doc["findings"] if f["id"] == "CAPTURE_DROPPED"]
    assert f["severity"] == "warning" and f["evidence"]["dropped"] == told["dropped"]
    assert f"reported {told['dropped']} packet(s) dropped" in f["message"]
    # the DTLS records the capture lacks, both ways, are the capture's: information, naming the drops
    [s] = doc["sessions"]
    lost = [x for x in s["findings"] if x["id"] == "DTLS_RECORDS_LOST"]
    assert lost and lost[0]["severity"] == "info" and "CAPTURE_DROPPED" in lost[0]["message"]
    assert lost[0]["evidence"]["capture_dropped"] == told["dropped"]
    assert not [x for x in s["findings"] if x["severity"] in ("warning", "error")], s["findings"]
    # the same read on two cores (the Interface Statistics Block is passed by the index walk, read by every shard)
    assert _doc(cap, keylog, jobs=2) == _doc(cap, keylog, jobs=1)


def test_every_dumpcap_sample_counted_its_packets_and_dropped_none():
    """The committed samples' dumpcap wrote an Interface Statistics Block per interface: acflow reads its counters
    (packets kept = the frames of that interface, none dropped) and gives no CAPTURE_DROPPED."""
    checked = 0
    for cap in sorted(SAMPLES.glob("*/capture.pcapng")):
        doc = _doc(cap)
        for itf in doc["captures"][0]["interfaces"]:
            if "received" not in itf:
                continue
            checked += 1
            assert itf["dropped"] == 0, cap
        if len(doc["captures"][0]["interfaces"]) == 1 and "received" in doc["captures"][0]["interfaces"][0]:
            assert doc["captures"][0]["interfaces"][0]["received"] == doc["captures"][0]["frames"], cap
        assert not [f for f in doc["findings"] if f["id"] == "CAPTURE_DROPPED"], cap
    assert checked >= 20


def _with_drops(src, dst, dropped: int) -> None:
    """``src`` with its (dumpcap-written) Interface Statistics Block saying ``dropped`` packets dropped."""
    data = bytearray(src.read_bytes())
    pos = 0
    while pos + 12 <= len(data):
        btype, blen = int.from_bytes(data[pos:pos + 4], "little"), int.from_bytes(data[pos + 4:pos + 8], "little")
        if btype == 5:
            p = pos + 20
            while p + 4 <= pos + blen - 4:
                code, olen = int.from_bytes(data[p:p + 2], "little"), int.from_bytes(data[p + 2:p + 4], "little")
                if code == 5:
                    data[p + 4:p + 12] = dropped.to_bytes(8, "little")
                    dst.write_bytes(bytes(data))
                    return
                if code == 0:
                    break
                p += 4 + ((olen + 3) & ~3)
        pos += blen
    raise AssertionError(f"{src}: no isb_ifdrop")


def test_lost_dtls_records_in_a_capture_that_reports_drops_are_information(tmp_path):
    """both-sides-loss: the gateway's records lost on the way down are a warning — unless the capture says it
    dropped packets itself (its Interface Statistics Block rewritten so): then they may be its own, information."""
    d = sample("both-sides-loss")
    plain = _doc(d / "capture.pcapng", d / "keys.log")
    [f] = [f for s in plain["sessions"] for f in s["findings"] if f["id"] == "DTLS_RECORDS_LOST"]
    assert f["severity"] == "warning" and f["evidence"]["capture_dropped"] == 0
    cap = tmp_path / "reported.pcapng"
    _with_drops(d / "capture.pcapng", cap, 7)
    doc = _doc(cap, d / "keys.log")
    [g] = [f for s in doc["sessions"] for f in s["findings"] if f["id"] == "DTLS_RECORDS_LOST"]
    assert g["severity"] == "info" and "reported 7 packet(s) dropped (CAPTURE_DROPPED)" in g["message"]
    assert [f["id"] for f in doc["findings"]] == ["CAPTURE_DROPPED"]


def test_statistics_blocks_parse_leniently():
    """Counters are read from their options whatever else the block holds; a block without counters or a
    malformed one gives nothing (never an error: nothing else depends on it)."""
    head = bytes.fromhex("0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000")
    idb = bytes.fromhex("01000000140000000100000000000400" "14000000")

    def isb(options: bytes) -> bytes:
        body = (0).to_bytes(4, "little") + bytes(8) + options
        n = 12 + len(body)
        return (5).to_bytes(4, "little") + n.to_bytes(4, "little") + body + n.to_bytes(4, "little")

    def opt(code: int, value: bytes) -> bytes:
        return code.to_bytes(2, "little") + len(value).to_bytes(2, "little") + value + bytes(-len(value) % 4)

    comment = opt(1, b"Counters provided by dumpcap")
    good = isb(comment + opt(4, (61).to_bytes(8, "little")) + opt(5, (3).to_bytes(8, "little")) + opt(0, b""))
    none = isb(comment + opt(0, b""))
    bad = isb(opt(5, (9).to_bytes(4, "little")) + opt(0, b""))  # a 4-byte counter: not a u64
    events = PcapParser().feed(head + idb + good + none + bad)
    stats = [e for e in events if isinstance(e, InterfaceStatistics)]
    assert stats == [InterfaceStatistics(0, 61, 3, None)]
    assert not [e for e in events if type(e).__name__ == "CaptureError"]



def _isb(interface: int, received: int, dropped: int) -> bytes:
    """An Interface Statistics Block as dumpcap writes it (little-endian): comment, isb_ifrecv, isb_ifdrop."""
    def opt(code: int, value: bytes) -> bytes:
        return code.to_bytes(2, "little") + len(value).to_bytes(2, "little") + value + bytes(-len(value) % 4)

    body = (interface.to_bytes(4, "little") + bytes(8) + opt(1, b"Counters provided by dumpcap")
            + opt(4, received.to_bytes(8, "little")) + opt(5, dropped.to_bytes(8, "little")) + opt(0, b""))
    n = 12 + len(body)
    return (5).to_bytes(4, "little") + n.to_bytes(4, "little") + body + n.to_bytes(4, "little")


def test_jobs_read_the_statistics_as_one_process(tmp_path, monkeypatch):
    """A many-client capture (13 samples, each from its own address: the shards really split it) ending with
    Interface Statistics Blocks — the first one's counters overtaken by the second's — read indexed over 2 and 3
    processes, parts of the file each: every shard reads the blocks its walk passed, the document is one process's."""
    from analyzer import parallel
    from bench.scale import merge_clients

    from .helpers import MANY_CLIENTS as MANY
    from .helpers import jobs_parallel, jobs_serial

    cap = tmp_path / "many.pcapng"
    merge_clients([SAMPLES / n / "capture.pcapng" for n in MANY], cap)
    with cap.open("ab") as f:
        f.write(_isb(0, 100, 1) + _isb(0, 1000, 42))
    keylogs = [SAMPLES / n / "keys.log" for n in MANY]
    want = jobs_serial([cap], keylogs, [])
    doc = json.loads(want[0])
    assert [(i.get("received"), i.get("dropped")) for i in doc["captures"][0]["interfaces"]][:1] == [(1000, 42)]
    assert [f["id"] for f in doc["findings"]].count("CAPTURE_DROPPED") == 1
    monkeypatch.setattr(parallel, "INDEX_MIN_BYTES", 0)
    for jobs in (2, 3):
        reading: dict = {}
        assert jobs_parallel([cap], keylogs, [], jobs, reading) == want, f"--jobs {jobs}"
        assert reading["mode"] == "indexed"
