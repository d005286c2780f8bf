"""A client that refuses the gateway's certificate: real openconnect trusting only the lab's root CA (--cafile, no
pin) against ocserv whose certificate is issued by an intermediate CA it does not send (lab scenario
cert-chain-missing: 'Server certificate verify failed: signer not found').

Before: 'No AnyConnect-protocol session found' (other traffic 'TLS/443 0 B'); with --gateway, 'TLS handshake ok' and
KEYS_MISSING, while the handshake never finished."""
from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT, sample


def _doc(*extra: str) -> dict:
    d = sample("cert-chain-missing")
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(d / "capture.pcapng"), "--keylog",
                        str(d / "keys.log"), "--format", "json", *extra], capture_output=True, text=True, cwd=ROOT,
                       check=False)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_the_client_said_why():
    log = (sample("cert-chain-missing") / "client.log").read_text()
    assert "Server certificate verify failed: signer not found" in log


def test_without_the_gateway_named_the_refusal_is_pointed_at():
    doc = _doc()
    assert doc["sessions"] == []
    [no] = [f for f in doc["findings"] if f["id"] == "NO_VPN_SESSION"]
    assert "closed its TLS connection to 198.18.0.1:443 right after the server's handshake messages" in no["message"]
    assert "--gateway 198.18.0.1:443" in no["message"]


def test_with_the_gateway_named_the_session_says_why():
    [s] = _doc("--gateway", "198.18.0.1:443")["sessions"]
    phases = {p["phase"]: p for p in s["phases"]}
    tls = phases["tls-handshake"]
    assert tls["status"] == "failed" and "refused the certificate" in tls["summary"]
    assert tls["details"]["client_closed"]["after_certificate"] is True
    assert [phases[p]["status"] for p in ("group-selection", "user-auth", "cstp-connect")] == ["absent"] * 3
    ids = [f["id"] for f in s["findings"]]
    assert "TLS_CERT_REFUSED" in ids and "KEYS_MISSING" not in ids
    f = next(f for f in s["findings"] if f["id"] == "TLS_CERT_REFUSED")
    assert f["evidence"]["chain_includes_issuer"] is False
    assert f["evidence"]["issuer"].startswith("CN=acflow lab intermediate CA")
    assert s["verdict"]["experienced"] == "Could not connect: the client refused the gateway certificate"
    assert "without the intermediate CA that issued it" in s["verdict"]["text"]


def test_a_certificate_the_client_accepted_is_no_refusal():
    """cert-expired: openconnect accepted the expired certificate by its pin and went on."""
    d = sample("cert-expired")
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(d / "capture.pcapng"), "--keylog",
                        str(d / "keys.log"), "--format", "json"], capture_output=True, text=True, cwd=ROOT,
                       check=True)
    [s] = json.loads(p.stdout)["sessions"]
    assert "TLS_CERT_REFUSED" not in [f["id"] for f in s["findings"]]
    assert next(p for p in s["phases"] if p["phase"] == "tls-handshake")["status"] == "ok"


def test_without_keys_the_unfinished_handshake_is_still_read():
    """No key log: TLS 1.3 hides the certificate, but the client closed after the server's encrypted handshake
    messages without sending one of its own (not even its Finished)."""
    d = sample("cert-chain-missing")

    def run(*extra):
        p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(d / "capture.pcapng"), "--format",
                            "json", *extra], capture_output=True, text=True, cwd=ROOT, check=True)
        return json.loads(p.stdout)

    [no] = [f for f in run()["findings"] if f["id"] == "NO_VPN_SESSION"]
    assert "--gateway 198.18.0.1:443" in no["message"]
    [s] = run("--gateway", "198.18.0.1:443")["sessions"]
    tls = next(p for p in s["phases"] if p["phase"] == "tls-handshake")
    assert tls["status"] == "failed" and tls["details"]["client_closed"]["encrypted_flight"] is True
    assert tls["details"]["client_closed"]["after_certificate"] is False
    assert "KEYS_MISSING" not in [f["id"] for f in s["findings"]]
