"""Issue #12: captures made elsewhere — cut in the middle of a tunnel, without keys, IPv6, a known gateway.

The captures here are the lab's real ones, cut or rewritten the way captures from the field arrive: a capture
started after the client connected (the first frames are TLS application data and DTLS epoch-1 records), the
same session without any key, the same session over IPv6 (addresses rewritten with scapy, 2001:2::/48, the
benchmarking range). Captures with unrelated traffic and the DTLS cookie exchange are in test_realworld_live.py.
"""
from __future__ import annotations

import functools
import json
import signal
from pathlib import Path

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.evidence import GatewaySpec, fmt_endpoint, split_endpoint
from analyzer.report import render
from analyzer.report.json_report import to_document

from .conftest import sample
from .oracle import pyshark_file


def _frames(path: Path):
    from scapy.utils import PcapNgReader  # noqa: PLC0415

    with PcapNgReader(str(path)) as r:
        return list(r)


def _write(pkts, path: Path) -> Path:
    from scapy.utils import wrpcap  # noqa: PLC0415

    wrpcap(str(path), pkts)
    return path


@pytest.fixture(scope="module")
def cuts(tmp_path_factory) -> dict[str, Path]:
    """The baseline sample cut the ways field captures are: started mid-tunnel, DTLS only, IPv6."""
    from scapy.layers.inet import IP, TCP, UDP  # noqa: PLC0415
    from scapy.layers.inet6 import IPv6  # noqa: PLC0415
    from scapy.layers.l2 import Ether  # noqa: PLC0415

    out = tmp_path_factory.mktemp("realworld")
    pkts = _frames(sample("baseline") / "capture.pcapng")
    # the first frame after the DTLS ServerHello flight whose TLS payload is application data: from there on the
    # capture shows a running tunnel (frames 1-29 of the original hold the handshakes and the auth exchange)
    mid = pkts[29:]
    assert any(UDP in p for p in mid) and any(TCP in p and bytes(p[TCP].payload)[:1] == b"\x17" for p in mid)
    udp_after_hs = [p for p in pkts if UDP in p and bytes(p[UDP].payload)[:1] == b"\x17"]
    v6 = []
    for p in pkts:
        if IP not in p:
            continue
        ip = p[IP]
        amap = {"198.18.0.1": "2001:2::1", "198.18.0.2": "2001:2::2"}
        q = Ether(src=p[Ether].src, dst=p[Ether].dst) / IPv6(src=amap.get(ip.src, "2001:2::99"),
                                                             dst=amap.get(ip.dst, "2001:2::99"), hlim=ip.ttl)
        inner = ip.payload.copy()
        if hasattr(inner, "chksum"):
            inner.chksum = None
        q = q / inner
        q.time = p.time
        v6.append(q)
    # cut where the first DTLS frame is the client's application data (no earlier flow of that client port)
    first_c2s = next(i for i, p in enumerate(pkts) if UDP in p and p[IP].src == "198.18.0.2"
                     and bytes(p[UDP].payload)[:1] == b"\x17")
    client_first = [p for p in pkts[first_c2s:]]
    return {"mid": _write(mid, out / "mid-tunnel.pcap"), "dtls-only": _write(udp_after_hs, out / "dtls-only.pcap"),
            "client-first": _write(client_first, out / "client-first.pcap"),
            "ipv6": _write(v6, out / "ipv6.pcap")}


@functools.cache
def _doc(path: str, keyed: bool = True, gateways: tuple = ()) -> dict:
    keys, info = load_keys([sample("baseline") / "keys.log"] if keyed else [], [])
    a = analyze_paths([Path(path)], keys, info, gateways=[GatewaySpec.parse(g) for g in gateways])
    d = to_document(a, version=__version__)
    d["_terminal"] = render(a, "terminal", version=__version__)
    return d


def _phases(s: dict) -> dict:
    return {p["phase"]: p for p in s["phases"]}


def test_capture_started_mid_tunnel_is_not_a_failure(cuts):
    d = _doc(str(cuts["mid"]))
    assert len(d["sessions"]) == 1
    s = d["sessions"][0]
    ph = _phases(s)
    # nothing failed: the phases before the capture are "before-capture", the tunnel is up
    assert not [p["phase"] for p in s["phases"] if p["status"] == "failed"], s["phases"]
    for name in ("tls-handshake", "group-selection", "user-auth", "cstp-connect"):
        assert ph[name]["status"] == "before-capture", (name, ph[name])
    assert "no ServerHello" not in ph["tls-handshake"]["summary"]
    assert ph["dtls"]["status"] == "before-capture"
    assert ph["dtls"]["details"]["established"] is True
    assert "unanswered" not in ph["dtls"]["summary"]
    ids = [f["id"] for f in s["findings"]]
    assert "DTLS_NAT_REBINDING" not in ids and "DTLS_NO_RESPONSE" not in ids
    km = next(f for f in s["findings"] if f["id"] == "KEYS_MISSING")
    assert "started before the capture" in km["message"] and "None" not in km["remedy"]
    # no placeholder and no "0 inner packets" for records that were simply not decrypted
    assert "None" not in d["_terminal"] and "(?)" not in d["_terminal"]
    assert "DTLS inner packets client→gateway 0" not in d["_terminal"]
    assert "not decrypted:" in d["_terminal"]


def test_first_dtls_record_from_the_client_is_not_a_nat_rebinding(cuts):
    """Issue #12 item 3: one DTLS record from a client port with no earlier flow of that client is a flow that was
    up before the capture, not a NAT rebinding."""
    d = _doc(str(cuts["client-first"]))
    s = d["sessions"][0]
    fl = _phases(s)["dtls"]["details"]["flows"][0]
    assert fl["first_record"] == {"content_type": 23, "epoch": 1, "from": "client"}
    assert fl["established"] and fl["established_from"] == "before-capture"
    assert "DTLS_NAT_REBINDING" not in [f["id"] for f in s["findings"]]
    # the real rebinding (the lab's nat-rebinding sample) is still found
    keys, info = load_keys([sample("nat-rebinding") / "keys.log"], [])
    a = analyze_paths([sample("nat-rebinding") / "capture.pcapng"], keys, info)
    assert "DTLS_NAT_REBINDING" in [f.id for f in a.sessions[0].findings]


def test_dtls_seen_only_mid_tunnel_is_up(cuts):
    # DTLS records alone, mid-tunnel, no hello: nothing says AnyConnect (a DTLS flow like any other) ...
    d = _doc(str(cuts["dtls-only"]), keyed=False)
    assert d["sessions"] == [] and d["other_traffic"]["by_protocol"][0]["protocol"] == "DTLS"
    # ... unless the user names the gateway: then it is a session whose DTLS channel was up before the capture
    d = _doc(str(cuts["dtls-only"]), keyed=False, gateways=("198.18.0.1",))
    assert len(d["sessions"]) == 1, d["other_traffic"]
    s = d["sessions"][0]
    dt = _phases(s)["dtls"]
    assert dt["status"] == "before-capture" and dt["details"]["established"] is True
    assert dt["details"]["flows"][0]["established_from"] == "before-capture"
    assert s["confidence"] == "confirmed"
    assert [p["status"] for p in s["phases"]][:5] == ["before-capture"] * 5
    assert not [f for f in s["findings"] if f["severity"] in ("error", "warning")], s["findings"]


def test_keyless_session_evidence_and_dtls_timing():
    """Without keys: a session only from what the wire shows, with its evidence; the DTLS handshake time is
    ClientHello → Finished, as the decrypted analysis measures it, not the time to the end of the capture."""
    cap = str(sample("baseline") / "capture.pcapng")
    keyless, keyed = _doc(cap, keyed=False), _doc(cap)
    s = keyless["sessions"][0]
    codes = {e["code"] for e in s["evidence"]}
    assert {"dtls-same-port", "dtls-resumes-session"} <= codes
    assert s["confidence"] == "high" and keyed["sessions"][0]["confidence"] == "confirmed"
    assert "aggregate-auth" in {e["code"] for e in keyed["sessions"][0]["evidence"]}
    fl = _phases(s)["dtls"]["details"]["flows"][0]
    fk = _phases(keyed["sessions"][0])["dtls"]["details"]["flows"][0]
    assert fl["established_from"] == "record-pattern" and fk["established_from"] == "decryption"
    assert fl["handshake_duration"] is not None and fl["handshake_duration"] < 0.5
    # the keyless Finished comes before or with the first decrypted record
    assert abs(fl["established_time"] - fk["established_time"]) < 0.05
    assert s["client_software"]["name"] == "unknown"
    assert keyed["sessions"][0]["client_software"]["name"] == "openconnect"
    assert "no downloader (openconnect" not in _phases(s)["downloader"]["summary"]


def test_gateway_option_forces_the_choice():
    cap = str(sample("auth-fail") / "capture.pcapng")
    # without keys a lone short TLS connection shows no evidence of the protocol: other traffic
    d = _doc(cap, keyed=False)
    assert d["sessions"] == [] and d["other_traffic"]["flows"] == 1
    nvs = next(f for f in d["findings"] if f["id"] == "NO_VPN_SESSION")
    assert nvs["severity"] == "info" and "1 other flow(s)" in nvs["message"] and "--gateway" in nvs["remedy"]
    assert d["other_traffic"]["by_protocol"][0] == {"protocol": "TLS", "server_port": 443, "flows": 1,
                                                    "bytes": d["other_traffic"]["by_protocol"][0]["bytes"]}
    assert not [f for f in d["findings"] if f["severity"] != "info"]
    forced = _doc(cap, keyed=False, gateways=("198.18.0.1:443",))
    assert len(forced["sessions"]) == 1 and forced["sessions"][0]["confidence"] == "confirmed"
    assert forced["sessions"][0]["evidence"][0]["code"] == "forced"
    other = _doc(str(sample("baseline") / "capture.pcapng"), gateways=("198.18.0.9",))
    assert other["sessions"] == [] and other["other_traffic"]["flows"] == 2


def test_ipv6_endpoints_are_bracketed(cuts):
    d = _doc(str(cuts["ipv6"]))
    assert len(d["sessions"]) == 1
    s = d["sessions"][0]
    assert s["gateway"] == "[2001:2::1]:443"
    assert _phases(s)["cstp-connect"]["status"] == "ok" and _phases(s)["dtls"]["status"] == "ok"
    flows = _phases(s)["dtls"]["details"]["flows"]
    assert flows[0]["gateway"] == "[2001:2::1]:443" and flows[0]["client"].startswith("[2001:2::2]:")
    assert "2001:2::1:443" not in d["_terminal"].replace("[2001:2::1]:443", "")


@pytest.mark.parametrize("text,expected", [
    ("198.18.0.1", ("198.18.0.1", None)), ("198.18.0.1:8443", ("198.18.0.1", 8443)),
    ("2001:2::1", ("2001:2::1", None)), ("[2001:2::1]:443", ("2001:2::1", 443))])
def test_gateway_spec_and_endpoints(text, expected):
    g = GatewaySpec.parse(text)
    assert (g.address, g.port) == expected
    if expected[1] is not None:
        assert split_endpoint(fmt_endpoint(*expected)) == expected
    # a host name is taken since session 13 (tests/test_gateway_name.py); what is neither an address nor a name is not
    for bad in ("vpn_example.com:443", "[vpn.example.com]:443", "198.18.0.1:70000"):
        with pytest.raises(ValueError):
            GatewaySpec.parse(bad)


# -- real captures made for issue #12 (lab scenarios and scripted cases; see README "The lab") ---------------

def _sample_doc(name: str, keyed: bool = True, gateways: tuple = ()) -> dict:
    d = sample(name)
    return _doc_for(str(d / "capture.pcapng"), str(d / "keys.log") if keyed else "", gateways)


@functools.cache
def _doc_for(cap: str, keylog: str, gateways: tuple = ()) -> dict:
    keys, info = load_keys([keylog] if keylog else [], [])
    a = analyze_paths([Path(cap)], keys, info, gateways=[GatewaySpec.parse(g) for g in gateways])
    d = to_document(a, version=__version__)
    d["_terminal"] = render(a, "terminal", version=__version__)
    d["_html"] = render(a, "html", version=__version__)
    return d


def _flow_ports(s: dict) -> set[tuple[str, int]]:
    out = set()
    for c in s["connections"]:
        proto = "udp" if c["connection"].startswith("udp") else "tcp"
        out.add((proto, split_endpoint(c["client"])[1]))
    return out


@pytest.mark.parametrize("keyed", [True, False])
def test_mixed_traffic_only_the_vpn_is_a_session(keyed):
    """Issue #12 item 1: browsers, push services, a Chromecast, a backup client, DTLS media, DNS and HTTP around a
    VPN session. Only the VPN is a session; the rest is one "other traffic" block, never a finding."""
    from .conftest import facts  # noqa: PLC0415

    f = facts("mixed-traffic")
    d = _sample_doc("mixed-traffic", keyed)
    assert len(d["sessions"]) == 1, [s["gateway"] for s in d["sessions"]]
    s = d["sessions"][0]
    assert s["gateway"] == "198.18.0.1:443"
    assert _flow_ports(s) == {(v["transport"], v["client_port"]) for v in f["vpn_flows"]}
    assert s["confidence"] == ("confirmed" if keyed else "high")
    other = d["other_traffic"]
    assert other["flows"] == len(f["other_flows"])
    want = {(o["transport"], o["server_port"]) for o in f["other_flows"]}
    got = {("udp" if r["protocol"] in ("UDP", "DTLS") else "tcp", r["server_port"]) for r in other["by_protocol"]}
    assert got == want
    protos = {r["server_port"]: r["protocol"] for r in other["by_protocol"]}
    assert protos[3478] == "DTLS" and protos[8009] == "TLS" and protos[53] == "UDP" and protos[80] == "TCP"
    # nothing about the other flows is a finding: no untrusted certificate, no DTLS trouble, no alert
    ids = [x["id"] for x in s["findings"]] + [x["id"] for x in d["findings"]]
    assert not {"TLS_CERT_UNTRUSTED", "DTLS_BACKOFF", "TLS_ALERT", "DTLS_NO_RESPONSE", "NO_VPN_SESSION"} & set(ids)
    for port in ("8009", "5223", "4287", "3478"):
        assert f":{port}" not in json.dumps(s["findings"])
    assert "Other traffic (not AnyConnect): 7 flows" in d["_terminal"]
    assert 'id="other-traffic"' in d["_html"]


def test_mixed_traffic_gateway_option():
    """--gateway names the one to report, even an ordinary TLS server; the closing encrypted alerts (TLS 1.2
    close_notify, then FIN) are the normal close, not a TLS_ALERT (issue #12 item 6)."""
    d = _sample_doc("mixed-traffic", False, ("198.18.0.3:8009",))
    assert [s["gateway"] for s in d["sessions"]] == ["198.18.0.3:8009"]
    s = d["sessions"][0]
    alerts = [a for c in s["connections"] for a in c.get("alerts") or []]
    assert alerts and all(a["name"] == "encrypted_alert" for a in alerts)
    assert "TLS_ALERT" not in [x["id"] for x in s["findings"]]
    assert d["other_traffic"]["flows"] == 8  # the VPN's TCP and UDP flows are now other traffic too


@pytest.mark.parametrize("keyed", [True, False])
def test_dtls_cookie_exchange_is_not_a_retry(keyed):
    """Issue #12 item 2: ClientHello → HelloVerifyRequest → ClientHello with the cookie, then a PSK-NEGOTIATE
    handshake (scripted gateway + a GnuTLS DTLS server): no DTLS_BACKOFF, the HelloVerifyRequest among the phase's
    frames, the handshake timed from the first hello to the Finished."""
    d = _sample_doc("scripted/dtls-cookie", keyed)
    s = d["sessions"][0]
    dt = _phases(s)["dtls"]
    fl = dt["details"]["flows"][0]
    assert fl["hello_verify_requests"] == 1 and fl["client_hello_count"] == 2
    assert [h["cookie"] for h in fl["client_hellos"]] == [False, True]
    assert fl["hello_verify_request_frames"][0] in dt["frames"]
    assert dt["status"] == ("ok" if keyed else "undecrypted") and fl["established"]
    assert fl["handshake_start"] == fl["client_hellos"][0]["ts"]
    assert 0 < fl["handshake_duration"] < 1.0
    ids = [x["id"] for x in s["findings"]]
    assert "DTLS_BACKOFF" not in ids and "DTLS_COOKIE_IGNORED" not in ids and "DTLS_NO_RESPONSE" not in ids


def test_non_vpn_dtls_with_cookie_in_other_traffic():
    d = _sample_doc("mixed-traffic", True, ("198.18.0.3",))
    # forced onto the DTLS server: its cookie exchange is a normal handshake there too
    dtls_sessions = [s for s in d["sessions"] if any(c["connection"].startswith("udp") for c in s["connections"])]
    assert dtls_sessions
    for s in dtls_sessions:
        assert "DTLS_BACKOFF" not in [x["id"] for x in s["findings"]]


def test_client_certificates_on_every_connection():
    """Issue #12 item 5: a three-certificate chain and CertificateVerify on the auth connection, an empty
    Certificate on the tunnel connection: both reported."""
    from .conftest import facts  # noqa: PLC0415

    f = facts("client-cert-chain")
    for keyed in (True, False):
        s = _sample_doc("client-cert-chain", keyed)["sessions"][0]
        cc = _phases(s)["tls-handshake"]["details"]["client_certificates"]
        assert [x["certificates_sent"] for x in cc] == [t.get("client_certificates_sent", 0) or 0
                                                        for t in f["tls_connections"]]
        assert [x["requested"] for x in cc] == [True, True]
        auth = f["tls_connections"][0]["oracle_tshark"]
        assert cc[0]["certificate_verify_frame"] == auth["certificate_verify_frames"][0]
        assert cc[0]["request_frame"] == auth["certificate_request_frames"][0]
        assert len(cc[0]["chain"]) == 3 and cc[0]["chain"][0]["subject"].startswith("CN=alice")
        req = next(x for x in s["findings"] if x["id"] == "TLS_CLIENT_CERT_REQUESTED")
        assert "3-certificate chain and CertificateVerify" in req["message"] and "empty Certificate" in req["message"]
        miss = next(x for x in s["findings"] if x["id"] == "TLS_CLIENT_CERT_MISSING")
        assert cc[1]["connection"] in miss["message"] and cc[0]["connection"] in miss["message"]
        # keyless too: the tunnel is inferred up (issue #13: a CONNECT round, then CSTP records and DTLS)
        assert miss["severity"] == "info"


@pytest.mark.parametrize("name", ["scripted/login-retry", "scripted/login-retry-asa"])
def test_rejected_login_round_is_reported(name):
    """Issue #12 item 7: "Login failed." (ocserv's new form / an ASA <error>) then success: AUTH_FAILED for the
    rejected round, the phase says so."""
    s = _sample_doc(name)["sessions"][0]
    ua = _phases(s)["user-auth"]
    assert ua["status"] == "ok" and ua["details"]["rejected_rounds"] == 1
    assert "rejected" in ua["summary"]
    af = [x for x in s["findings"] if x["id"] == "AUTH_FAILED"]
    assert len(af) == 1 and af[0]["severity"] == "warning" and "Login failed" in af[0]["message"]
    rejected = next(r for r in ua["details"]["rounds"] if r["rejected"])
    assert rejected["frame"] in af[0]["frames"]


def test_unknown_group_url():
    """Issue #12 item 8: POST /engineering → 404, then openconnect's fallback GET /engineering → 404."""
    s = _sample_doc("group-url-unknown")["sessions"][0]
    ids = [x["id"] for x in s["findings"]]
    assert "GROUP_URL_UNKNOWN" in ids and "DOWNLOADER_FAILED" not in ids
    g = next(x for x in s["findings"] if x["id"] == "GROUP_URL_UNKNOWN")
    assert "/engineering" in g["message"] and "fallback GET" in g["message"]
    assert _phases(s)["downloader"]["status"] == "absent"


def test_client_named_from_evidence():
    """Issue #12 item 9: the client is named from its User-Agent; a Cisco User-Agent is not "openconnect"."""
    s = _sample_doc("cisco-ua")["sessions"][0]
    assert s["client_software"]["name"] == "Cisco AnyConnect"
    assert s["client_software"]["version"] == "4.10.07061"
    assert "openconnect" not in _phases(s)["downloader"]["summary"]
    s = _sample_doc("baseline")["sessions"][0]
    assert s["client_software"]["name"] == "openconnect"


@pytest.mark.parametrize("name", ["cut/baseline-mid-tunnel", "cut/mixed-traffic-mid-tunnel"])
def test_committed_mid_tunnel_cuts(name):
    for keyed in (True, False):
        d = _sample_doc(name, keyed)
        assert len(d["sessions"]) == 1
        s = d["sessions"][0]
        assert [p["status"] for p in s["phases"]] == ["before-capture"] * 6
        assert not [x for x in s["findings"] if x["severity"] != "info"], s["findings"]


def test_capture_ending_at_the_dtls_hello_is_incomplete():
    s = _sample_doc("cut/baseline-ends-at-dtls-hello")["sessions"][0]
    dt = _phases(s)["dtls"]
    assert dt["status"] == "incomplete" and "not in the capture" in dt["summary"]
    assert "DTLS_NO_RESPONSE" not in [x["id"] for x in s["findings"]]


@pytest.mark.tshark
@pytest.mark.parametrize("name", ["mixed-traffic", "cut/mixed-traffic-mid-tunnel"])
def test_every_flow_is_a_session_flow_or_other_traffic_pyshark_oracle(name, tshark):
    """Nothing is lost between the sessions and the "other traffic" block: the flows acflow reports, in both,
    are all the TCP and UDP streams tshark (through pyshark, the independent oracle) numbers in the capture."""
    streams = set()
    with pyshark_file(sample(name) / "capture.pcapng", keep_packets=False) as cap:
        for p in cap:
            if hasattr(p, "icmp"):
                continue  # a quoted packet inside an ICMP error is not a flow of its own here
            if hasattr(p, "tcp"):
                streams.add(("tcp", int(p.tcp.stream)))
            elif hasattr(p, "udp"):
                streams.add(("udp", int(p.udp.stream)))
    # pyshark's SIGCHLD handler (asyncio's child watcher) is gone with it: later child processes write nowhere
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL and signal.set_wakeup_fd(-1) == -1
    d = _sample_doc(name, False)
    ours = {(c["connection"].split(".")[0], int(c["connection"].split()[-1]))
            for s in d["sessions"] for c in s["connections"]}
    assert len(ours) + d["other_traffic"]["flows"] == len(streams), (ours, d["other_traffic"], streams)
    assert ours <= streams
