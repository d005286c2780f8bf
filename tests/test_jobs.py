"""`acflow analyze --jobs N` (analyzer/parallel.py) gives the analysis of one process, on every committed capture.

Each capture is analysed in one process and split over 2 and 3 processes by address pair; the JSON documents (with
secrets shown, so nothing is hidden by redaction) and the exported inner packets must be identical. A capture the
parallel path hands back to one process (`ParallelFallback`: flows of different shards depend on each other) must
be one of the few whose reason is known, so that the fallback cannot hide a difference. A many-client capture
(every copy of a session from its own client address) makes sure the shards really split the work.
"""
from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest

from analyzer import __version__, parallel
from analyzer.analyze import load_keys
from analyzer.capture import iter_frames
from analyzer.parallel import (
    ParallelFallback,
    Sharder,
    analyze_paths_parallel,
    analyze_with_jobs,
    assign,
    bucket_of,
    bucket_weights,
    sample_pairs,
)
from analyzer.report.json_report import to_document
from bench.scale import merge_clients, scale_capture

from .conftest import ROOT, SAMPLES
from .helpers import MANY_CLIENTS
from .helpers import jobs_parallel as _parallel
from .helpers import jobs_serial as _serial

CORPUS = ROOT / "tests" / "corpus" / "generated"
#: captures whose shards depend on each other, and why (the parallel path hands them to one process)
FALLBACK: dict[str, str] = {
    "client-roams": "the client reconnects from another address with its cookie: its DTLS session id (given by a "
                    "CONNECT on the new address) also names its flow from the old one, in another address pair and "
                    "shard",
}


def _path(p: str) -> Path:
    """A MANIFEST path: from the repository root (samples/…) or from the corpus directory."""
    return ROOT / p if (ROOT / p).exists() else CORPUS / p


def _cases():
    out = []
    for d in sorted(p.parent for p in SAMPLES.rglob("facts.json") if (p.parent / "capture.pcapng").exists()):
        rsa = d / "server-key.pem" if d.name.startswith("tls12-rsa") else None
        out.append(pytest.param(d / "capture.pcapng", [d / "keys.log"] if (d / "keys.log").exists() else [],
                                [rsa] if rsa else [], id=str(d.relative_to(SAMPLES))))
    manifest = CORPUS / "MANIFEST.json"
    for e in json.loads(manifest.read_text())["files"] if manifest.exists() else []:
        out.append(pytest.param(CORPUS / e["file"], [_path(e["keylog"])] if e.get("keylog") else [],
                                [_path(e["rsa_key"])] if e.get("rsa_key") else [], id="corpus/" + e["file"]))
    return out


@pytest.fixture(params=["indexed", "walked"])
def reading_mode(request, monkeypatch):
    """How the shards read the file: "indexed" (every file, however small, indexed in one part per process: the
    parts start wherever the byte ranges fall, the resync and the check where parts meet run on every capture;
    each part walked and read in windows of 8 KiB),
    or "walked" (every process reads the file whole and builds its own frames only)."""
    if request.param == "indexed":
        monkeypatch.setattr(parallel, "INDEX_MIN_BYTES", 0)
        monkeypatch.setattr(parallel, "_WINDOW", 8192)  # many windows per range, pages given back after each
    else:
        monkeypatch.setattr(parallel, "head_of", lambda path: None)
    return request.param


@pytest.mark.parametrize("capture,keylogs,rsa", _cases())
def test_jobs_give_the_analysis_of_one_process(capture: Path, keylogs, rsa, request, reading_mode):
    name = request.node.callspec.id.removeprefix(reading_mode + "-").removesuffix("-" + reading_mode)
    want = _serial([capture], keylogs, rsa)
    for jobs in (2, 3):
        reading: dict = {}
        try:
            got = _parallel([capture], keylogs, rsa, jobs, reading)
        except ParallelFallback as e:
            assert name in FALLBACK, f"unexpected fallback to one process: {e}"
            continue
        assert got[0] == want[0], f"--jobs {jobs}"
        assert got[1] == want[1], f"--jobs {jobs}: exported inner packets differ"
        if reading_mode == "walked" or name.endswith(".gz"):  # a compressed file cannot be read by ranges
            assert reading.get("mode") == "walked"
        elif name.startswith("corpus/") and not name.startswith("corpus/format/"):
            # a damaged capture is read whole when the index meets what only the parser reproduces
            assert reading.get("mode") in ("walked", "indexed")
        else:  # samples, and the corpus's well-formed pcap/pcapng in every byte order and time resolution
            assert reading.get("mode") == "indexed", f"--jobs {jobs}: a well-formed capture was not indexed"
    if name in FALLBACK:
        with pytest.raises(ParallelFallback):
            _parallel([capture], keylogs, rsa, 2)


MANY = MANY_CLIENTS


@pytest.fixture(scope="module")
def many_clients(tmp_path_factory) -> Path:
    """A gateway-side capture: 13 samples at once, each from its own client address (bench/scale.py)."""
    out = tmp_path_factory.mktemp("jobs") / "many.pcapng"
    merge_clients([SAMPLES / n / "capture.pcapng" for n in MANY], out)
    return out


def test_many_clients_split_and_merge_to_the_same_analysis(many_clients, monkeypatch, tmp_path_factory):
    keylogs = [SAMPLES / n / "keys.log" for n in MANY]
    want = _serial([many_clients], keylogs, [])
    doc = json.loads(want[0])
    assert len({s["client"] for s in doc["sessions"]}) == len(MANY)
    # the shards really split the sessions between them
    weights = sample_pairs([many_clients])
    table, per = assign(bucket_weights(weights), 2)
    assert min(per) > 0.3 * sum(per), per
    sharder = Sharder(2, table)
    assert len({sharder.of_pair(p) for p in weights}) == 2
    # the index pass balances the buckets' frames over the whole capture (no sampling pass)
    head = parallel.head_of(many_clients)
    part = {"path": str(many_clients), "head": head[0], "parts": 1, "part": 0, "window": 1 << 20}
    plans, index_table = parallel.plan_index({(0, 0): parallel.index_part(part)}, [head], 2)
    frames = [sum(len(offsets) for offsets, _o, _b in parallel.shard_parts(plan[0])) for plan in plans]
    assert sum(frames) == plans[0][0]["frames"] and min(frames) > 0.3 * sum(frames), frames
    by_index = Sharder(2, index_table)
    for k in range(2):  # each shard's frames are those the table gives it, by their address pair's bucket
        ordinals = {n for _off, ords, base in parallel.shard_parts(plans[k][0]) for n in (o + base for o in ords)}
        assert ordinals == {n for n, fr in enumerate(iter_frames(many_clients), 1) if by_index(fr) == k}
    assert {index_table[bucket_of(p)] for p in weights} == {0, 1}
    # the index parts written to files (as --jobs does: nothing the size of the frame count is pickled between
    # processes) give the same plan and the same frames per shard
    spill = tmp_path_factory.mktemp("spill")
    spilled = {(0, k): parallel.index_part(dict(part, parts=3, part=k, spill=str(spill))) for k in range(3)}
    kept = {(0, k): parallel.index_part(dict(part, parts=3, part=k)) for k in range(3)}
    assert all(isinstance(r["offsets"], str) and len(pickle.dumps(r)) < 1000 for r in spilled.values())
    got, got_table = parallel.plan_index(spilled, [head], 3)
    want_plans, want_table = parallel.plan_index(kept, [head], 3)
    assert got_table == want_table
    for k in range(3):
        assert [(list(o), list(n), b) for o, n, b in parallel.shard_parts(got[k][0])] == \
            [(list(o), list(n), b) for o, n, b in parallel.shard_parts(want_plans[k][0])]
    # the parser's filter (shards other than the first build no Frame for others' frames) decides as the sharder
    keepers = [Sharder(2, table).keeper(i) for i in range(2)]
    for fr in iter_frames(many_clients):
        assert [k(fr.linktype, fr.data, 0, len(fr.data)) for k in keepers] == [sharder(fr) == i for i in range(2)]
    for jobs in (2, 4):
        got = _parallel([many_clients], keylogs, [], jobs)
        assert got[0] == want[0], f"--jobs {jobs}"
        assert got[1] == want[1] and len(got[1]) >= 100
    # the same capture as a classic pcap file (tcpdump's format: records without block types), indexed by parts
    # (however small the file), the parts found from the record headers alone
    monkeypatch.setattr(parallel, "INDEX_MIN_BYTES", 0)
    pcap = many_clients.with_suffix(".pcap")
    with pcap.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for fr in iter_frames(many_clients):
            sec = int(fr.ts)
            out.write(struct.pack("<IIII", sec, round((fr.ts - sec) * 1e6), len(fr.data), fr.orig_len) + fr.data)
    want_pcap = _serial([pcap], keylogs, [])
    assert len(json.loads(want_pcap[0])["sessions"]) == len(json.loads(want[0])["sessions"])
    for jobs in (2, 3):
        reading: dict = {}
        assert _parallel([pcap], keylogs, [], jobs, reading) == want_pcap, f"pcap --jobs {jobs}"
        assert reading["mode"] == "indexed"
    # two files: streams numbered per file, sessions across both
    two = [many_clients, SAMPLES / "mixed-traffic" / "capture.pcapng"]
    keylogs2 = keylogs + [SAMPLES / "mixed-traffic" / "keys.log"]
    assert _parallel(two, keylogs2, [], 3) == _serial(two, keylogs2, [])


def test_shards_that_depend_on_each_other_fall_back_to_one_process(tmp_path):
    """Copies of one session from different addresses share its DTLS session id: one process lets the last
    CONNECT's keys win for every copy, which shards cannot know: the parallel path refuses, `analyze_with_jobs`
    analyses in one process and says why."""
    cap = tmp_path / "copies.pcapng"
    scale_capture(SAMPLES / "baseline" / "capture.pcapng", cap, 4, distinct_clients=True)
    keylogs = [SAMPLES / "baseline" / "keys.log"]
    with pytest.raises(ParallelFallback, match="DTLS session id"):
        analyze_paths_parallel([cap], keylogs, [], 2)
    warned: list = []
    keys, info = load_keys(keylogs, [])
    analysis = analyze_with_jobs([cap], keylogs, [], keys, info, 2, warn=warned.append)
    assert warned and "one process" in warned[0]
    got = json.dumps(to_document(analysis, version=__version__, show_secrets=True), sort_keys=True)
    assert got == _serial([cap], keylogs, [])[0]


def test_auto_splits_only_large_captures_of_several_clients(many_clients, monkeypatch):
    from analyzer import parallel

    assert parallel.auto_jobs([many_clients], cores=4) == 1  # under AUTO_MIN_BYTES
    monkeypatch.setattr(parallel, "AUTO_MIN_BYTES", 0)
    assert parallel.auto_jobs([many_clients], cores=4) == 4
    assert parallel.auto_jobs([many_clients], cores=1) == 1
    # one client-gateway pair (a client-side capture of one tunnel): nothing to split
    assert parallel.auto_jobs([SAMPLES / "baseline" / "capture.pcapng"], cores=4) == 1
    # the sample (read as the index pass reads) counts the first frames' buckets as the sharder sees them
    by_bucket = parallel.Sharder(parallel.NBUCKETS, parallel.IDENTITY)
    frames = list(iter_frames(many_clients))
    for limit in (1, 500, len(frames) + 10):
        want: dict = {}
        for fr in frames[:limit]:
            want[by_bucket(fr)] = want.get(by_bucket(fr), 0) + 1
        assert parallel.sample_buckets([many_clients], limit) == want
    assert parallel.sample_buckets([ROOT / "tests" / "corpus" / "generated" / "does-not-exist.pcapng"]) is None


def test_a_block_the_index_does_not_reproduce_makes_the_shards_read_the_file_whole(tmp_path, monkeypatch):
    """A Decryption Secrets Block in the middle of the packets (keys embedded after the frames that need them, as a
    capture tool appending secrets would): the index pass stops at it and the shards read the whole file, with the
    same analysis as one process; the same file with the secrets in its head is indexed."""
    import struct

    from bench.scale import _Pcapng

    monkeypatch.setattr(parallel, "INDEX_MIN_BYTES", 0)
    src = SAMPLES / "baseline" / "capture.pcapng"
    data = src.read_bytes()
    blocks = list(_Pcapng(data).blocks())
    secrets = (SAMPLES / "baseline" / "keys.log").read_bytes()
    pad = secrets + b"\0" * (-len(secrets) % 4)
    dsb = struct.pack("<IIII", 0x0A, 20 + len(pad), 0x544C534B, len(secrets)) + pad + struct.pack("<I", 20 + len(pad))
    epbs = [off for off, btype, _blen in blocks if btype == 6]
    for name, at in (("middle", epbs[len(epbs) // 2]), ("head", epbs[0])):
        cap = tmp_path / f"{name}.pcapng"
        cap.write_bytes(data[:at] + dsb + data[at:])
        want = _serial([cap], [], [])
        assert json.loads(want[0])["captures"][0]["keys"]["embedded_secrets"] == 1, name  # the keys were read
        for jobs in (2, 3):
            reading: dict = {}
            assert _parallel([cap], [], [], jobs, reading) == want, (name, jobs)
            assert reading["mode"] == ("walked" if name == "middle" else "indexed"), (name, jobs)


def test_progress_counts_every_shards_frames(many_clients, reading_mode):
    """`acflow analyze --jobs N` shows the progress line as one process does: the frames analysed so far by all
    shards together, never going back, ending at the capture's frame count; the analysis is the same with it."""
    keylogs = [SAMPLES / n / "keys.log" for n in MANY]
    want = _parallel([many_clients], keylogs, [], 3)
    seen: list = []
    analysis = analyze_paths_parallel([many_clients], keylogs, [], 3, inner_sink=lambda *a: None,
                                      progress=seen.append)
    total = sum(1 for _ in iter_frames(many_clients))
    assert analysis.captures[0].frames == total
    assert seen and seen[-1] == total and seen == sorted(seen), seen[-5:]
    assert json.dumps(to_document(analysis, version=__version__, show_secrets=True), sort_keys=True) == want[0]
    assert parallel._COUNTS is None  # (set in worker processes only)


def test_a_worker_that_dies_falls_back_to_one_process(many_clients, monkeypatch):
    """A worker process killed mid-analysis (the OOM killer, a user's kill -9): `analyze_with_jobs` says so and
    analyses in one process, the same result and inner packets as ever; no traceback, nothing half-exported."""
    import os
    import signal
    import threading

    keylogs = [SAMPLES / n / "keys.log" for n in MANY]
    me = os.getpid()

    class Dying(parallel.Analyzer):
        def __init__(self, *a, **k) -> None:
            if os.getpid() != me:  # a worker's shard: killed as the OOM killer would
                os.kill(os.getpid(), signal.SIGKILL)
            super().__init__(*a, **k)

    monkeypatch.setattr(parallel, "Analyzer", Dying)
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # workers forked: they inherit the patch
    with pytest.raises(Exception, match="terminated abruptly"):
        analyze_paths_parallel([many_clients], keylogs, [], 2)
    warned: list = []
    inner: list = []
    keys, info = load_keys(keylogs, [])
    analysis = analyze_with_jobs([many_clients], keylogs, [], keys, info, 2, warn=warned.append,
                                 inner_sink=lambda *a: inner.append(a))
    assert len(warned) == 1 and "worker process ended abruptly" in warned[0] and "one process" in warned[0]
    want = _serial([many_clients], keylogs, [])
    assert json.dumps(to_document(analysis, version=__version__, show_secrets=True), sort_keys=True) == want[0]
    assert inner == want[1]
