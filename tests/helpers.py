"""Helpers shared by several test modules (test modules never import each other)."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from analyzer import __version__
from analyzer.analyze import InputError, analyze_paths, load_keys
from analyzer.evidence import GatewaySpec
from analyzer.parallel import analyze_paths_parallel
from analyzer.report.json_report import to_document

from .conftest import sample

ALL = ["baseline", "dtls-blocked", "legacy-dtls", "legacy-dtls09", "group-select", "mtu", "auth-fail", "tls12-rsa",
       "downloader", "cert-expired", "cert-wrong-name", "client-cert-request", "dpd-loss", "reconnect",
       "nat-rebinding"]
CONNECTED = [n for n in ALL if n != "auth-fail"]


@functools.cache
def doc(name: str, show_secrets: bool = True, rsa_only: bool = False, keys: bool = True,
        gateway: str | None = None) -> dict:
    """The JSON document of sample ``name``: with its key log (``rsa_only``: its gateway's RSA key instead;
    ``keys`` False: without any), ``gateway``: as --gateway."""
    d = sample(name)
    if rsa_only:
        store, info = load_keys([], [d / "server-key.pem"])
    else:
        store, info = load_keys([d / "keys.log"] if keys else [], [])
    gws = [GatewaySpec.parse(gateway)] if gateway else None
    analysis = analyze_paths([d / "capture.pcapng"], store, info, gateways=gws)
    return to_document(analysis, version=__version__, show_secrets=show_secrets)


def session(name: str, **kw) -> dict:
    sessions = doc(name, **kw)["sessions"]
    # the lab makes one VPN session per scenario (the downloader's three TLS sessions included)
    assert len(sessions) == 1, [s["connections"] for s in sessions]
    return sessions[0]


def phase(s: dict, name: str) -> dict:
    return next(p for p in s["phases"] if p["phase"] == name)


def require(cond: bool, why: str) -> None:
    """A live-lab prerequisite: skip when missing, but fail in CI (where .ci/run installs everything)."""
    if not cond:
        if os.environ.get("CI"):
            pytest.fail(f"live lab prerequisite missing in CI: {why}")
        pytest.skip(why)


def analyze_with_and_without_lanes(capture: Path, keylog: Path | None, rsa_key: Path | None, fast: bool):
    """One analysis with (fast=True) or without fast lanes: (JSON with secrets, inner packets, pipeline)."""
    keys, info = load_keys([keylog] if keylog and keylog.exists() else [], [rsa_key] if rsa_key else [])
    inner: list = []
    pipes: list = []
    analysis = analyze_paths([capture], keys, info, inner_sink=lambda *a: inner.append(a), fast_lanes=fast,
                             on_pipeline=pipes.append)
    doc = to_document(analysis, version="test", show_secrets=True)
    for c in doc.get("captures", []):
        c.pop("analysis_seconds", None)
    return json.dumps(doc, sort_keys=True, default=str), inner, pipes[0]


def run_chromium(binary: str, tmp_path: Path, *args: str):
    """Headless Chromium with a private profile under `tmp_path` (the `chromium` fixture gives `binary`)."""
    import subprocess  # noqa: PLC0415

    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False,
                          env={**os.environ, "HOME": str(tmp_path)})


def ring_pieces(name: str, frames: int, out: Path, stem: str = "gw") -> list[Path]:
    """Sample ``name``'s capture cut every ``frames`` frames into ``out`` as a ring buffer's files (`editcap -c`:
    ``{stem}_NNNNN_TIME.pcapng``), in order; the test is skipped without editcap."""
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap not installed")
    subprocess.run([editcap, "-c", str(frames), str(sample(name) / "capture.pcapng"), str(out / f"{stem}.pcapng")],
                   check=True, capture_output=True)
    return sorted(out.glob(f"{stem}_*.pcapng"))


#: samples merged into one many-client capture, each from its own client address (bench/scale.py merge_clients): a
#: capture the --jobs shards really split (tests/test_jobs.py, tests/test_capture_dropped.py)
MANY_CLIENTS = ["baseline", "legacy-dtls", "legacy-dtls09", "mtu", "nat-rebinding", "group-select", "downloader",
                "dpd-loss", "dtls-blocked", "reconnect", "cert-expired", "tls12-rsa", "auth-fail"]


def jobs_serial(paths, keylogs, rsa):
    """(the JSON document with secrets shown, the exported inner packets) of ``paths`` in one process; for an input
    acflow refuses, ("InputError", message) and None (tests/test_jobs.py compares it with `jobs_parallel`)."""
    keys, info = load_keys(keylogs, rsa)
    inner: list = []
    try:
        analysis = analyze_paths(paths, keys, info, inner_sink=lambda *a: inner.append(a))
    except InputError as e:
        return ("InputError", str(e)), None
    return json.dumps(to_document(analysis, version=__version__, show_secrets=True), sort_keys=True), inner


def jobs_parallel(paths, keylogs, rsa, jobs, reading=None):
    """`jobs_serial` over ``jobs`` processes (analyzer/parallel.py)."""
    inner: list = []
    try:
        analysis = analyze_paths_parallel(paths, keylogs, rsa, jobs, inner_sink=lambda *a: inner.append(a),
                                          reading=reading)
    except InputError as e:
        return ("InputError", str(e)), None
    return json.dumps(to_document(analysis, version=__version__, show_secrets=True), sort_keys=True), inner
