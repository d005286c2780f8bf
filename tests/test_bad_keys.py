"""Wrong, partial or unusable keys: the report names the problem per direction and keeps what the wire shows."""
from __future__ import annotations

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document

from .conftest import sample


def _session(capture, keylogs=(), rsa=()):
    keys, info = load_keys(list(keylogs), list(rsa))
    return to_document(analyze_paths([capture], keys, info), version=__version__)["sessions"][0]


def test_wrong_key_log(tmp_path):
    d = sample("baseline")
    wrong = tmp_path / "wrong.keys"
    wrong.write_text("".join(line.rsplit(" ", 1)[0] + " " + "00" * 48 + "\n"
                             for line in (d / "keys.log").read_text().splitlines() if line.strip()))
    s = _session(d / "capture.pcapng", [wrong])
    dec = s["phases"][0]["details"]["decryption"]
    assert all(v["ok"] is False and "wrong key for client random" in v["reason"] for v in dec.values())
    assert s["phases"][0]["status"] == "ok" and s["phases"][4]["status"] == "undecrypted"
    f = next(f for f in s["findings"] if f["id"] == "KEYS_MISSING")
    assert "wrong key" in f["message"]


def test_partial_key_log_decrypts_what_it_can(tmp_path):
    """TLS 1.3 key log without EXPORTER_SECRET: TLS decrypts, the PSK-NEGOTIATE DTLS cannot be derived."""
    d = sample("baseline")
    part = tmp_path / "part.keys"
    part.write_text("".join(line + "\n" for line in (d / "keys.log").read_text().splitlines()
                            if line and not line.startswith("EXPORTER_SECRET")))
    s = _session(d / "capture.pcapng", [part])
    phases = {p["phase"]: p["status"] for p in s["phases"]}
    assert phases["cstp-connect"] == "ok" and phases["user-auth"] == "ok"
    assert phases["dtls"] == "undecrypted"


def test_rsa_key_for_an_ecdhe_session():
    d = sample("baseline")
    s = _session(d / "capture.pcapng", rsa=[d / "server-key.pem"])
    dec = s["phases"][0]["details"]["decryption"]
    assert all(v["ok"] is False for v in dec.values())
    assert s["phases"][4]["status"] == "undecrypted"
