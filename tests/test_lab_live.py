"""Runs the `baseline` lab scenario live: real ocserv and openconnect in fresh namespaces (needs root).

In CI (CI=true) a missing prerequisite fails the test instead of skipping it: this is the proof that the lab and
the peers work on a clean machine.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

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


def _world_readable(path: Path) -> bool:
    """Can any user reach and read ``path`` (every parent directory searchable by others, the file readable)?"""
    path = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents) and bool(path.stat().st_mode & stat.S_IROTH)


def _user_namespaces() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--user", "true"], capture_output=True).returncode == 0


def test_lab_refuses_without_root_clearly(tmp_path):
    out = tmp_path / "out"
    if os.geteuid() != 0:
        p = subprocess.run([sys.executable, "-m", "lab", "--out", str(out), "baseline"], cwd=ROOT,
                           capture_output=True, text=True)
    elif _user_namespaces():
        # as root: run the lab as a user who is not root, wherever the checkout is (under /root, mode 700, nobody
        # could not read it). In a new user namespace without a mapping the process's uid is the overflow uid
        # (65534, nobody) — os.geteuid() is not 0 — while files are still checked against root's own credentials
        # (owner permissions), so the checkout and its venv stay readable.
        p = subprocess.run(["unshare", "--user", sys.executable, "-m", "lab", "--out", str(out), "baseline"],
                           cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    else:
        # no user namespaces: run it as nobody (setpriv is in util-linux), from a world-readable copy of lab/ (the
        # entry point and its root check import the standard library and `lab` only), with the base interpreter
        _require(shutil.which("setpriv") is not None, "setpriv missing (and no user namespaces)")
        python = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
        _require(_world_readable(python), f"{python} is not readable by other users (and no user namespaces)")
        p = _as_nobody_from_a_copy(python, out)
    assert p.returncode != 0
    assert "needs root" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists()


def _world_readable(path: Path) -> bool:
    """Can any user reach and read ``path`` (every parent directory searchable by others, the file readable)?"""
    path = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents) and bool(path.stat().st_mode & stat.S_IROTH)


def _as_nobody_from_a_copy(python: Path, out: Path) -> subprocess.CompletedProcess:
    tmp = Path(tempfile.mkdtemp(prefix="acflow-nobody-", dir="/tmp"))
    try:
        tmp.chmod(0o755)
        shutil.copytree(ROOT / "lab", tmp / "lab", ignore=shutil.ignore_patterns("__pycache__"))
        for p in tmp.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(tmp),
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}
        return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(python),
                               "-m", "lab", "--out", str(out), "baseline"], cwd=tmp, capture_output=True, text=True,
                              env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
