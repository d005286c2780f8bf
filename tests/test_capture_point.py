"""A capture taken on the VPN's own tunnel device (lab scenario tunnel-side: the baseline, captured a second time by
dumpcap on the client's tun0 — the traffic inside the tunnel, none of the VPN's TLS and DTLS): acflow says where
the capture was taken and where to capture instead (analyzer/capture_point.py), from the interface names and
descriptions the pcapng file holds."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.capture_point import tunnel_devices
from analyzer.model import CaptureInfo
from analyzer.report import render
from analyzer.report.json_report import render_json

from .conftest import sample

D = sample("tunnel-side")


def _doc(path, keylog=None) -> tuple[dict, object]:
    keys, info = load_keys([keylog] if keylog else [], [])
    analysis = analyze_paths([path], keys, info)
    return json.loads(render_json(analysis, version=__version__)), analysis


def test_a_capture_on_the_tunnel_device_says_so_and_where_to_capture():
    doc, analysis = _doc(D / "tunnel-side.pcapng", D / "keys.log")
    assert doc["sessions"] == []
    assert doc["captures"][0]["interfaces"] == [{"id": 0, "linktype": 101, "name": "tun0", "description": None,
                                                  "received": 13, "dropped": 0}]  # (dumpcap: 13 kept, none dropped)
    [f] = [f for f in doc["findings"] if f["id"] == "NO_VPN_SESSION"]
    assert f["evidence"]["tunnel_device"] == "tun0"
    assert "taken on tun0, the VPN's own tunnel device" in f["message"]
    assert "interface that reaches the gateway" in f["remedy"]
    how = {"version": __version__, "verbose": False, "show_secrets": False, "to_terminal": False, "tz": None,
           "summary": False, "filters": None}
    assert "the capture was taken on tun0, the VPN's tunnel device" in render(analysis, "terminal", **how)
    assert "the capture was taken on <code>tun0</code>" in render(analysis, "html", **how)
    # the same run's capture on the client's veth: the session, and nothing said of tunnel devices
    doc, _ = _doc(D / "capture.pcapng", D / "keys.log")
    assert len(doc["sessions"]) == 1 and not doc["findings"]
    assert doc["captures"][0]["interfaces"][0]["name"] not in ("tun0", None)


def test_a_pcap_file_names_no_interface_and_nothing_is_claimed(tmp_path):
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap not installed")
    out = tmp_path / "tun.pcap"
    subprocess.run([editcap, "-F", "pcap", str(D / "tunnel-side.pcapng"), str(out)], check=True, capture_output=True)
    doc, _ = _doc(out)
    assert doc["captures"][0]["interfaces"] == []
    [f] = [f for f in doc["findings"] if f["id"] == "NO_VPN_SESSION"]
    assert "tunnel_device" not in f["evidence"] and "tunnel device" not in f["message"]


@pytest.mark.parametrize("name, description, tunnel", [
    ("tun0", None, True), ("cscotun0", None, True), ("utun3", None, True), ("vpn0", None, True),
    ("\\Device\\NPF_{4D1F}", "Cisco AnyConnect Secure Mobility Client Virtual Miniport Adapter for Windows x64", True),
    ("\\Device\\NPF_{4D1F}", "Cisco Secure Client Virtual Miniport Adapter for Windows x64", True),
    ("\\Device\\NPF_{77AA}", "Wintun Userspace Tunnel", True), ("\\Device\\NPF_{77AB}", "TAP-Windows Adapter V9", True),
    ("eth0", None, False), ("en0", None, False), ("ens192", None, False), ("any", None, False), ("tunnel", None, False),
    ("\\Device\\NPF_{9C2E}", "Intel(R) Wi-Fi 6 AX201 160MHz", False), (None, None, False),
])
def test_which_interfaces_are_tunnel_devices(name, description, tunnel):
    ci = CaptureInfo("x.pcapng", interfaces=[{"id": 0, "linktype": 1, "name": name, "description": description}])
    assert bool(tunnel_devices([ci])) is tunnel


def test_the_tunnel_device_hint_through_the_command_line():
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(D / "tunnel-side.pcapng")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "taken on tun0" in p.stdout
