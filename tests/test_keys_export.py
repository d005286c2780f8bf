"""`acflow keys` writes a key log tshark can use, including what acflow derived itself."""
from __future__ import annotations

import subprocess
import sys

from .conftest import sample
from .oracle import tshark_fields


def run_keys(*args):
    return subprocess.run([sys.executable, "-m", "analyzer.cli", "keys", *args], capture_output=True, text=True)


def test_rsa_key_becomes_client_random_line(tshark, tmp_path):
    d = sample("tls12-rsa")
    out = tmp_path / "wireshark.keys"
    p = run_keys(str(d / "capture.pcapng"), "--rsa-key", str(d / "server-key.pem"), "-o", str(out))
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert "CLIENT_RANDOM " in text
    # tshark decrypts the session with acflow's key log alone (no RSA key given to tshark)
    reqs = tshark_fields(d / "capture.pcapng", ["http.request.method"], "http.request", keylog=out)
    assert ["CONNECT"] in reqs
    # the PSK-NEGOTIATE DTLS key is printed as a tshark option
    assert p.stdout.startswith("-o dtls.psk:") and len(p.stdout.split(":")[1].strip()) == 64


def test_legacy_dtls_session_line(tmp_path):
    d = sample("legacy-dtls")
    out = tmp_path / "wireshark.keys"
    p = run_keys(str(d / "capture.pcapng"), "--keylog", str(d / "keys.log"), "-o", str(out))
    assert p.returncode == 0, p.stderr
    lines = out.read_text().splitlines()
    assert any(l.startswith("RSA Session-ID:") and " Master-Key:" in l for l in lines)
