"""The analysis driver (analyzer/driver.py) and the trackers' host interface (analyzer/host.py).

However the frames arrive — a file read in batches, one frame at a time, a pipe cut into arbitrary chunks (what
`acflow live` sees) — the driver gives the same analysis; trackers reach the pipeline only through `TrackerHost`.
"""
from __future__ import annotations

import inspect
import json
import re

import pytest

from analyzer.analyze import analyze_paths, load_keys
from analyzer.capture import Frame, read_capture_batches
from analyzer.driver import Analyzer
from analyzer.host import TrackerHost
from analyzer.pipeline import Pipeline
from analyzer.report.json_report import to_document
from dissectors.pcapfile import PcapParser

from .conftest import ROOT, sample


def _doc(analysis) -> str:
    return json.dumps(to_document(analysis, version="t", show_secrets=True), sort_keys=True, default=str)


@pytest.mark.parametrize("name", ["baseline", "legacy-dtls"])
def test_frame_by_frame_and_pipe_chunks_give_the_same_analysis_as_the_file(name):
    d = sample(name)
    cap = d / "capture.pcapng"
    want = _doc(analyze_paths([cap], *load_keys([d / "keys.log"], [])))

    keys, info = load_keys([d / "keys.log"], [])
    an = Analyzer(keys, key_info=info)
    an.start_capture(str(cap))
    for batch in read_capture_batches(cap):
        for ev in batch:
            if type(ev) is Frame:
                an.feed(ev)
            else:
                an.feed_events([ev])
    an.end_capture()
    assert _doc(an.finish()) == want

    keys, info = load_keys([d / "keys.log"], [])
    an = Analyzer(keys, key_info=info)
    an.start_capture(str(cap))
    parser, data = PcapParser(), cap.read_bytes()
    for i in range(0, len(data), 777):  # as a pipe delivers it: chunks that cut blocks anywhere
        an.feed_events(parser.feed(data[i:i + 777]))
    an.feed_events(parser.close())
    assert _doc(an.finish()) == want


def test_keys_added_while_frames_arrive_are_used():
    # live: the key log grows while the client connects; lines added before the frames that need them count
    d = sample("baseline")
    keys, info = load_keys([], [])
    an = Analyzer(keys, key_info=info)
    an.start_capture("pipe")
    an.add_keylog_text((d / "keys.log").read_text())
    for batch in read_capture_batches(d / "capture.pcapng"):
        an.feed_events(batch)
    analysis = an.finish()
    assert [p.status for p in analysis.sessions[0].phases][:3] == ["ok", "ok", "ok"]
    assert an.stats()["frames"] == analysis.captures[0].frames == 61


def test_finish_is_once():
    an = Analyzer()
    an.finish()
    with pytest.raises(RuntimeError):
        an.finish()
    with pytest.raises(RuntimeError):
        an.start_capture("x")


def test_trackers_reach_the_pipeline_only_through_the_tracker_host():
    members = {n for n, _ in inspect.getmembers(TrackerHost, inspect.isfunction) if not n.startswith("_")}
    assert members == {"on_connect", "on_dtls_hello"}
    for n in members:  # the pipeline is a TrackerHost: same methods, same parameters
        assert list(inspect.signature(getattr(Pipeline, n)).parameters) == \
            list(inspect.signature(getattr(TrackerHost, n)).parameters)
    # and one attribute: where inner packets go (None when nobody wants them: no call per packet)
    assert set(TrackerHost.__annotations__) == {"inner_packet"}
    assert Pipeline(None).inner_packet is None
    sink = []
    assert Pipeline(None, inner_sink=sink.append).inner_packet == sink.append
    members |= {"inner_packet"}
    used = set()
    for path in (ROOT / "analyzer").rglob("*.py"):
        text = path.read_text()
        used |= set(re.findall(r"\.host\.(\w+)", text))
        assert "hooks" not in re.sub(r"#.*", "", text), path
    assert used and used <= members
