"""The committed lab samples are real, decryptable and their facts.json agrees with the capture.

tshark (the oracle) decrypts every sample's TLS with its key log (or, for tls12-rsa, with the gateway's RSA key
alone) and must find the aggregate-auth POSTs and the CONNECT /CSCOSSLC/tunnel exchange; the facts recorded from
the peers' logs must match what tshark sees on the wire.
"""
from __future__ import annotations

import datetime as dt

import pytest

from .conftest import facts, sample, sample_dirs
from .oracle import tshark_fields

SCENARIOS = ["baseline", "dtls-blocked", "legacy-dtls", "legacy-dtls09", "group-select", "mtu", "auth-fail",
             "tls12-rsa", "downloader", "dpd-loss", "reconnect", "nat-rebinding", "cert-wrong-name", "cert-expired",
             "client-cert-request", "keepalive-dpd", "dpd-late-answer"]
RECONNECTING = ["dpd-loss", "reconnect", "nat-rebinding"]
CLIENT = "198.18.0.2"


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


# --- losses, reconnections, NAT rebinding ---------------------------------------------------------------------

def _connect_cookies(name: str) -> list[tuple[float, str]]:
    """(time, Cookie header) of every CONNECT request, as tshark decrypts them."""
    d = sample(name)
    rows = tshark_fields(d / "capture.pcapng", ["frame.time_epoch", "http.cookie"],
                         'http.request.method == "CONNECT"', keylog=d / "keys.log")
    return [(float(r[0]), r[1]) for r in rows]


@pytest.mark.parametrize("name", RECONNECTING)
def test_reconnect_reuses_cookie_and_address(tshark, name):
    """A CSTP reconnect is a new TLS session whose CONNECT carries the first cookie, without config-auth."""
    f = facts(name)
    assert f["reconnects"], "no reconnection in this sample"
    first_address = f["tunnel_addresses"][0]
    for r in f["reconnects"]:
        assert r["status"] == 200 and r["new_tls_session"] and r["same_cookie"]
        assert r["config_auth_posts"] == 0
        assert r["request_address"] == r["tunnel_address"] == first_address
        assert r["dtls_established_time"] and r["dtls_established_time"] > r["time"]
        assert r["lost_time"] and 0 < r["gap"]
    assert len(f["tls_sessions"]) == len(f["connects"]) == 1 + len(f["reconnects"])
    # the wire: one CONNECT per TLS session, all with the same webvpn cookie, each followed by a DTLS hello
    cookies = _connect_cookies(name)
    assert len(cookies) == len(f["connects"])
    assert len({c for _, c in cookies}) == 1 and cookies[0][1].startswith("webvpn=")
    hellos = f["oracle_tshark"]["dtls_client_hello_times"]
    for t, _ in cookies:
        assert any(0 < h - t < 2 for h in hellos), (t, hellos)
    # the gateway resumed the same session (its sec-mod session id) from the cookie
    opened = [e["session"] for e in f["gateway_events"] if e["event"] == "session-open"]
    assert len(opened) == len(f["connects"]) and len(set(opened)) == 1, opened
    assert [e["event"] for e in f["gateway_events"]].count("cookie-auth") == len(f["connects"])


def test_dpd_loss_facts(tshark):
    f = facts("dpd-loss")
    assert f["cstp_dpd"] == 5
    [block] = f["traffic_blocks"]
    start, end = block["start"], block["end"]
    # CSTP dead peer ~2 x DPD after the traffic stopped (the block started right after the pings)
    [dead] = [d for d in f["dead_peer"] if d["channel"] == "CSTP"]
    assert 7 <= dead["time"] - start <= 13, dead["time"] - start
    # three attempts: at once, then after 10 s and 20 s of back-off; the first two time out during the block
    attempts = f["reconnect_attempts"]
    assert len(attempts) == 3 and 0 <= attempts[0] - dead["time"] < 1
    assert [s_["seconds"] for s_ in f["reconnect_sleeps"]] == [10, 20]
    assert len(f["reconnect_failures"]) == 2 and all(x["error"] == "Connection timed out"
                                                     for x in f["reconnect_failures"])
    for fail, sleep, nxt in zip(f["reconnect_failures"], f["reconnect_sleeps"], attempts[1:]):
        assert fail["time"] < end and abs((nxt - fail["time"]) - sleep["seconds"]) < 1.5
    assert attempts[2] > end
    [r] = f["reconnects"]
    assert r["lost_time"] == dead["time"] and r["time"] > end
    # pings before and after
    assert [(p["sent"], p["received"]) for p in f["pings"]] == [(5, 5), (5, 5)]
    assert f["end"]["how"] == "cstp-disconnect"
    # the wire: a SYN burst per attempt, each from its own port; the failed ones inside the block
    syns = f["oracle_tshark"]["tcp_syns"]
    ports = list(dict.fromkeys(s_["port"] for s_ in syns))
    assert len(ports) == 1 + len(attempts), syns
    for port in ports[1:3]:
        times = [s_["time"] for s_ in syns if s_["port"] == port]
        assert len(times) >= 2 and start < times[0] and times[-1] < end
    rows = tshark_fields(sample("dpd-loss") / "capture.pcapng", ["frame.time_epoch"],
                         f"ip.src == {CLIENT} && frame.time_epoch > {start + 0.5} && frame.time_epoch < {end}")
    assert rows, "the client kept sending during the block"
    rows = tshark_fields(sample("dpd-loss") / "capture.pcapng", ["frame.time_epoch"],
                         f"ip.dst == {CLIENT} && !arp && frame.time_epoch > {start + 0.01} && frame.time_epoch < {end}")
    assert rows == [], "the gateway's packets reached the client during the block"


def test_keepalive_dpd_facts():
    f = facts("keepalive-dpd")
    assert (f["cstp_keepalive"], f["cstp_dpd"]) == (6, 10)
    assert f["dtls_established"] is False
    log = (sample("keepalive-dpd") / "client.log").read_text(encoding="utf-8")
    assert log.count("Send CSTP Keepalive") >= 3 and log.count("Send CSTP DPD") >= 2


def test_dpd_late_answer_facts(tshark):
    f = facts("dpd-late-answer")
    assert (f["cstp_dpd"], f["cstp_keepalive"]) == (5, 12)
    [block] = f["traffic_blocks"]
    [dead] = [d for d in f["dead_peer"] if d["channel"] == "CSTP"]
    assert block["start"] < dead["time"] < block["end"]
    [r] = f["reconnects"]
    assert r["same_cookie"] and r["time"] > block["end"]
    # the wire, after the block: the old connection's last client record retransmitted, the gateway's answer of a
    # CSTP control frame's size (30 bytes: 8 + TLS 1.3 overhead), the client's reset (its socket is closed)
    after = f"tcp.stream == 0 && frame.time_epoch > {block['end']} && (tcp.len > 0 || tcp.flags.reset == 1)"
    rows = tshark_fields(sample("dpd-late-answer") / "capture.pcapng", ["ip.src", "tcp.len", "tcp.flags.reset"], after)
    assert [(r_[0] == CLIENT, r_[1], r_[2] in ("1", "True")) for r_ in rows] == [
        (True, "30", False), (False, "30", False), (True, "0", True)], rows


def test_reconnect_facts(tshark):
    f = facts("reconnect")
    [kill] = f["tcp_kills"]
    [err] = f["ssl_read_errors"]
    [r] = f["reconnects"]
    assert 0 <= err["time"] - kill["time"] < 1 and r["lost_time"] == err["time"]
    assert r["gap"] < 2 and f["dead_peer"] == [] and len(f["reconnect_attempts"]) == 1
    assert [(p["sent"], p["received"]) for p in f["pings"]] == [(5, 5), (5, 5)]
    # the wire: the client's RST on the killed connection, then a new connection at once
    port = int(kill["sockets"][0].rsplit(":", 1)[1])
    rst = tshark_fields(sample("reconnect") / "capture.pcapng", ["frame.time_epoch"],
                        f"ip.src == {CLIENT} && tcp.srcport == {port} && tcp.flags.reset == 1")
    assert rst and abs(float(rst[0][0]) - kill["time"]) < 1
    syns = f["oracle_tshark"]["tcp_syns"]
    assert len(syns) == 2 and 0 < syns[1]["time"] - float(rst[0][0]) < 1


def test_nat_rebinding_facts(tshark):
    f = facts("nat-rebinding")
    nat = f["nat_rebinding"]
    assert nat["port_before"] and nat["port_after"] and nat["port_before"] != nat["port_after"]
    assert 40000 <= nat["port_after"] <= 40100
    # the wire (tshark): DTLS from the new port without a ClientHello, after the rule; a hello from the old one
    ports = {u["port"]: u for u in f["oracle_tshark"]["udp_client_ports"]}
    assert ports[nat["port_before"]]["client_hello"]
    assert ports[nat["port_before"]]["last_time"] < nat["time"]
    after = ports[nat["port_after"]]
    assert not after["client_hello"] and after["first_time"] >= nat["time"] and after["packets"] >= 5
    # ocserv: "unexpected DTLS content type" from the new port, then it hands the new port to the worker
    ev = [(e["event"], e.get("udp_port")) for e in f["gateway_events"]]
    assert ("udp-unexpected", nat["port_after"]) in ev
    assert ev.index(("udp-socket-to-worker", nat["port_after"])) > ev.index(("udp-unexpected", nat["port_after"]))
    # the pings right after the change are lost; the client's DTLS DPD declares the peer dead and a new DTLS
    # handshake follows from another port
    assert f["pings"][1]["received"] < f["pings"][1]["sent"]
    [dead] = [d for d in f["dead_peer"] if d["channel"] == "DTLS"]
    assert dead["time"] > nat["time"]
    new_hellos = [u for u in f["oracle_tshark"]["udp_client_ports"] if u["client_hello"] and
                  u["first_time"] > dead["time"] - 0.5]
    assert new_hellos and all(u["port"] not in (nat["port_before"], nat["port_after"]) for u in new_hellos)
    assert len(f["dtls_established_times"]) >= 2 and f["dtls_established_times"][1] > dead["time"]
    assert f["pings"][-1]["received"] == f["pings"][-1]["sent"]


# --- certificates ---------------------------------------------------------------------------------------------

def _server_certificate_on_wire(name: str) -> list[list[str]]:
    d = sample(name)
    return tshark_fields(d / "capture.pcapng", ["x509ce.dNSName", "x509af.utcTime", "x509sat.uTF8String"],
                         "tls.handshake.type == 11 && ip.src == 198.18.0.1", keylog=d / "keys.log")


def test_cert_wrong_name_facts(tshark):
    f = facts("cert-wrong-name")
    c = f["server_certificate"]
    assert f["host_used"] == "vpn.acflow.test"
    assert c["subject_cn"] == "gw.elsewhere.test" and c["san_dns"] == ["gw.elsewhere.test"] and c["san_ip"] == []
    assert c["names_host"] is False and c["expired_at_connect"] is False
    assert f["server_cert_verify_errors"] == ["certificate does not match hostname"]
    assert f["auth_result"] == "success" and f["dtls_established"]  # accepted by its pin
    # the wire: SNI is the host used; the (TLS 1.3, decrypted) certificate names the other one
    d = sample("cert-wrong-name")
    sni = tshark_fields(d / "capture.pcapng", ["tls.handshake.extensions_server_name"], "tls.handshake.type == 1")
    assert {r[0] for r in sni} == {f["host_used"]}
    [row] = _server_certificate_on_wire("cert-wrong-name")
    assert row[0] == "gw.elsewhere.test" and "gw.elsewhere.test" in row[2].split("|")


def test_cert_expired_facts(tshark):
    f = facts("cert-expired")
    c = f["server_certificate"]
    assert c["names_host"] is True and c["expired_at_connect"] is True
    assert c["not_after"] < f["tls_sessions"][0]["time"]
    assert f["server_cert_verify_errors"] == ["certificate expired"]
    assert f["auth_result"] == "success" and f["dtls_established"]  # openconnect accepts it by its pin
    [row] = _server_certificate_on_wire("cert-expired")
    not_after = row[1].split("|")[-1].replace(" (UTC)", "")
    wire = dt.datetime.strptime(not_after, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
    assert wire == c["not_after"]


def test_client_cert_request_facts(tshark):
    f = facts("client-cert-request")
    req = f["client_cert_request"]
    assert f["tls_version"] == "TLS1.2"
    assert req["requested"] and req["ca_names"] == ["CN=acflow lab CA,O=acflow lab"]
    assert req["gateway_auth"] == ["plain", "certificate"] and not req["certificate_required"]
    assert req["client_certificate_sent"] is False
    assert f["auth_result"] == "success" and [r["request_fields"] for r in f["auth_rounds"]
                                              if r["request_type"] == "auth-reply"] == [["username"], ["password"]]
    # the wire, in the clear (TLS 1.2, no keys): CertificateRequest with the CA's name; an empty client Certificate
    d = sample("client-cert-request")
    creq = tshark_fields(d / "capture.pcapng", ["tls.handshake.dnames_len", "x509sat.uTF8String"],
                         "tls.handshake.type == 13")
    assert len(creq) == 1 and int(creq[0][0]) > 0 and "acflow lab CA" in creq[0][1].split("|")
    cert = tshark_fields(d / "capture.pcapng", ["tls.handshake.certificates_length"],
                         f"tls.handshake.type == 11 && ip.src == {CLIENT}")
    assert cert == [["0"]]


def test_no_deviation_outside_its_scenario():
    """The new facts stay empty where nothing of the kind happened (baseline)."""
    f = facts("baseline")
    assert f["reconnects"] == [] and f["dead_peer"] == [] and f["traffic_blocks"] == [] and f["tcp_kills"] == []
    assert f["nat_rebinding"] is None and f["reconnect_attempts"] == []
    assert f["client_cert_request"]["requested"] is False
    assert f["server_certificate"]["names_host"] and not f["server_certificate"]["expired_at_connect"]
    assert f["tunnel_addresses"] == [f["tunnel_address"]]

