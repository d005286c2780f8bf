"""Keys embedded in a pcapng (Decryption Secrets Block, as `editcap --inject-secrets` writes it) decrypt every
phase with no --keylog; the DTLS PSK is then derived from the embedded EXPORTER_SECRET."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document

from .conftest import sample


@pytest.mark.parametrize("name", ["baseline", "legacy-dtls"])
def test_injected_secrets_decrypt_everything(tmp_path, name):
    if shutil.which("editcap") is None:
        pytest.skip("editcap (Wireshark) not installed")
    d = sample(name)
    cap = tmp_path / "with-keys.pcapng"
    subprocess.run(["editcap", "--inject-secrets", f"tls,{d / 'keys.log'}", str(d / "capture.pcapng"), str(cap)],
                   check=True, capture_output=True)
    keys, info = load_keys([], [])
    doc = to_document(analyze_paths([cap], keys, info), version=__version__)
    assert doc["captures"][0]["keys"]["embedded_secrets"] == 1
    phases = {p["phase"]: p["status"] for p in doc["sessions"][0]["phases"]}
    assert phases == {"tls-handshake": "ok", "group-selection": "ok", "user-auth": "ok", "downloader": "absent",
                      "cstp-connect": "ok", "dtls": "ok"}
    assert not any(f["id"] == "KEYS_MISSING" for f in doc["sessions"][0]["findings"])
