"""The VPN downloader's files on real captures: their size and SHA-1 come from the whole body whatever the HTTP
dissector keeps of it (an answer to a GET keeps its first DEFAULT_MAX_DOWNLOAD_BODY bytes; client packages run to
tens of megabytes), and keeping less is no analysis limit."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document
from dissectors import http

from .conftest import ROOT, sample
from .helpers import phase, require


def _doc(name: str) -> dict:
    d = sample(name)
    keys, info = load_keys([d / "keys.log"], [])
    return to_document(analyze_paths([d / "capture.pcapng"], keys, info), version=__version__, show_secrets=True)


@pytest.mark.parametrize("name", ["downloader", "scripted/profile-hash-mismatch"])
def test_a_download_kept_in_part_has_the_whole_files_size_and_sha1(name, monkeypatch):
    whole = _doc(name)
    monkeypatch.setattr(http, "DEFAULT_MAX_DOWNLOAD_BODY", 16)  # keep 16 bytes of each answer to a GET
    cut = _doc(name)
    for d in (whole, cut):
        for c in d.get("captures", []):
            c.pop("analysis_seconds", None)
    assert json.dumps(cut, sort_keys=True) == json.dumps(whole, sort_keys=True)
    (s,) = cut["sessions"]
    (get,) = phase(s, "downloader")["details"]["gets"]
    served = (sample(name) / "downloaded-profile.xml").read_bytes()  # what curl, the downloader, wrote
    assert get["status"] == 200 and get["size"] == len(served) > 16
    assert get["sha1"] == hashlib.sha1(served).hexdigest().upper()
    assert not [f for f in s["findings"] if f["id"] == "ANALYSIS_LIMIT"]


@pytest.mark.lab
def test_live_a_package_over_the_body_bound_and_a_capture_that_misses_part_of_it(tmp_path, tshark):
    """Real peers (curl as the downloader, the scripted gateway): a 17 MiB file announced in the manifest. Whole in
    the capture: its size and SHA-1 are the file's, the manifest's hash matches, no analysis limit. With one of its
    segments taken out of the capture (editcap, as a capture that dropped packets): CAPTURE_GAP, the download marked
    incomplete, and no PROFILE_HASH_MISMATCH blaming the gateway for the capture's loss."""
    from lab.netns import missing_tools
    from lab.scripted.cases import PACKAGE_SIZE, PACKAGE_URI, package_bytes
    from lab.scripted.runner import REQUIRED_TOOLS

    require(os.geteuid() == 0, "needs root")
    require(not missing_tools((*REQUIRED_TOOLS, "editcap")), "lab tools or editcap not installed")
    p = subprocess.run([sys.executable, "-m", "lab.scripted", "--case", "downloader-large-package", "--out",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    out = tmp_path / "downloader-large-package"
    package = package_bytes()
    assert (out / "downloaded-profile.xml").read_bytes() == package  # what curl got

    def analyse(capture: Path) -> dict:
        keys, info = load_keys([out / "keys.log"], [])
        (s,) = to_document(analyze_paths([capture], keys, info), version=__version__)["sessions"]
        return s

    s = analyse(out / "capture.pcapng")
    d = phase(s, "downloader")["details"]
    (get,) = d["gets"]
    assert get["target"] == PACKAGE_URI and get["status"] == 200 and get["complete"] is True
    assert get["size"] == PACKAGE_SIZE > 16 * 1024 * 1024
    assert get["sha1"] == hashlib.sha1(package).hexdigest().upper()
    assert d["profile_checks"] == [{"uri": PACKAGE_URI, "fetched": True, "status": 200, "hash_matches": True}]
    assert not {f["id"] for f in s["findings"]} & {"ANALYSIS_LIMIT", "PROFILE_HASH_MISMATCH", "CAPTURE_GAP"}

    # one full segment of the download, from its middle, out of the capture: one the capture holds once (on a
    # loaded machine TCP may send a segment again, and a copy left in the capture would fill the hole)
    rows = [line.split() for line in subprocess.run(
        [tshark, "-n", "-r", str(out / "capture.pcapng"), "-Y",
         f"tcp.stream == {get['connection'].split()[-1]} && tcp.srcport == 443 && tcp.len > 1000",
         "-T", "fields", "-e", "frame.number", "-e", "tcp.seq_raw"],
        capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()]
    seqs = Counter(seq for _frame, seq in rows)
    once = [frame for frame, seq in rows if seqs[seq] == 1]
    cut = tmp_path / "dropped.pcapng"
    subprocess.run(["editcap", str(out / "capture.pcapng"), str(cut), once[len(once) // 2]], check=True,
                   capture_output=True, timeout=120)
    s = analyse(cut)
    d = phase(s, "downloader")["details"]
    (get,) = d["gets"]
    assert get["complete"] is False and get["size"] < PACKAGE_SIZE
    assert d["profile_checks"][0]["hash_matches"] is None
    ids = {f["id"] for f in s["findings"]}
    assert "CAPTURE_GAP" in ids and "PROFILE_HASH_MISMATCH" not in ids
    assert "incomplete in the capture" in phase(s, "downloader")["summary"]
