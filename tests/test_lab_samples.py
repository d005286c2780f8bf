"""The committed lab samples are real, decryptable and their facts.json agrees with the capture.

tshark (the oracle) decrypts every sample's TLS with its key log (or, for tls12-rsa, with the gateway's RSA key
alone) and must find the aggregate-auth POSTs and the CONNECT /CSCOSSLC/tunnel exchange; the facts recorded from
the peers' logs must match what tshark sees on the wire.
"""
from __future__ import annotations

import pytest

from .conftest import facts, sample, sample_dirs
from .oracle import tshark_fields

SCENARIOS = ["baseline", "dtls-blocked", "legacy-dtls", "legacy-dtls09", "group-select", "mtu", "auth-fail",
             "tls12-rsa", "downloader"]


def test_every_scenario_has_a_sample():
    present = {d.name for d in sample_dirs()}
    assert set(SCENARIOS) <= present, f"missing samples: {set(SCENARIOS) - present}"


def _http_requests(name: str, *, rsa_only: bool = False) -> list[tuple[str, str]]:
    d = sample(name)
    kw = {"rsa_key": d / "server-key.pem"} if rsa_only else {"keylog": d / "keys.log"}
    rows = tshark_fields(d / "capture.pcapng", ["http.request.method", "http.request.uri"], "http.request", **kw)
    return [(r[0], r[1]) for r in rows]


@pytest.mark.parametrize("name", SCENARIOS)
def test_tshark_decrypts_auth_and_connect(tshark, name):
    reqs = _http_requests(name)
    methods = [m for m, _ in reqs]
    assert "POST" in methods, reqs
    f = facts(name)
    if f["auth_result"] == "success":
        assert ("CONNECT", "/CSCOSSLC/tunnel") in reqs
    else:
        assert "CONNECT" not in methods
    # the POSTs tshark decrypts are the ones openconnect logged, in order
    logged = [(h["method"], h["target"]) for h in f["http"]]
    assert [r for r in reqs if r[0] in ("POST", "CONNECT")] == [r for r in logged if r[0] in ("POST", "CONNECT")]


@pytest.mark.parametrize("name", SCENARIOS)
def test_config_auth_xml_visible(tshark, name):
    d = sample(name)
    rows = tshark_fields(d / "capture.pcapng", ["xml.tag"], "xml", keylog=d / "keys.log")
    tags = " ".join(r[0] for r in rows)
    assert "<config-auth" in tags and 'type="init"' in tags


def test_tls12_rsa_decrypts_with_private_key_only(tshark):
    reqs = _http_requests("tls12-rsa", rsa_only=True)
    assert ("CONNECT", "/CSCOSSLC/tunnel") in reqs
    rows = tshark_fields(sample("tls12-rsa") / "capture.pcapng", ["tls.handshake.ciphersuite"],
                         "tls.handshake.type == 2")
    assert rows and all(int(r[0], 0) in (0x002F, 0x0035, 0x003C, 0x003D, 0x009C, 0x009D) for r in rows), rows


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "auth-fail"])
def test_connect_headers_match_the_wire(tshark, name):
    """Every X-CSTP-/X-DTLS- header openconnect logged is on the wire, as tshark decrypts it."""
    d = sample(name)
    f = facts(name)
    rows = tshark_fields(d / "capture.pcapng", ["http.request.line"], 'http.request.method == "CONNECT"',
                         keylog=d / "keys.log")
    wire = {line.strip() for r in rows for line in r[0].split("|")}
    for k, v in f["connects"][0]["request_headers"]:
        assert f"{k}: {v}\\r\\n" in wire or f"{k}: {v}" in {w.replace("\\r\\n", "") for w in wire}, (k, v)
    resp = tshark_fields(d / "capture.pcapng", ["http.response.line"], 'http.response.code == 200',
                         keylog=d / "keys.log")
    wire_resp = {line.replace("\\r\\n", "").strip() for r in resp for line in r[0].split("|")}
    for k, v in f["connects"][0]["response_headers"]:
        assert f"{k}: {v}" in wire_resp, (k, v)


# --- per-scenario facts -------------------------------------------------------------------------------------

def test_baseline_facts():
    f = facts("baseline")
    assert f["tls_version"] == "TLS1.3"
    assert f["auth_result"] == "success"
    assert f["dtls_mode"] == "psk-negotiate" and f["dtls_established"]
    assert f["pings"][0]["sent"] == f["pings"][0]["received"] == 5
    assert f["inner_packets"]["client_sent_dtls"] >= 5
    assert f["end"] == {**f["end"], "by": "client", "how": "cstp-disconnect", "reason": "Aborted by caller"}
    assert len(f["oracle_tshark"]["dtls_client_hello_times"]) >= 1


def test_dtls_blocked_facts():
    f = facts("dtls-blocked")
    assert f["dtls_mode"] == "psk-negotiate" and not f["dtls_established"]
    hellos = f["oracle_tshark"]["dtls_client_hello_times"]
    # two attempts, the second ~60 s after the first one was abandoned
    assert hellos and hellos[-1] - hellos[0] > 60, hellos
    assert f["inner_packets"]["client_sent_cstp"] >= 10
    assert f["pings"][0]["received"] == f["pings"][0]["sent"]


@pytest.mark.parametrize("name,version", [("legacy-dtls", "DTLS1.2"), ("legacy-dtls09", "DTLS0.9")])
def test_legacy_dtls_facts(name, version):
    f = facts(name)
    assert f["dtls_mode"] == "legacy" and f["dtls_established"]
    assert f["dtls_version"] == version
    req = dict(f["connects"][0]["request_headers"])
    resp = dict(f["connects"][0]["response_headers"])
    assert len(req["X-DTLS-Master-Secret"]) == 96
    assert len(resp["X-DTLS-Session-ID"]) == 64


def test_group_select_facts():
    f = facts("group-select")
    labels = [o["label"] for o in f["group_list"]]
    assert {"Sales Team", "Engineering VPN", "Operations"} <= set(labels)
    assert f["group_chosen"] == "engineering"
    assert sum(o["selected"] for o in f["group_list"]) <= 1


def test_mtu_facts():
    f = facts("mtu")
    req = dict(f["connects"][0]["request_headers"])
    resp = dict(f["connects"][0]["response_headers"])
    assert int(resp["X-CSTP-MTU"]) != int(req["X-CSTP-MTU"])
    assert f["tunnel_mtu_granted"] < 1300
    big = [p for p in f["pings"] if p["size"] > f["tunnel_mtu_granted"]]
    assert big and big[0]["df"]


def test_auth_fail_facts():
    f = facts("auth-fail")
    assert f["auth_result"] == "failure"
    assert f["connects"] == []
    assert f["end"]["how"] == "auth-failed"


def test_tls12_rsa_facts():
    f = facts("tls12-rsa")
    assert f["tls_version"] == "TLS1.2"
    assert "(RSA)" in f["tls_sessions"][0]["ciphersuite"]
    assert f["dtls_mode"] == "psk-negotiate" and f["dtls_established"]


def test_downloader_facts(tshark):
    f = facts("downloader")
    assert f["profile_manifest"] and f["profile_manifest"][0]["hash_type"] == "sha1"
    assert f["downloader"] and f["downloader"][0]["status"] == 200
    assert f["downloader"][0]["uri"] == f["profile_manifest"][0]["uri"]
    # the downloader's GET is a separate TLS session: three TLS sessions (auth, downloader, tunnel)
    assert len({r[0] for r in tshark_fields(sample("downloader") / "capture.pcapng", ["tcp.stream"],
                                             "tls.handshake.type == 1")}) >= 3
