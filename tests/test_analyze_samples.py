"""`acflow analyze` on every lab sample agrees with the sample's facts.json (the peers' own logs).

Phases, group list and chosen group, auth result, every X-CSTP-/X-DTLS- header both ways, DTLS mode and whether
it came up, DTLS ClientHello times (vs tshark), inner packet counts per direction, and how the session ended.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.json_report import to_document

from .conftest import facts, sample
from .helpers import ALL, CONNECTED, doc, phase, session


def test_document_top_level_shape():
    d = doc("baseline")
    assert d["acflow"] == __version__
    assert [p["phase"] for p in d["sessions"][0]["phases"]] == ["tls-handshake", "group-selection", "user-auth",
                                                               "downloader", "cstp-connect", "dtls"]
    for p in d["sessions"][0]["phases"]:
        assert p["status"] in ("ok", "failed", "absent", "undecrypted")
        assert all(isinstance(f, int) and f >= 1 for f in p["frames"])


@pytest.mark.parametrize("name", ALL)
def test_phases_match_facts(name):
    f = facts(name)
    s = session(name)
    assert phase(s, "tls-handshake")["status"] == "ok"
    assert phase(s, "tls-handshake")["details"]["server_hello"]["version"] == f["tls_version"].replace("TLS", "TLS ")
    auth = phase(s, "user-auth")
    assert auth["status"] == ("ok" if f["auth_result"] == "success" else "failed")
    assert auth["details"]["result"] == f["auth_result"]
    assert [r["fields"] for r in auth["details"]["rounds"]] == [r["request_fields"] for r in f["auth_rounds"]
                                                                if r["request_type"] == "auth-reply"]
    cstp = phase(s, "cstp-connect")
    if f["connects"]:
        assert cstp["status"] == "ok"
    else:
        assert cstp["status"] == "absent"
    assert phase(s, "downloader")["status"] == ("ok" if f["downloader"] else "absent")


@pytest.mark.parametrize("name", ALL)
def test_group_list_and_choice(name):
    f = facts(name)
    g = phase(session(name), "group-selection")["details"]
    assert [(o["value"], o["label"], o["selected"]) for o in g["group_list"]] == \
        [(o["value"], o["label"], o["selected"]) for o in f["group_list"]]
    if f["group_chosen"]:
        assert g["group_selected"] == f["group_chosen"]
    assert g["aggregate_auth_version_offered"] == f["aggregate_auth_version_offered"]


@pytest.mark.parametrize("name", CONNECTED)
def test_connect_headers_both_ways(name):
    f = facts(name)
    c = phase(session(name), "cstp-connect")["details"]["connects"][0]
    req = [(k, v) for k, v in c["request_headers"] if k.lower().startswith(("x-cstp", "x-dtls"))]
    resp = [(k, v) for k, v in c["response_headers"] if k.lower().startswith(("x-cstp", "x-dtls"))]
    assert req == [tuple(x) for x in f["connects"][0]["request_headers"]]
    assert resp == [tuple(x) for x in f["connects"][0]["response_headers"]]


@pytest.mark.parametrize("name", CONNECTED)
def test_dtls_mode_and_outcome(name):
    f = facts(name)
    d = phase(session(name), "dtls")
    mode = d["details"]["mode"]
    assert (mode.startswith("legacy") if f["dtls_mode"] == "legacy" else mode == f["dtls_mode"]), mode
    assert d["details"]["established"] == f["dtls_established"]
    assert d["status"] == ("ok" if f["dtls_established"] else "failed")
    if f["dtls_version"] == "DTLS0.9":
        assert mode == "legacy-0x0100"
    tshark_hellos = f["oracle_tshark"]["dtls_client_hello_times"]
    assert d["details"]["client_hello_times"] == pytest.approx(tshark_hellos, abs=1e-6)


@pytest.mark.parametrize("name", CONNECTED)
def test_inner_packet_counts(name):
    f = facts(name)
    t = session(name)["tunnel"]
    ip = f["inner_packets"]
    if f.get("traffic_blocks"):
        # after a block is lifted the gateway may retransmit data on the old connection, which the client
        # answers with RST: on the wire (acflow counts it), never received by openconnect
        assert 0 <= t.get("cstp", {}).get("inner_packets", {}).get("s2c", 0) - ip["client_received_cstp"] <= 2
        ip = dict(ip, client_received_cstp=t.get("cstp", {}).get("inner_packets", {}).get("s2c", 0))
    assert t.get("dtls", {}).get("inner_packets", {}).get("c2s", 0) == ip["client_sent_dtls"]
    assert t.get("dtls", {}).get("inner_packets", {}).get("s2c", 0) == ip["client_received_dtls"]
    assert t.get("cstp", {}).get("inner_packets", {}).get("c2s", 0) == ip["client_sent_cstp"]
    assert t.get("cstp", {}).get("inner_packets", {}).get("s2c", 0) == ip["client_received_cstp"]


@pytest.mark.parametrize("name", CONNECTED)
def test_end_reason(name):
    f = facts(name)
    end = session(name)["tunnel"]["end"]
    if f["end"]["by"] == "gateway":  # its session or idle timeout (tests/test_gateway_timeout.py): no reason text
        assert f["end"]["how"] == "gateway-disconnect"
        assert end["type"] == "DISCONNECT" and end["direction"] == "s2c" and end["reason"] is None
    else:
        assert f["end"]["how"] == "cstp-disconnect"
        assert end["type"] == "DISCONNECT" and end["direction"] == "c2s"
        assert end["reason"] == f["end"]["reason"]
    assert end["ts"] == pytest.approx(f["end"]["time"], abs=0.5)


def test_tls12_rsa_with_private_key_only():
    s = session("tls12-rsa", rsa_only=True)
    assert phase(s, "cstp-connect")["status"] == "ok"
    assert phase(s, "user-auth")["details"]["result"] == "success"
    # the DTLS PSK comes from the TLS 1.2 exporter, i.e. from the master secret recovered with the RSA key
    assert phase(s, "dtls")["status"] == "ok"


def test_downloader_phase():
    f = facts("downloader")
    d = phase(session("downloader"), "downloader")["details"]
    assert [g["target"] for g in d["gets"]] == [x["uri"] for x in f["downloader"]]
    assert d["gets"][0]["status"] == 200
    check = d["profile_checks"][0]
    assert check["fetched"] and check["hash_matches"] is True
    assert d["missing_profiles"] == []


def test_no_keys_reports_wire_facts():
    d = sample("baseline")
    analysis = analyze_paths([d / "capture.pcapng"], load_keys([], [])[0], {})
    s = to_document(analysis, version=__version__)["sessions"][0]
    assert phase(s, "tls-handshake")["status"] == "ok"
    assert phase(s, "tls-handshake")["details"]["client_hello"]["sni"] == "vpn.acflow.test"
    for name in ("group-selection", "user-auth", "cstp-connect"):
        assert phase(s, name)["status"] == "undecrypted", name
    assert any(f["id"] == "KEYS_MISSING" for f in s["findings"])


def test_secrets_redacted_by_default():
    f = facts("legacy-dtls")
    master = dict(f["connects"][0]["request_headers"])["X-DTLS-Master-Secret"]
    text = json.dumps(doc("legacy-dtls", show_secrets=False))
    assert master not in text and master.lower() not in text
    assert "acflow-pass-1" not in text
    shown = json.dumps(doc("legacy-dtls", show_secrets=True))
    assert master in shown and "acflow-pass-1" in shown


@pytest.mark.parametrize("fmt", ["terminal", "json"])
def test_cli_analyze_runs(fmt, tmp_path):
    d = sample("baseline")
    out = tmp_path / f"report.{fmt}"
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(d / "capture.pcapng"), "--keylog",
                        str(d / "keys.log"), "--format", fmt, "-o", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert "cstp-connect" in text and "acflow-pass-1" not in text


def test_cli_not_a_capture(tmp_path):
    bad = tmp_path / "x.pcap"
    bad.write_text("CLIENT_RANDOM 00 11\n")
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(bad)], capture_output=True, text=True)
    assert p.returncode == 4
    assert "not a pcap/pcapng capture" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("name", ["dpd-loss", "reconnect", "nat-rebinding"])
def test_reconnects_match_facts(name):
    f = facts(name)
    c = phase(session(name), "cstp-connect")["details"]["connects"]
    ok = [x for x in c if x.get("status") == 200]
    assert [x["response_time"] for x in ok] == pytest.approx(f["cstp_connected_times"], abs=0.1)
    # every reconnect presents the session's cookie and gets the address the peers logged
    for x, r in zip(ok[1:], f["reconnects"]):
        assert x["parameters"]["address"] == r["tunnel_address"]


def test_dpd_loss_timeout_inside_the_block():
    f = facts("dpd-loss")
    block = f["traffic_blocks"][0]
    s = session("dpd-loss")
    t = next(x for x in s["findings"] if x["id"] == "DPD_TIMEOUT")
    assert block["start"] <= t["time"] <= block["end"]
