"""The pipeline's fast lanes (analyzer/pipeline.py `feed`) change speed, never results.

Every committed capture (lab samples, scripted-gateway cases, the hostile corpus) is analysed twice, with and
without fast lanes: the JSON documents (with secrets shown, so that nothing is hidden by redaction) and the
exported inner packets must be identical. The lanes must also really carry the bulk of the traffic where there
is some, or this test would compare the general path with itself.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import analyze_with_and_without_lanes

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(p.parent for p in (ROOT / "samples").rglob("facts.json") if (p.parent / "capture.pcapng").exists())
CORPUS = ROOT / "tests" / "corpus" / "generated"
_run = analyze_with_and_without_lanes


def _rsa(d: Path) -> Path | None:
    return d / "server-key.pem" if d.name.startswith("tls12-rsa") and (d / "server-key.pem").exists() else None


@pytest.mark.parametrize("d", SAMPLES, ids=lambda d: str(d.relative_to(ROOT / "samples")))
def test_fast_lanes_give_the_same_analysis(d: Path):
    slow_doc, slow_inner, slow_pipe = _run(d / "capture.pcapng", d / "keys.log", _rsa(d), fast=False)
    fast_doc, fast_inner, fast_pipe = _run(d / "capture.pcapng", d / "keys.log", _rsa(d), fast=True)
    assert slow_pipe.fast_frames == 0
    assert fast_doc == slow_doc
    assert fast_inner == slow_inner
    decrypted_dtls = sum(f.channel.inner["c2s"] + f.channel.inner["s2c"] for f in fast_pipe.udp.values())
    if decrypted_dtls >= 20:  # a DTLS channel carried traffic: most of it went through a lane
        assert fast_pipe.fast_frames >= decrypted_dtls // 2, (fast_pipe.fast_frames, decrypted_dtls)


def _corpus_entries():
    if not (CORPUS / "MANIFEST.json").exists():
        return []
    entries = json.loads((CORPUS / "MANIFEST.json").read_text())["files"]
    return [e for e in entries if e.get("expect") != "not-a-capture"]


@pytest.mark.parametrize("e", _corpus_entries(), ids=lambda e: e["file"])
def test_fast_lanes_give_the_same_analysis_on_damaged_captures(e):
    cap = CORPUS / e["file"]
    keylog = ROOT / e["keylog"] if e.get("keylog") else None
    rsa = ROOT / e["rsa_key"] if e.get("rsa_key") else None
    results = []
    for fast in (False, True):
        try:
            doc, inner, _ = _run(cap, keylog, rsa, fast=fast)
            results.append((doc, inner))
        except Exception as exc:  # noqa: BLE001 - an input error must be the same error both ways
            results.append((type(exc).__name__, str(exc)))
    assert results[1] == results[0]


@pytest.mark.parametrize("room", [None, 0], ids=["backlog-default", "backlog-none"])
@pytest.mark.parametrize("d", SAMPLES, ids=lambda d: str(d.relative_to(ROOT / "samples")))
def test_the_keyless_lane_gives_the_same_analysis(d: Path, room, monkeypatch):
    """Without keys, DTLS flows have a lane of their own once their backlog of records waiting for keys is full
    (analyzer/dtlslane.py), TLS connections once their protected records are seen not to decrypt
    (analyzer/tcplane.py); with no room in the backlog at all (``room`` 0), the DTLS lane takes a flow's records
    from the start: the analysis is the same with and without lanes."""
    from analyzer import dtlsflow

    if room is not None:
        monkeypatch.setattr(dtlsflow, "MAX_BACKLOG_BYTES", room)
    slow_doc, slow_inner, slow_pipe = _run(d / "capture.pcapng", None, None, fast=False)
    fast_doc, fast_inner, fast_pipe = _run(d / "capture.pcapng", None, None, fast=True)
    assert slow_pipe.fast_frames == 0
    assert fast_doc == slow_doc
    assert fast_inner == slow_inner == []
    undecrypted = sum(f.undecrypted for f in fast_pipe.udp.values())
    tls_segments = sum(sum(c.segments.values()) for c in fast_pipe.tcp.values() if c.encrypted_records["c2s"]
                       + c.encrypted_records["s2c"])
    if room == 0 and undecrypted >= 20:  # the lanes really carried the flows' records
        assert fast_pipe.fast_frames >= undecrypted // 2, (fast_pipe.fast_frames, undecrypted)
    if tls_segments >= 40:  # TLS connections without keys: the keyless TCP lane (analyzer/tcplane.py)
        assert fast_pipe.fast_frames >= tls_segments // 3, (fast_pipe.fast_frames, tls_segments)
