"""Keyless reading of the DTLS channel (analyzer/keyless.py): frame classes and inner bytes from record sizes.

The oracle is acflow's own decrypted analysis of the same real capture with its key log (itself checked against
tshark and the peers' logs elsewhere): without keys, the estimate must find the same DATA packets and inner
bytes per direction — exactly for AEAD suites, within one CBC block per packet for Cisco's DTLS 0x0100
(AES128-SHA) — and the client's MTU probes (padded DPD requests and their answers) apart from them.
"""
from __future__ import annotations

import pytest

from analyzer.analyze import analyze_paths, load_keys
from analyzer.keyless import DTLS_TYPE_BYTE, Protection, TunnelEstimate, protection

from .conftest import sample
from .helpers import doc

SAMPLES = ["baseline", "legacy-dtls", "legacy-dtls09", "mtu", "reconnect", "dpd-loss", "mixed-traffic",
           "scripted/dtls-cookie"]


def _flows(name: str, keyed: bool):
    d = sample(name)
    pipes: list = []
    keys, info = load_keys([d / "keys.log"] if keyed else [], [])
    analyze_paths([d / "capture.pcapng"], keys, info, on_pipeline=pipes.append)
    return {f.client: f for f in pipes[0].udp.values()}


@pytest.mark.parametrize("name", SAMPLES)
def test_dtls_estimate_matches_decryption(name):
    keyless, keyed = _flows(name, False), _flows(name, True)
    checked = 0
    for client, f in keyed.items():
        if f.keys_source is None:
            continue  # not a VPN DTLS flow decrypted by its CONNECT (e.g. another service's DTLS)
        est = keyless[client].estimate
        assert est is not None, client
        cbc = bool(est.prot.block)
        ch = f.channel
        # MTU probes (padded DPD requests and their answers) are told apart by their echo at the same size, or
        # as a run of shrinking unanswered probes (analyzer/keyless.py): none is left among the DATA packets
        probes = {"c2s": len(ch.mtu_probes), "s2c": sum(1 for p in ch.mtu_probes if p["answered_ts"])}
        for d in ("c2s", "s2c"):
            e = est.dirs[d]
            assert e.data == ch.inner[d], (d, e, ch.inner)
            assert e.mtu_probes == probes[d], (d, e, probes)
            true_bytes = ch.inner_bytes[d]
            if cbc:
                assert e.inner_bytes_least <= true_bytes <= e.inner_bytes_most
                assert e.inner_bytes_most - e.inner_bytes_least <= 15 * e.data
            else:
                assert e.inner_bytes_least == e.inner_bytes_most == true_bytes
        checked += 1
    assert checked >= 1


def test_protection_overheads():
    # TLS 1.3 AEAD: tag + inner content type; DTLS 1.2 GCM: explicit nonce + tag; CBC: IV + padded MAC'd data
    assert protection("TLS_AES_256_GCM_SHA384", 0x0304, dtls=False) == Protection(17)
    assert protection("TLS_PSK_WITH_AES_256_GCM_SHA384", 0xFEFD, dtls=True) == Protection(24)
    assert protection("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0x0303, dtls=False) == Protection(16)
    cbc = protection("TLS_RSA_WITH_AES_128_CBC_SHA", 0x0100, dtls=True)
    assert cbc == Protection(16, 16, 20)
    # 1 type byte + 0 payload + 20 MAC + 1 pad length = 22 -> 32, + 16 IV = 48
    assert cbc.plaintext(48)[0] <= 1 <= cbc.plaintext(48)[1]
    assert protection("TLS_WEIRD", 0x0303, dtls=False) is None
    # TLS 1.0 CBC: the IV is implicit; 3DES: 8-byte blocks; encrypt-then-MAC: the MAC after the padded data
    assert protection("TLS_RSA_WITH_AES_128_CBC_SHA", 0x0301, dtls=False) == Protection(0, 16, 20)
    assert protection("TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x0303, dtls=False) == Protection(8, 8, 20)
    etm = protection("TLS_RSA_WITH_AES_128_CBC_SHA", 0x0303, dtls=False, etm=True)
    # a CSTP control frame: 8 + 1 length byte -> 16, + 16 IV + 20 MAC = 52; MAC inside: 8 + 20 + 1 -> 32, + 16 = 48
    assert etm.record_length(8) == 52 and Protection(16, 16, 20).record_length(8) == 48
    for n in range(0, 200):
        least, most = etm.plaintext(etm.record_length(n))
        assert least <= n <= most


def test_estimate_in_the_report_only_without_keys():
    from analyzer import __version__
    from analyzer.report import render
    from analyzer.report.json_report import to_document

    d = sample("baseline")
    for keyed in (False, True):
        keys, info = load_keys([d / "keys.log"] if keyed else [], [])
        a = analyze_paths([d / "capture.pcapng"], keys, info)
        flow = to_document(a, version=__version__)["sessions"][0]["phases"][5]["details"]["flows"][0]
        text = render(a, "terminal", version=__version__)
        if keyed:
            assert "estimate" not in flow and "estimated from record sizes" not in text
        else:
            e = flow["estimate"]
            assert e["estimated"] is True and e["exact_sizes"] is True
            assert e["c2s"]["data"] >= 1 and e["c2s"]["inner_bytes_least"] == e["c2s"]["inner_bytes_most"]
            assert "estimated from record sizes: client→gateway" in text


CSTP_SAMPLES = ["dtls-blocked", "reconnect", "dpd-loss", "nat-rebinding", "scripted/keepalive-missing",
                "scripted/terminate", "scripted/dtls-cookie-ignored", "tls12-rsa"]


def _analysis(name: str, keyed: bool):
    d = sample(name)
    keys, info = load_keys([d / "keys.log"] if keyed else [], [])
    pipes: list = []
    a = analyze_paths([d / "capture.pcapng"], keys, info, on_pipeline=pipes.append)
    return a, pipes[0]


@pytest.mark.parametrize("name", CSTP_SAMPLES)
def test_cstp_estimate_matches_decryption(name):
    """The CSTP frames of every tunnel connection, read without keys from record sizes after the CONNECT round the
    keyless reading found: the same DATA frames and inner bytes per direction as decryption, the tunnel up at the
    CONNECT answer's frame."""
    (_, kp), (la, _) = _analysis(name, True), _analysis(name, False)
    inferred = {t.connection: t for s in la.sessions for t in (s.phase("cstp-connect").inferred.tunnels or [])}
    checked = 0
    for c in kp.tcp.values():
        if c.tunnel is None:
            continue
        t = inferred[f"tcp.stream {c.index}"]
        assert t.established_frame == c.tunnel_frame
        e = t.estimate
        for d in ("c2s", "s2c"):
            got = getattr(e, d)
            assert got.data == c.tunnel.inner[d], (d, got, c.tunnel.inner)
            if e.exact_sizes:
                assert got.inner_bytes_least == got.inner_bytes_most == c.tunnel.inner_bytes[d]
            else:
                assert got.inner_bytes_least <= c.tunnel.inner_bytes[d] <= got.inner_bytes_most
        checked += 1
    assert checked >= 1


def test_inferred_readings_are_labelled_in_every_report():
    from analyzer import __version__
    from analyzer.report import render
    from analyzer.report.json_report import to_document

    a, _ = _analysis("dtls-blocked", False)
    doc = to_document(a, version=__version__)
    s = doc["sessions"][0]
    ph = {p["phase"]: p for p in s["phases"]}
    for name in ("group-selection", "user-auth", "cstp-connect"):
        assert ph[name]["status"] == "undecrypted"  # the contract's meaning: the contents were not read
        inf = ph[name]["inferred"]
        assert inf["status"] == "ok" and inf["confidence"] in ("high", "medium") and inf["frames"] and inf["basis"]
    assert ph["user-auth"]["inferred"]["auth_rounds"] == 2  # ocserv asks username and password apart
    fb = next(f for f in s["findings"] if f["id"] == "DTLS_FALLBACK_TLS")
    assert fb["inferred"] is True and fb["evidence"]["inferred"] is True
    assert all("inferred" not in f for f in s["findings"] if f["id"] in ("DTLS_NO_RESPONSE", "KEYS_MISSING"))
    text = render(a, "terminal", version=__version__)
    assert "undecrypted → ok?" in text and "DTLS_FALLBACK_TLS (inferred)" in text and "CSTP inferred on" in text
    html = render(a, "html", version=__version__)
    assert "tunnel (inferred)" in html and "inferred, high" in html
    # with keys nothing is inferred
    keyed = to_document(_analysis("dtls-blocked", True)[0], version=__version__)["sessions"][0]
    assert all("inferred" not in p for p in keyed["phases"]) and all("inferred" not in f for f in keyed["findings"])


def test_unanswered_cstp_control_before_an_answered_dpd_is_a_keepalive():
    """Over TLS the peer gets every record in order and answers every DPD request: a control record it left
    unanswered while answering the same side's next DPD request is a keepalive, however long the silence before
    it (dtls-blocked: the client's keepalive 19.0 s into the gateway's silence, its DPD requests answered after
    19.4 s and more). The keyed analysis is the oracle."""
    (_, kp), (la, _) = _analysis("dtls-blocked", True), _analysis("dtls-blocked", False)
    [t] = la.sessions[0].phase("cstp-connect").inferred.tunnels
    est = t.reading.estimate
    keyed = {(d, fr): name for c in kp.tcp.values() if c.tunnel is not None
             for d, fr, name, _n in c.tunnel.controls}
    est.refine("c2s", 0.0)  # as if any silence were long enough for a DPD request
    before_answered = [e for i, e in enumerate(est.controls) if e[0] == "c2s" and e[3] != "DPD_REQ"
                       and any(x[0] == "s2c" and x[3] == "DPD_RESP" for x in est.controls[i + 1:])]
    assert before_answered
    for e in before_answered:
        assert e[3] == "KEEPALIVE" == keyed[("c2s", e[1])]


def test_keepalives_and_dpd_requests_as_the_client_logged_them():
    """keepalive-dpd (keepalive 6 s below DPD 10 s on an idle CSTP channel): every control record the client sent,
    read without keys, has the class of the line openconnect logged when it sent it ("Send CSTP Keepalive",
    "Send CSTP DPD") — the client's own log is the oracle; keepalives came up to 9 s into the gateway's silence."""
    import re

    d = sample("keepalive-dpd")
    logged = [(float(m.group(1)), "KEEPALIVE" if m.group(2) == "Keepalive" else "DPD_REQ")
              for m in re.finditer(r"^(\d+\.\d+)\tSend CSTP (Keepalive|DPD)$",
                                   (d / "client.log").read_text(encoding="utf-8"), re.M)]
    la, _ = _analysis("keepalive-dpd", False)
    [t] = la.sessions[0].phase("cstp-connect").inferred.tunnels
    sent = [(e[2], e[3]) for e in t.reading.estimate.controls if e[0] == "c2s" and e[3] != "DISCONNECT"]
    assert len(logged) >= 5 and len(sent) == len(logged)
    for (ts, cls), (log_ts, log_cls) in zip(sent, logged):
        assert abs(ts - log_ts) < 0.05 and cls == log_cls, (ts, cls, log_ts, log_cls)
    assert {c for _, c in logged} == {"KEEPALIVE", "DPD_REQ"}


def test_a_late_dpd_answer_before_the_close_is_no_terminate():
    """dpd-late-answer: the gateway answers the client's last CSTP DPD request only when TCP retransmits it after
    the traffic block, 13 s late, and the client (its socket closed) resets the connection. Read without keys, that
    last control record of the gateway is the DPD answer the keyed analysis shows, not the gateway's end (END: its
    DISCONNECT or TERMINATE)."""
    (_, kp), (la, _) = _analysis("dpd-late-answer", True), _analysis("dpd-late-answer", False)
    c = next(c for c in kp.tcp.values() if c.tunnel is not None and c.index == 0)
    keyed = {(d, fr): name for d, fr, name, _n in c.tunnel.controls}
    t = next(t for t in la.sessions[0].phase("cstp-connect").inferred.tunnels if t.connection == "tcp.stream 0")
    last = [e for e in t.reading.estimate.controls if e[0] == "s2c"][-1]
    assert last[3] == keyed[("s2c", last[1])] == "DPD_RESP"
    assert t.ended_by not in ("TERMINATE", "END")


def test_gateway_keepalives_between_answered_dpd_requests():
    """scripted/gateway-dpd-keepalive: the scripted gateway sends its own keepalives and DPD requests on a fixed
    schedule (CSTP at 1.0 and 1.5 s after the CONNECT, then DTLS every 1.5 s: DPD requests at 3.0, 4.5, 6.0 s,
    keepalives at 3.5, 5.0, 6.5 s) and openconnect answers every DPD request at once. Read without keys, each control
    record of the gateway on both channels has the class the keyed analysis (the oracle) gives it: the keepalives
    the client got and left unanswered — the CSTP one before an answered DPD request that the client's DISCONNECT
    follows, the DTLS ones between promptly answered DPD requests — and the last, sent after no longer a silence
    than those, are keepalives, though the gateway's answered DPD requests came after shorter silences."""
    name = "scripted/gateway-dpd-keepalive"
    (_, kp), (la, lp) = _analysis(name, True), _analysis(name, False)
    keyed = {(d, fr): name for c in kp.tcp.values() if c.tunnel is not None for d, fr, name, _n in c.tunnel.controls}
    keyed.update({(d, fr): name for f in kp.udp.values() if f.keys_source is not None
                  for d, fr, name, n in f.channel.controls if n <= 16})  # (not the MTU probes)
    ests = [t.reading.estimate for t in la.sessions[0].phase("cstp-connect").inferred.tunnels]
    ests += [f.estimate for f in lp.udp.values() if f.estimate is not None]
    read = [(e[0], e[1], e[3]) for est in ests for e in est.controls if e[0] == "s2c" and e[3] != "MTU_PROBE"]
    classes = [cls for _d, _fr, cls in read]
    assert classes.count("KEEPALIVE") == 4 and classes.count("DPD_REQ") == 4
    for d, fr, cls in read:
        assert keyed[(d, fr)] == cls, (fr, cls, keyed[(d, fr)])


@pytest.mark.parametrize("name", ["baseline", "legacy-dtls", "mtu", "dpd-loss", "nat-rebinding",
                                  "scripted/dtls-full-handshake"])
@pytest.mark.parametrize("keyed", [False, True])
def test_the_dtls_backlog_bound_changes_no_report(name, keyed, monkeypatch):
    """A DTLS flow holds at most MAX_BACKLOG_BYTES of application data waiting for keys (without a key log, a gateway
    capture of 50 clients held 2000 records per flow: 252 MiB at 110 MB, 883 MiB at 439 MB): with no room at all,
    the report is the same, with keys and without."""
    import json

    from analyzer import dtlsflow
    from analyzer.report.json_report import to_document

    d = sample(name)

    def report() -> str:
        keys, info = load_keys([d / "keys.log"] if keyed else [], [])
        doc = to_document(analyze_paths([d / "capture.pcapng"], keys, info), version="test", show_secrets=True)
        for c in doc.get("captures", []):
            c.pop("analysis_seconds", None)
        return json.dumps(doc, sort_keys=True)

    want = report()
    monkeypatch.setattr(dtlsflow, "MAX_BACKLOG_BYTES", 0)
    assert report() == want


@pytest.mark.parametrize("name", ["auth-fail", "group-url-unknown", "scripted/connect-rejected"])
def test_a_login_without_a_tunnel_is_said_without_keys(name):
    """A login that ended without a tunnel, read without keys with its gateway named: the verdict says so and names
    the phase the keyless reading found failed — the phase the keyed analysis finds failed — instead of 'No problem
    seen without keys' (before session 13)."""
    keyed = doc(name)["sessions"][0]
    failed = next(p["phase"] for p in keyed["phases"] if p["status"] == "failed")
    (s,) = doc(name, keys=False, gateway="198.18.0.1")["sessions"]
    v = s["verdict"]
    assert v["outcome"] == "inconclusive" and v["experienced"] == "No tunnel seen without keys"
    assert v["cause"].startswith(f"{failed} failed, read from record sizes and timing")


def _dtls_estimate(records):
    """A DTLS channel's keyless estimate (TLS_PSK_WITH_AES_256_GCM_SHA384 over DTLS 1.2) fed (ts, direction,
    inner payload length) records, finished."""
    prot = protection("TLS_PSK_WITH_AES_256_GCM_SHA384", 0xFEFD, dtls=True)
    est = TunnelEstimate(DTLS_TYPE_BYTE, prot)
    for frame, (ts, direction, n) in enumerate(records, 1):
        est.add(direction, prot.record_length(DTLS_TYPE_BYTE + n), ts, frame)
    est.finish()
    return est


def test_pings_of_one_size_are_not_mtu_probes():
    """An echo reply has its request's length: pings of one size within the probe period were read as MTU probes
    (the lab's both-sides-loss: 20 pings of 1128 bytes). A length echoed three times or more is traffic."""
    pings = [(1.0 + i * 0.2 + dt, d, 1128) for i in range(6) for dt, d in ((0.0, "c2s"), (0.001, "s2c"))]
    est = _dtls_estimate(pings)
    assert est.dirs["c2s"].mtu_probes == est.dirs["s2c"].mtu_probes == 0
    assert est.dirs["c2s"].data == est.dirs["s2c"].data == 6
    assert not [e for e in est.controls if e[3] == "MTU_PROBE"]
    # a client's search for the MTU: each size echoed once, shrinking — still probes
    search = [(0.5 + i * 0.01 + dt, d, n) for i, n in enumerate((1400, 1200, 1300)) for dt, d in
              ((0.0, "c2s"), (0.002, "s2c"))]
    est = _dtls_estimate(search + pings)
    assert est.dirs["c2s"].mtu_probes == est.dirs["s2c"].mtu_probes == 3
    assert est.dirs["c2s"].data == 6 and est.last_data["s2c"] == pings[-1][0]


def test_keepalives_soon_after_the_peer_spoke_are_not_dpd_requests():
    """The lab's both-sides-reset: with the gateway's keepalive at 2 s, the client's CSTP keepalives (unanswered,
    the tunnel's data on DTLS) ended the channel when a firewall reset it; without keys they were a dead-peer run of
    DPD requests (DPD_TIMEOUT). A DPD request follows the peer's silence for the DPD interval (5 s at least on Cisco
    gateways): these came sooner, so they stay keepalives, as the keyed analysis reads them."""
    keyless = doc("both-sides-reset", keys=False)
    keyed = doc("both-sides-reset")
    assert not [f for s in keyless["sessions"] for f in s["findings"] if f["id"] == "DPD_TIMEOUT"]
    assert [f["id"] for s in keyed["sessions"] for f in s["findings"] if f["id"] == "DPD_TIMEOUT"] == []


def test_lost_mtu_probes_with_the_peers_small_records_between():
    """A client's MTU search whose big probes are lost (the lab's both-sides-mtu-blackhole): the gateway's small
    records between them (its own DPD exchange) do not end the run — three shrinking unanswered probes are probes."""
    recs = [(1.0, "c2s", 1400), (1.02, "s2c", 60), (1.05, "c2s", 1300), (1.1, "c2s", 1250), (1.15, "s2c", 60)]
    est = _dtls_estimate(recs)
    assert est.dirs["c2s"].mtu_probes == 3 and est.dirs["c2s"].data == 0
    # a big record of the peer between them does end it (traffic, not a search)
    est = _dtls_estimate([(1.0, "c2s", 1400), (1.02, "s2c", 1200), (1.05, "c2s", 1300), (1.1, "c2s", 1250)])
    assert est.dirs["c2s"].mtu_probes == 0
