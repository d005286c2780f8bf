"""The VPN downloader's files on real captures: their size and SHA-1 come from the whole body whatever the HTTP
dissector keeps of it (an answer to a GET keeps its first DEFAULT_MAX_DOWNLOAD_BODY bytes; client packages run to
tens of megabytes), and keeping less is no analysis limit."""
from __future__ import annotations

import hashlib
import json

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document
from dissectors import http

from .conftest import sample
from .helpers import phase


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
