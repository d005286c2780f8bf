"""`--export-inner` writes the decapsulated inner packets (CSTP and DTLS) as a pcapng tshark reads."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import facts, sample
from .oracle import tshark_fields


@pytest.mark.parametrize("name,channel", [("baseline", "DTLS"), ("dtls-blocked", "CSTP"), ("legacy-dtls09", "DTLS")])
def test_inner_packets_exported(tshark, tmp_path, name, channel):
    d = sample(name)
    out = tmp_path / "inner.pcapng"
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(d / "capture.pcapng"), "--keylog",
                        str(d / "keys.log"), "--export-inner", str(out), "-o", str(tmp_path / "r.txt")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = tshark_fields(out, ["frame.comment", "ip.src", "ip.dst", "icmp.type"])
    f = facts(name)
    ip = f["inner_packets"]
    c2s = [r for r in rows if "client→gateway" in r[0]]
    s2c = [r for r in rows if "gateway→client" in r[0]]
    key = channel.lower()
    assert len(c2s) == ip[f"client_sent_{key}"] and len(s2c) == ip[f"client_received_{key}"]
    assert all(r[0].startswith(channel) for r in rows)
    # the pings the lab sent are there, as ICMP echo requests from the tunnel address to the gateway's
    echo = [r for r in c2s if r[3] == "8"]
    assert len(echo) == sum(x["sent"] for x in f["pings"])
    assert {r[1] for r in echo} == {f["tunnel_address"]}


def test_tshark_decrypts_legacy_dtls_with_acflow_keys(tshark, tmp_path):
    """Legacy DTLS: the `RSA Session-ID:… Master-Key:…` line acflow derives lets tshark decrypt the DTLS records."""
    d = sample("legacy-dtls")
    keys = tmp_path / "wireshark.keys"
    subprocess.run([sys.executable, "-m", "analyzer.cli", "keys", str(d / "capture.pcapng"), "--keylog",
                    str(d / "keys.log"), "-o", str(keys)], check=True, capture_output=True)
    rows = tshark_fields(d / "capture.pcapng", ["frame.number"], "dtls.app_data && data", keylog=keys)
    assert len(rows) >= facts("legacy-dtls")["inner_packets"]["client_sent_dtls"]
