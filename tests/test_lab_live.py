"""Runs the `baseline` lab scenario live: real ocserv and openconnect in fresh namespaces (needs root).

In CI (CI=true) a missing prerequisite fails the test instead of skipping it: this is the proof that the lab and
the peers work on a clean machine.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from lab.netns import missing_tools
from lab.runner import REQUIRED_TOOLS

from .conftest import ROOT
from .helpers import require as _require
from .oracle import tshark_fields


@pytest.mark.lab
def test_baseline_live(tmp_path, tshark):
    _require(os.geteuid() == 0, "needs root")
    _require(not missing_tools(REQUIRED_TOOLS), f"not installed: {', '.join(missing_tools(REQUIRED_TOOLS))}")
    before = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    p = subprocess.run([sys.executable, "-m", "lab", "--out", str(tmp_path), "baseline"], cwd=ROOT,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    after = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    assert not {n for n in after - before if n.startswith("acflow-")}, "lab left namespaces behind"
    out = tmp_path / "baseline"
    f = json.loads((out / "facts.json").read_text())
    assert f["auth_result"] == "success"
    assert f["dtls_mode"] == "psk-negotiate" and f["dtls_established"]
    assert f["pings"][0]["received"] == 5
    assert f["end"]["how"] == "cstp-disconnect"
    reqs = tshark_fields(out / "capture.pcapng", ["http.request.method", "http.request.uri"], "http.request",
                         keylog=out / "keys.log")
    assert ["CONNECT", "/CSCOSSLC/tunnel"] in reqs
    assert any(r[0] == "POST" for r in reqs)


def test_lab_refuses_without_root_clearly():
    if os.geteuid() != 0:
        p = subprocess.run([sys.executable, "-m", "lab", "baseline"], cwd=ROOT, capture_output=True,
                           text=True)
        assert p.returncode != 0 and "root" in p.stderr
    else:
        # as root: run the check as nobody (setpriv is in util-linux)
        _require(shutil.which("setpriv") is not None, "setpriv missing")
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                            "-m", "lab", "--out", "/tmp/acflow-nobody", "baseline"], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        assert p.returncode != 0
        assert "needs root" in p.stderr, p.stderr
        assert not __import__("pathlib").Path("/tmp/acflow-nobody").exists()
