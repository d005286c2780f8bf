"""Several captures in one run (issue #12 item 10): flows are numbered per capture file, as `tshark -r FILE` numbers
tcp.stream / udp.stream, and every session names the capture(s) it came from.

The oracle is tshark on each file alone. Two cases: two unrelated samples in one run, and one sample cut in two
(a ring buffer's files), where connections run on from the first file into the second.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report import render
from analyzer.report.json_report import to_document

from .conftest import sample
from .helpers import doc as single_doc
from .helpers import ring_pieces


def _tshark_flows(tshark: str, path) -> dict[tuple[str, int], set]:
    """{("tcp"|"udp", stream number): {(address, port), …}} of every flow `tshark -r path` numbers."""
    out = subprocess.run(
        [tshark, "-r", str(path), "-T", "fields", "-E", "separator=|", "-E", "occurrence=l",
         "-e", "tcp.stream", "-e", "udp.stream", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
         "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport"],
        capture_output=True, text=True, check=True).stdout
    flows: dict = {}
    for line in out.splitlines():
        ts, us, s4, d4, s6, d6, tsp, tdp, usp, udp_ = line.split("|")
        src, dst = s4 or s6, d4 or d6
        if ts:
            flows.setdefault(("tcp", int(ts)), set()).update({(src, int(tsp)), (dst, int(tdp))})
        if us:
            flows.setdefault(("udp", int(us)), set()).update({(src, int(usp)), (dst, int(udp_))})
    return flows


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def test_two_samples_number_streams_per_file_and_name_their_capture(tshark):
    names = ["baseline", "auth-fail"]
    caps = [sample(n) / "capture.pcapng" for n in names]
    keys, info = load_keys([sample(n) / "keys.log" for n in names], [])
    analysis = analyze_paths(caps, keys, info)
    d = to_document(analysis, version=__version__, show_secrets=True)
    assert [c["path"] for c in d["captures"]] == [str(c) for c in caps]
    assert len(d["sessions"]) == 2
    for s, name, cap in zip(d["sessions"], names, caps):
        oracle = _tshark_flows(tshark, cap)
        for c in s["connections"]:
            kind, num = c["connection"].split(".stream ")
            assert _endpoint(c["client"]) in oracle.get((kind, int(num)), ()), (name, c, oracle)
        # the same flows, with the same numbers, as when the file is analysed alone
        alone = single_doc(name)["sessions"]
        assert [c["connection"] for c in s["connections"]] == [c["connection"] for x in alone for c in x["connections"]]
    # the old numbering continued from the first file: auth-fail's only TCP connection was "tcp.stream 1"
    assert d["sessions"][1]["connections"][0]["connection"] == "tcp.stream 0"
    for s, cap in zip(d["sessions"], caps):
        assert s["captures"] == [str(cap)]
        assert all(c["capture"] == str(cap) for c in s["connections"])
    # the reports say which capture each session's stream numbers are of
    text = render(analysis, "terminal", version=__version__)
    for part in text.split("Session s")[1:]:
        header = part.split("phase")[0]
        assert sum(str(c) in header for c in caps) == 1, header
    html = render(analysis, "html", version=__version__)
    for i, cap in enumerate(caps, 1):
        sect = html.split(f'id="session-{i}"')[1].split("</dl>")[0]
        assert str(cap) in sect and str(caps[2 - i]) not in sect


def test_one_capture_alone_names_no_capture_in_the_session_header():
    d = sample("baseline")
    keys, info = load_keys([d / "keys.log"], [])
    analysis = analyze_paths([d / "capture.pcapng"], keys, info)
    assert analysis.sessions[0].captures == [str(d / "capture.pcapng")]
    text = render(analysis, "terminal", version=__version__)
    assert "capture:" not in text.split("Session s1")[1].split("phase")[0]


@pytest.mark.parametrize("name,cut", [("reconnect", 60), ("nat-rebinding", 40)])
def test_ring_buffer_pieces_hold_together_and_count_per_file(tshark, tmp_path, name, cut):
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap not installed")
    d = sample(name)
    parts = [tmp_path / "part1.pcapng", tmp_path / "part2.pcapng"]
    subprocess.run([editcap, "-r", str(d / "capture.pcapng"), str(parts[0]), f"1-{cut}"], check=True,
                   capture_output=True)
    subprocess.run([editcap, "-r", str(d / "capture.pcapng"), str(parts[1]), f"{cut + 1}-1000000"], check=True,
                   capture_output=True)
    keys, info = load_keys([d / "keys.log"], [])
    pipes: list = []
    analysis = analyze_paths(parts, keys, info, on_pipeline=pipes.append)
    whole = single_doc(name)
    # cut in two, the capture is still one VPN session per session of the whole capture, over both files
    assert len(analysis.sessions) == len(whole["sessions"])
    assert all(s.captures == [str(p) for p in parts] for s in analysis.sessions if s.end > analysis.captures[1].first)
    # every flow carries the tcp.stream / udp.stream numbers tshark gives it in each file it is in
    flows = pipes[0].flows
    oracle = [_tshark_flows(tshark, p) for p in parts]
    seen: list[set] = [set(), set()]
    for fl in flows.streams() + flows.udp():
        kind = "udp" if hasattr(fl, "a") else "tcp"
        ends = {fl.client, fl.server}
        for cap, num in fl.numbers:
            assert oracle[cap].get((kind, num)) == ends, (kind, cap, num, ends)
            seen[cap].add((kind, num))
    assert seen == [set(o) for o in oracle]
    assert any(len(fl.numbers) == 2 for fl in flows.streams() + flows.udp())  # some run on into the second file
    # the fast lanes (closed at the start of each file, reopened after) change nothing
    slow = analyze_paths(parts, *load_keys([d / "keys.log"], []), fast_lanes=False)
    assert to_document(slow, version="t", show_secrets=True) == to_document(analysis, version="t", show_secrets=True)
    # connections continuing into the second file are named by the first (where they were first seen)
    for s in analysis.sessions:
        for c in s.connections:
            assert c.capture in (str(parts[0]), str(parts[1]))


def test_a_ring_buffer_named_out_of_order_is_read_in_time_order(tmp_path):
    """tcpdump -C names its files `cap`, `cap1`, …, `cap10`: a shell's glob sorts `cap10` before `cap2`. The files
    are read in the time order of their first packets (said on stderr), so the run equals the one in order."""
    d = sample("keepalive-dpd")
    pieces = ring_pieces("keepalive-dpd", 9, tmp_path, stem="piece")
    assert len(pieces) >= 11
    ring = tmp_path / "ring"
    ring.mkdir()
    for i, p in enumerate(pieces):
        p.rename(ring / ("cap" if i == 0 else f"cap{i}"))
    shell = sorted(ring.iterdir())  # cap, cap1, cap10, cap11, cap2, …
    written = [ring / "cap"] + [ring / f"cap{i}" for i in range(1, len(pieces))]
    assert shell != written

    from analyzer.capture import in_time_order
    assert in_time_order(shell) == (written, True)
    assert in_time_order(written) == (written, False)

    def run(paths):
        return subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", "--keylog", str(d / "keys.log"),
                               "--format", "json", *map(str, paths)], capture_output=True, text=True, check=True)

    mixed, ordered = run(shell), run(written)
    assert "reading the captures in the time order of their first packets: cap, cap1, cap2," in mixed.stderr
    assert "time order" not in ordered.stderr
    assert mixed.stdout == ordered.stdout
    (s,) = json.loads(ordered.stdout)["sessions"]
    whole = single_doc("keepalive-dpd")["sessions"][0]
    # (frames are numbered per file: the texts name other frame numbers)
    assert s["verdict"]["outcome"] == whole["verdict"]["outcome"] == "degraded"
    assert s["verdict"]["text"].split(" (frames")[0] == whole["verdict"]["text"].split(" (frames")[0]
    assert [p["status"] for p in s["phases"]] == [p["status"] for p in whole["phases"]]


def test_time_order_keeps_the_order_given_when_a_file_has_no_packet(tmp_path):
    from analyzer.capture import in_time_order
    empty = tmp_path / "empty.pcapng"
    empty.write_bytes(b"")
    b = sample("baseline") / "capture.pcapng"
    k = sample("keepalive-dpd") / "capture.pcapng"
    assert in_time_order([b, empty, k]) == ([b, empty, k], False)
    assert in_time_order([k, b]) == ([b, k], True)  # baseline (2026-11-27) was captured before keepalive-dpd


def test_a_directory_is_every_capture_below_it(tmp_path):
    """`acflow analyze DIR`: a ring buffer's folder as one argument is the files in it, in time order (a key log
    and other files beside them are not captures); a directory without captures is an input error (status 4)."""
    d = sample("keepalive-dpd")
    ring = tmp_path / "ring"
    ring.mkdir()
    files = ring_pieces("keepalive-dpd", 30, ring)
    shutil.copy(d / "keys.log", ring / "keys.log")
    (ring / "notes.txt").write_text("case 4711\n")

    def run(*paths):
        return subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", "--keylog", str(d / "keys.log"),
                               "--format", "json", *map(str, paths)], capture_output=True, text=True)

    by_dir, by_files = run(ring), run(*files)
    assert by_dir.returncode == 0, by_dir.stderr
    assert json.loads(by_dir.stdout)["captures"] == json.loads(by_files.stdout)["captures"]
    assert by_dir.stdout == by_files.stdout
    assert [c["path"] for c in json.loads(by_dir.stdout)["captures"]] == [str(f) for f in files]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run(empty)
    assert r.returncode == 4 and "a directory without capture files" in r.stderr
