"""The scripted gateway (replay/gateway.py, replay/script.py), its lab cases (lab/scripted/) and their captures.

Three layers:

* unit: the script format (validation, round trip), CSTP framing, ICMP echo replies, DTLS ClientHello parsing,
  and the gateway itself in-process on 127.0.0.1 with a Python TLS client (no root, no lab);
* the committed captures under samples/scripted/<case>/: tshark (the oracle) decrypts them with their key log and
  must show exactly the exchange the gateway's script produced, the headers it sent, and the CSTP frames; every
  expected effect in facts.json was observed in openconnect's own log;
* one live run (`lab` marker): a real openconnect against the gateway in fresh namespaces, end to end, < 30 s.
  Skipped without root/openconnect/dumpcap, except in CI (CI=true) where a missing prerequisite fails.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lab.netns import missing_tools
from lab.scripted.cases import CASES, DTLS_PORT, DTLS_REPLY_PORT, PROFILE_URI, TUNNEL_IP, TUNNEL_IP_RECONNECT
from lab.scripted.runner import REQUIRED_TOOLS
from replay.gateway import (
    ScriptedGateway,
    build_response,
    cstp_frame,
    dtls_hello_verify_request,
    icmp_echo_reply,
    parse_dtls_client_hello,
    split_cstp,
)
from replay.script import Response, Script, ScriptError

from .conftest import ROOT
from .oracle import tshark_fields, tshark_follow_tls

SCRIPTED = ROOT / "samples" / "scripted"
CASE_NAMES = list(CASES)
# cases that never reach a CONNECT
NO_CONNECT = ("tls-alert", "saml-browser-stalled", "saml-no-browser", "hostscan-stalled", "saml-idp-unknown",
              "saml-idp-unreachable", "saml-idp-untrusted", "auth-client-gives-up")
BCTX = {"previous_cert_sha1": "00" * 20, "profile_current": "<AnyConnectProfile/>\n",
        "profile_current_sha1": "22" * 20, "profile_previous_sha1": "11" * 20}
GW, CLIENT = "198.18.0.1", "198.18.0.2"


# ----------------------------------------------------------------------------------------------------------------
# unit: script format
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CASE_NAMES)
def test_case_scripts_validate_and_round_trip(name):
    d = CASES[name].build(BCTX)
    s = Script.from_dict(d)
    again = Script.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again.to_dict() == s.to_dict()
    assert [st.id for st in again.steps] == [st["id"] for st in d["steps"]]


def test_script_rejects_mistakes():
    base = {"steps": [{"id": "a", "expect": {"method": "POST"}, "respond": {"status": 200}}]}
    Script.from_dict(base)
    with pytest.raises(ScriptError, match="unknown placeholder"):
        Script.from_dict({"steps": [{"respond": {"status": 200, "body": "${nope}"}}]})
    with pytest.raises(ScriptError, match="unknown expect keys"):
        Script.from_dict({"steps": [{"expect": {"methd": "GET"}, "respond": {"status": 200}}]})
    with pytest.raises(ScriptError, match="needs a status"):
        Script.from_dict({"steps": [{"respond": {}}]})
    with pytest.raises(ScriptError, match="duplicate step id"):
        Script.from_dict({"steps": [{"id": "x", "respond": {"status": 200}}, {"id": "x", "respond": {"status": 1}}]})
    with pytest.raises(ScriptError, match="send must be one of"):
        Script.from_dict({**base, "cstp": {"actions": [{"at": 1, "send": "bogus"}]}})
    with pytest.raises(ScriptError, match="tls.alert.description"):
        Script.from_dict({**base, "tls": {"alert": {"sessions": [1], "description": "nope"}}})
    with pytest.raises(ScriptError, match="at least one step"):
        Script.from_dict({"steps": []})
    with pytest.raises(ScriptError, match="unknown keys"):
        Script.from_dict({**base, "cstp": {"actions": [{"at": 1, "send": "close", "tunel": [1]}]}})
    with pytest.raises(ScriptError, match="reply_from must differ"):
        Script.from_dict({**base, "udp_responders": [{"port": 4443, "reply_from": 4443}]})
    with pytest.raises(ScriptError, match="reply must be one of"):
        Script.from_dict({**base, "udp_responders": [{"port": 4443, "reply_from": 4444, "reply": "server-hello"}]})
    with pytest.raises(ScriptError, match="used twice"):
        Script.from_dict({**base, "udp_sinks": [4443], "udp_responders": [{"port": 4443, "reply_from": 4444}]})
    s = Script.from_dict({**base, "cstp": {"actions": [{"at": 1, "send": "close", "tunnels": [1]}]},
                          "udp_responders": [{"port": 4443, "reply_from": 4444}]})
    assert s.cstp.actions[0].tunnels == [1] and s.udp_responders[0].reply == "hello-verify-request"
    assert Script.from_dict(s.to_dict()).to_dict() == s.to_dict()


def test_build_response_renders_and_frames():
    r = Response(200, "OK", [("Set-Cookie", "webvpn=${cookie}")], "<a>${cookie}</a>")
    data, desc = build_response(r, {"cookie": "C1"}, tunnel=False, close=True)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert b"Set-Cookie: webvpn=C1" in head and b"Content-Length: 9" in head and b"Connection: close" in head
    assert body == b"<a>C1</a>" and desc["status_line"] == "HTTP/1.1 200 OK"
    data, _ = build_response(Response(200, "CONNECTED", [("X-CSTP-MTU", "1399")], ""), {}, tunnel=True,
                             close=False)
    assert data == b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-MTU: 1399\r\n\r\n"  # no Content-Length before CSTP


# ----------------------------------------------------------------------------------------------------------------
# unit: wire helpers
# ----------------------------------------------------------------------------------------------------------------

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_cstp_frames_split_across_reads():
    stream = cstp_frame(3, b"abc") + cstp_frame(0, b"\x45" * 20) + cstp_frame(5, b"\xb0bye")
    buf = bytearray()
    got = []
    for i in range(0, len(stream), 5):
        buf += stream[i:i + 5]
        got += split_cstp(buf)
    assert got == [(3, b"abc"), (0, b"\x45" * 20), (5, b"\xb0bye")] and not buf
    assert split_cstp(bytearray(b"HTTP/1.1 200")) is None


def test_icmp_echo_reply_v4_and_v6():
    icmp = bytearray(b"\x08\x00\x00\x00\x12\x34\x00\x01" + b"payload!")
    icmp[2:4] = struct.pack("!H", ~_csum(bytes(icmp)) & 0xFFFF)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 7, 0x4000, 64, 1, 0,
                               bytes([198, 19, 0, 50]), bytes([198, 19, 0, 1])))
    ip[10:12] = struct.pack("!H", ~_csum(bytes(ip)) & 0xFFFF)
    reply = icmp_echo_reply(bytes(ip) + bytes(icmp))
    assert reply[12:16] == bytes([198, 19, 0, 1]) and reply[16:20] == bytes([198, 19, 0, 50])
    assert reply[20] == 0 and _csum(reply[:20]) == 0xFFFF and _csum(reply[20:]) == 0xFFFF
    assert reply[24:] == bytes(icmp[4:])
    src, dst = bytes.fromhex("20010002" + "00" * 10 + "0050"), bytes.fromhex("20010002" + "00" * 10 + "0001")
    body = b"\x80\x00\x00\x00\x00\x01\x00\x02" + b"x" * 16
    v6 = struct.pack("!IHBB", 0x60000000, len(body), 58, 64) + src + dst + body
    r6 = icmp_echo_reply(v6)
    assert r6[8:24] == dst and r6[24:40] == src and r6[40] == 129
    pseudo = dst + src + struct.pack("!I3xB", len(body), 58)
    assert _csum(pseudo + r6[40:]) == 0xFFFF
    assert icmp_echo_reply(bytes(ip[:9]) + b"\x06" + bytes(ip[10:]) + bytes(icmp)) is None  # not ICMP


def test_parse_dtls_client_hello():
    sid = bytes(range(32))
    body = b"\x01\x00" + b"R" * 32 + bytes([32]) + sid + b"\x00"
    hs = b"\x01" + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + len(body).to_bytes(3, "big")
    rec = b"\x16\x01\x00" + b"\x00" * 8 + (len(hs) + len(body)).to_bytes(2, "big") + hs + body
    info = parse_dtls_client_hello(rec)
    assert info == {"record_version": "0100", "handshake_type": 1, "client_version": "0100",
                    "session_id": sid.hex().upper()}
    assert parse_dtls_client_hello(b"\x17" + b"\x00" * 30) is None


def _client_hello(record_version: bytes = b"\x01\x00", seq: int = 5) -> bytes:
    body = b"\x01\x00" + b"R" * 32 + bytes([32]) + bytes(range(32)) + b"\x00"
    hs = b"\x01" + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + len(body).to_bytes(3, "big")
    return (b"\x16" + record_version + b"\x00\x00" + seq.to_bytes(6, "big") + (len(hs) + len(body)).to_bytes(2, "big")
            + hs + body)


def test_dtls_hello_verify_request():
    cookie = bytes.fromhex("acf10ac0ffee")
    hvr = dtls_hello_verify_request(_client_hello(), cookie)
    # record: handshake (22), the ClientHello's version and record sequence number, length of the handshake
    assert hvr[0] == 22 and hvr[1:3] == b"\x01\x00" and hvr[3:5] == b"\x00\x00" and hvr[5:11] == (5).to_bytes(6, "big")
    assert int.from_bytes(hvr[11:13], "big") == len(hvr) - 13
    # handshake: HelloVerifyRequest (3), message_seq 0, one fragment; body: server_version, cookie
    assert hvr[13] == 3 and hvr[17:19] == b"\x00\x00" and hvr[19:22] == b"\x00\x00\x00"
    assert hvr[14:17] == hvr[22:25] == (3 + len(cookie)).to_bytes(3, "big")
    assert hvr[25:27] == b"\x01\x00" and hvr[27] == len(cookie) and hvr[28:] == cookie
    assert parse_dtls_client_hello(hvr) == {"record_version": "0100", "handshake_type": 3}
    assert dtls_hello_verify_request(hvr, cookie) is None  # only ClientHellos are answered


# ----------------------------------------------------------------------------------------------------------------
# unit: the gateway in-process, against a Python TLS client
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from lab.pki import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"), "vpn.acflow.test", "127.0.0.1")


def _client(port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(s, server_hostname="vpn.acflow.test")


def _http(sock, text: bytes) -> tuple[bytes, bytes]:
    sock.sendall(text)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")),
                  None)
    while length is not None and len(rest) < length:
        rest += sock.recv(65536)
    return head, rest


def _frames(sock, want: int, timeout: float = 3.0) -> list[tuple[int, bytes]]:
    buf, out = bytearray(), []
    deadline = time.time() + timeout
    while len(out) < want and time.time() < deadline:
        try:
            buf += sock.recv(65536)
        except TimeoutError:
            break
        out += split_cstp(buf)
    return out


def _gateway(tmp_path, pki, d: dict) -> ScriptedGateway:
    gw = ScriptedGateway(Script.from_dict(d), pki.server_cert, pki.server_key, host="127.0.0.1", port=0,
                         keylog=tmp_path / "keys.log", events=tmp_path / "events.jsonl", out=io.StringIO())
    gw.start()
    return gw


def test_gateway_http_connect_and_cstp(tmp_path, pki):
    d = {"vars": {"mtu": "1399"},
         "steps": [{"id": "init", "expect": {"method": "POST", "path": "/", "body_contains": ['type="init"']},
                    "respond": {"status": 200, "reason": "OK",
                                "headers": [["Set-Cookie", "webvpn=${cookie}; secure"]],
                                "body": "<hash>${server_cert_sha1}</hash>"}},
                   {"id": "connect", "expect": {"method": "CONNECT", "path": "/CSCOSSLC/tunnel",
                                                "cookie": "${cookie}"},
                    "respond": {"status": 200, "reason": "CONNECTED",
                                "headers": [["X-CSTP-MTU", "${mtu}"], ["X-DTLS-Session-ID", "${dtls_session_id}"]]}}],
         "cstp": {"answer_dpd": True, "icmp_echo": True, "actions": [{"at": 0.3, "send": "dpd-req",
                                                                        "payload_hex": "abcd"}]}}
    gw = _gateway(tmp_path, pki, d)
    try:
        s = _client(gw.port)
        head, body = _http(s, b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n<a type="init"/>\n')
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert body.decode() == f"<hash>{pki.sha1_hex.upper()}</hash>"
        cookie = gw.values["cookie"]
        assert f"webvpn={cookie}; secure".encode() in head
        # a wrong cookie does not match the CONNECT step: the unmatched answer (404) comes back
        head, _ = _http(s, b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nCookie: webvpn=bad\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 404")
        s.sendall(f"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nCookie: webvpn={cookie}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 CONNECTED") and b"X-CSTP-MTU: 1399" in head
        assert f"X-DTLS-Session-ID: {gw.values['dtls_session_id']}".encode() in head
        s.sendall(cstp_frame(3, b"probe"))  # DPD-REQ
        icmp = bytearray(b"\x08\x00\x00\x00\x00\x01\x00\x01")
        icmp[2:4] = struct.pack("!H", ~_csum(bytes(icmp)) & 0xFFFF)
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 1, 0, b"\xc6\x13\x00\x32",
                                   b"\xc6\x13\x00\x01"))
        ip[10:12] = struct.pack("!H", ~_csum(bytes(ip)) & 0xFFFF)
        s.sendall(cstp_frame(0, bytes(ip) + bytes(icmp)))
        s.sendall(cstp_frame(7))
        buf2 = bytearray(rest)
        got = split_cstp(buf2)
        got += _frames(s, 3 - len(got))
        kinds = Counter(t for t, _ in got)
        assert kinds[4] == 1 and (4, b"probe") in got  # DPD-RESP echoes the payload
        assert kinds[0] == 1 and next(p for t, p in got if t == 0)[20] == 0  # echo reply
        assert (3, b"\xab\xcd") in got  # the scripted DPD-REQ at 0.3 s
        s.sendall(cstp_frame(5, b"\xb0Aborted by caller"))
        time.sleep(0.5)
        s.close()
    finally:
        gw.stop()
    ev = [json.loads(l) for l in (tmp_path / "events.jsonl").read_text().splitlines()]
    reqs = [(e["method"], e["target"], e["step"]) for e in ev if e["type"] == "request"]
    assert reqs == [("POST", "/", "init"), ("CONNECT", "/CSCOSSLC/tunnel", None),
                    ("CONNECT", "/CSCOSSLC/tunnel", "connect")]
    rx = Counter(e["name"] for e in ev if e["type"] == "cstp-rx")
    assert rx == {"dpd-req": 1, "data": 1, "keepalive": 1, "disconnect": 1}
    assert any(e["type"] == "cstp-rx" and e.get("reason") == "Aborted by caller" for e in ev)
    assert next(e for e in ev if e["type"] == "tls-established")["sni"] == "vpn.acflow.test"
    keys = (tmp_path / "keys.log").read_text()
    assert "CLIENT_TRAFFIC_SECRET_0" in keys and "EXPORTER_SECRET" in keys


def test_gateway_aborts_the_scripted_tls_session_with_an_alert(tmp_path, pki):
    d = {"steps": [{"id": "any", "expect": {}, "respond": {"status": 200, "reason": "OK", "body": "hi"},
                    "times": 5}],
         "tls": {"alert": {"sessions": [2], "description": "handshake_failure"}}}
    gw = _gateway(tmp_path, pki, d)
    try:
        s = _client(gw.port)
        head, body = _http(s, b"GET / HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and body == b"hi"
        s.close()
        with pytest.raises(ssl.SSLError, match="(?i)handshake.failure"):
            _client(gw.port)
        _client(gw.port).close()  # session 3 is fine again
    finally:
        gw.stop()
    ev = [json.loads(l) for l in (tmp_path / "events.jsonl").read_text().splitlines()]
    fails = [e for e in ev if e["type"] == "tls-failed"]
    assert [(e["session"], e["alert_code"]) for e in fails] == [(2, 40)]


def test_steps_are_consumed_in_order_and_may_skip(tmp_path, pki):
    d = {"steps": [{"id": "a", "expect": {"path": "/a"}, "respond": {"status": 200, "body": "A"}},
                   {"id": "b", "expect": {"path": "/b"}, "respond": {"status": 200, "body": "B"}},
                   {"id": "c", "expect": {"path": "/c"}, "respond": {"status": 201, "body": "C"}}]}
    gw = _gateway(tmp_path, pki, d)
    try:
        s = _client(gw.port)
        assert _http(s, b"GET /c HTTP/1.1\r\n\r\n")[1] == b"C"  # skips a and b
        assert _http(s, b"GET /a HTTP/1.1\r\n\r\n")[0].startswith(b"HTTP/1.1 404")  # never backwards
        s.close()
    finally:
        gw.stop()
    ev = [json.loads(l) for l in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert next(e for e in ev if e["type"] == "request")["skipped"] == ["a", "b"]


def _free_udp_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for u in socks:
        u.bind(("127.0.0.1", 0))
    ports = [u.getsockname()[1] for u in socks]
    for u in socks:
        u.close()
    return ports


def test_udp_responder_answers_from_another_port(tmp_path, pki):
    port, reply_from = _free_udp_ports(2)
    d = {"steps": [{"respond": {"status": 200}}],
         "udp_responders": [{"port": port, "reply_from": reply_from, "max_replies": 2}]}
    gw = _gateway(tmp_path, pki, d)
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # not connected: it sees answers from any port
        u.bind(("127.0.0.1", 0))
        u.settimeout(2)
        for _ in range(3):
            u.sendto(_client_hello(), ("127.0.0.1", port))
        got = [u.recvfrom(2048), u.recvfrom(2048)]
        u.sendto(b"\x17not a hello", ("127.0.0.1", port))
        with pytest.raises(TimeoutError):
            u.recvfrom(2048)  # the third hello is over max_replies, the non-hello is never answered
        u.close()
    finally:
        gw.stop()
    assert [src for _, src in got] == [("127.0.0.1", reply_from)] * 2
    assert all(parse_dtls_client_hello(data)["handshake_type"] == 3 for data, _ in got)
    ev = [json.loads(l) for l in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len([e for e in ev if e["type"] == "udp-rx"]) == 4
    tx = [e for e in ev if e["type"] == "udp-tx"]
    assert [(e["port"], e["answers_port"], e["handshake_type"]) for e in tx] == [(reply_from, port, 3)] * 2
    assert bytes.fromhex(tx[0]["hex"]) == got[0][0]


def test_cstp_actions_per_tunnel_and_terminate_reads_the_bye(tmp_path, pki):
    connect = {"expect": {"method": "CONNECT"}, "respond": {"status": 200, "reason": "CONNECTED"}}
    d = {"steps": [{"id": "c1", **connect}, {"id": "c2", **connect}],
         "cstp": {"actions": [{"at": 0.3, "send": "close", "tunnels": [1]},
                              {"at": 0.3, "send": "terminate", "tunnels": [2]}]}}
    gw = _gateway(tmp_path, pki, d)
    try:
        s1 = _client(gw.port)
        assert _http(s1, b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n\r\n")[0].startswith(b"HTTP/1.1 200")
        assert s1.recv(100) == b""  # tunnel 1 is closed (no CSTP frame, no close_notify)
        s1.close()
        s2 = _client(gw.port)
        assert _http(s2, b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n\r\n")[0].startswith(b"HTTP/1.1 200")
        assert _frames(s2, 1) == [(9, b"")]  # tunnel 2 gets TERMINATE
        s2.sendall(cstp_frame(5, b"\xb0Server request"))
        time.sleep(0.5)
        s2.close()
    finally:
        gw.stop()
    ev = [json.loads(l) for l in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["session"], e["tunnel"]) for e in ev if e["type"] == "tunnel-start"] == [(1, 1), (2, 2)]
    assert [(e["session"], e["action"]) for e in ev if e["type"] == "cstp-action"] == [(1, "close")]
    assert [e["reason"] for e in ev if e["type"] == "cstp-rx" and e["name"] == "disconnect"] == ["Server request"]
    closed = {e["session"]: e["how"] for e in ev if e["type"] == "conn-closed"}
    assert closed == {1: "closed by script", 2: "client sent DISCONNECT after terminate sent by script"}


# ----------------------------------------------------------------------------------------------------------------
# the committed captures
# ----------------------------------------------------------------------------------------------------------------

def _case_dir(name: str) -> Path:
    d = SCRIPTED / name
    if not (d / "facts.json").exists():
        pytest.fail(f"scripted capture {name} missing: run 'python -m lab.scripted --case {name}' as root")
    return d


def _facts(name: str) -> dict:
    return json.loads((_case_dir(name) / "facts.json").read_text())


@pytest.mark.parametrize("name", CASE_NAMES)
def test_case_outputs_complete_and_small(name):
    d = _case_dir(name)
    for f in ("capture.pcapng", "keys.log", "client.log", "gateway.log", "script.json", "gateway-events.jsonl",
              "server-cert.pem"):
        assert (d / f).exists(), f
    total = sum(p.stat().st_size for p in d.iterdir())
    assert total < 500_000, total
    Script.load(d / "script.json")  # the committed script is valid and is what the facts describe
    f = _facts(name)
    assert f["case"] == name and [s["id"] for s in f["script"]["steps"]] == \
        [s["id"] for s in json.loads((d / "script.json").read_text())["steps"]]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_expected_effect_was_observed(name):
    f = _facts(name)
    missing = [e["effect"] for e in f["expected"] if not e["observed"]]
    assert f["expected"] and not missing, missing


@pytest.mark.tshark
@pytest.mark.parametrize("name", CASE_NAMES)
def test_tshark_decrypts_the_scripted_exchange(tshark, name):
    d = _case_dir(name)
    f = _facts(name)
    rows = tshark_fields(d / "capture.pcapng", ["http.request.method", "http.request.uri"], "http.request",
                         keylog=d / "keys.log")
    wire = [(r[0], r[1]) for r in rows]
    scripted = [(e["method"], e["target"]) for e in f["gateway"]["exchanges"]]
    assert wire == scripted
    codes = tshark_fields(d / "capture.pcapng", ["http.response_for.uri", "http.response.code",
                                                  "http.response.phrase"], "http.response", keylog=d / "keys.log")
    # each request's answer (by its target: answers on different connections may cross on the wire — a browser's
    # last page and the client's CONNECT answered within the same millisecond)
    def path(uri: str) -> str:
        return "/" + uri.split("://", 1)[1].split("/", 1)[1] if "://" in uri else uri

    # (a request the gateway never answered — auth-client-gives-up's credentials — has no answer on the wire either)
    assert sorted((path(u), f"HTTP/1.1 {c} {p}".rstrip()) for u, c, p in codes) == \
        sorted((e["target"], e["status_line"]) for e in f["gateway"]["exchanges"] if e["status_line"] is not None)
    # what the gateway saw is what openconnect says it sent (curl's GET is not in openconnect's log, nor are the
    # SAML cases' browser's requests of the gateway's /+CSCOE+/saml… pages and of the identity provider's /saml2/…
    # pages, nor the CSD script's token and scan requests)
    logged = [(h["method"], h["target"]) for h in f["client"]["http"]]
    others = ("/+CSCOE+/saml", "/saml2/", "/+CSCOE+/sdesktop/token.xml", "/+CSCOE+/sdesktop/scan.xml")
    if CASES[name].portal_first:  # the browser's portal visit came first: its requests are in browser.log
        visit = [line for line in (d / "browser.log").read_text().splitlines() if "\tGET " in line or "\tPOST " in line]
        assert [m for m, _t in wire[:len(visit)]] == [line.split("\t")[1].split()[0] for line in visit]
        wire = wire[len(visit):]
    assert [w for w in wire if w[1] != PROFILE_URI and not w[1].startswith(others)] == logged


@pytest.mark.tshark
@pytest.mark.parametrize("name", [n for n in CASE_NAMES if n not in NO_CONNECT])
def test_connect_answer_on_the_wire(tshark, name):
    d = _case_dir(name)
    f = _facts(name)
    connects = f["gateway"]["connect"]
    assert len(connects) == (2 if name in ("reconnect-address-changed", "sleep-reconnect-refused",
                                           "sleep-past-idle-timeout", "sleep-gateway-dpd") else 1)
    rows = tshark_fields(d / "capture.pcapng", ["tcp.stream", "http.response.code", "http.response.line"],
                         "http.response && (http.response.line contains \"X-CSTP\" || http.response.line contains "
                         "\"X-Reason\" || http.response.code >= 400)", keylog=d / "keys.log")
    rows = [r for r in rows if r[2]]
    assert len(rows) >= len(connects)
    for connect, row in zip(connects, rows[-len(connects):]):  # the CONNECT answers are the last ones, in order
        assert row[1] == connect["status_line"].split()[1]
        wire = {line.replace("\\r\\n", "").strip() for line in row[2].split("|")}
        for k, v in connect["headers"]:
            if k != "X-CSTP-Post-Auth-XML":
                assert f"{k}: {v}" in wire, (k, v)


@pytest.mark.tshark
def test_dtls_mtu_differs_on_the_wire(tshark):
    d = _case_dir("dtls-mtu-differs")
    f = _facts("dtls-mtu-differs")
    hdr = dict(f["gateway"]["connect"][0]["headers"])
    assert hdr["X-CSTP-MTU"] == "1399" and hdr["X-DTLS-MTU"] == "1300" and hdr["X-DTLS-CipherSuite"] == "AES256-SHA"
    # openconnect's own view: it logged both MTUs and gave the larger one to the vpnc-script
    log = (d / "client.log").read_text()
    assert "\tX-CSTP-MTU: 1399\n" in log and "\tX-DTLS-MTU: 1300\n" in log
    assert f["client"]["script_env"]["connect"]["INTERNAL_IP4_MTU"] == "1399"
    # the DTLS ClientHellos went to the black-hole port and nothing came back from it
    udp = tshark_fields(d / "capture.pcapng", ["ip.src", "udp.dstport", "udp.srcport"], "udp")
    to_sink = [r for r in udp if r[0] == "198.18.0.2" and r[1] == hdr["X-DTLS-Port"]]
    assert len(to_sink) == len(f["gateway"]["udp_datagrams"]) >= 2
    assert not [r for r in udp if r[0] == "198.18.0.1"]
    # CSTP after the CONNECT answer: one frame per TLS record (openconnect requires it), so the number of
    # application-data records each way after the CONNECT exchange is the number of frames the gateway recorded
    f_rx, f_tx = f["gateway"]["cstp_frames"]["cstp-rx"], f["gateway"]["cstp_frames"]["cstp-tx"]
    (resp_frame,) = tshark_fields(d / "capture.pcapng", ["frame.number"], "http.response.code == 200 && "
                                  "http.response.line contains \"X-CSTP\"", keylog=d / "keys.log")[0]
    recs = tshark_fields(d / "capture.pcapng", ["ip.src", "tls.record.content_type"],
                         f"tcp.stream == 0 && tls.record && frame.number > {resp_frame}", keylog=d / "keys.log")
    n_c2s = sum(r[1].split("|").count("23") for r in recs if r[0] == "198.18.0.2")
    n_s2c = sum(r[1].split("|").count("23") for r in recs if r[0] == "198.18.0.1")
    assert (n_c2s, n_s2c) == (sum(f_rx.values()), sum(f_tx.values()))
    # and the control frames, read from the decrypted stream, are the ones the gateway recorded (tshark 4.0's
    # follow output loses some small DATA records, so DATA is only bounded)
    c2s, s2c = tshark_follow_tls(d / "capture.pcapng", 0, keylog=d / "keys.log")
    names = {0: "data", 3: "dpd-req", 4: "dpd-resp", 5: "disconnect", 7: "keepalive"}
    for recorded, data, marker in ((f_rx, c2s, b"CONNECT /CSCOSSLC/tunnel"), (f_tx, s2c, b"200 CONNECTED")):
        buf = bytearray(data[data.index(b"\r\n\r\n", data.index(marker)) + 4:])
        frames = split_cstp(buf)
        assert frames is not None and not buf
        seen = Counter(names[t] for t, _ in frames)
        assert {k: v for k, v in seen.items() if k != "data"} == {k: v for k, v in recorded.items() if k != "data"}
        assert 0 < seen["data"] <= recorded["data"]
    assert f_rx["dpd-req"] >= 1 and f_tx["dpd-resp"] >= 1  # the client's DPD answered
    assert f_tx["dpd-req"] >= 1 and f_rx["dpd-resp"] >= 1  # the gateway's scripted DPD answered
    assert f_rx["keepalive"] >= 1 and f_rx["disconnect"] == 1


@pytest.mark.tshark
def test_tls_alert_on_the_wire(tshark):
    d = _case_dir("tls-alert")
    rows = tshark_fields(d / "capture.pcapng", ["tcp.stream", "ip.src", "tls.alert_message.level",
                                                "tls.alert_message.desc"], "tls.alert_message",
                         keylog=d / "keys.log")
    assert ["1", "198.18.0.1", "2", "40"] in rows  # fatal handshake_failure from the gateway, session 2
    hellos = tshark_fields(d / "capture.pcapng", ["tcp.stream"], "tls.handshake.type == 1")
    assert [r[0] for r in hellos] == ["0", "1"]
    server_hellos = tshark_fields(d / "capture.pcapng", ["tcp.stream"], "tls.handshake.type == 2")
    assert [r[0] for r in server_hellos] == ["0"]  # session 2 never got a ServerHello
    assert "SSL connection failure: A TLS fatal alert has been received." in (d / "client.log").read_text()


def _cstp_records(d: Path, stream: int) -> list[tuple[int, float, str, bytes]]:
    """(frame, time, source, decrypted CSTP frame) of the TLS records tshark hands on as data after the CONNECT."""
    rows = tshark_fields(d / "capture.pcapng", ["frame.number", "frame.time_epoch", "ip.src", "data.data"],
                         f"tcp.stream == {stream} && data.data", keylog=d / "keys.log",
                         extra=["-o", "tls.desegment_ssl_application_data:FALSE"])
    return [(int(r[0]), float(r[1]), r[2], bytes.fromhex(r[3])) for r in rows if r[3].startswith("53544601")]


@pytest.mark.tshark
def test_terminate_on_the_wire(tshark):
    d = _case_dir("terminate")
    f = _facts("terminate")
    recs = _cstp_records(d, 0)
    term = [r for r in recs if r[3][6] == 0x09]
    # exactly one TERMINATE, from the gateway, no payload, at the time the gateway recorded it
    assert [(r[2], r[3]) for r in term] == [(GW, cstp_frame(9))]
    (sent,) = [e for e in f["gateway"]["cstp_actions_done"] if e.get("name") == "terminate"]
    assert abs(term[0][1] - sent["t"]) < 0.5
    # openconnect's answer: a DISCONNECT "Server request", after it; the gateway sent nothing more
    bye = [r for r in recs if r[3][6] == 0x05]
    assert [(r[2], r[3][8:]) for r in bye] == [(CLIENT, b"\xb0Server request")] and bye[0][0] > term[0][0]
    assert not [r for r in recs if r[2] == GW and r[0] > term[0][0]]
    assert f["client"]["exit_code"] == 1


@pytest.mark.tshark
def test_reconnect_address_changed_on_the_wire(tshark):
    d = _case_dir("reconnect-address-changed")
    f = _facts("reconnect-address-changed")
    rows = tshark_fields(d / "capture.pcapng", ["tcp.stream", "http.request.method", "http.cookie"],
                         "http.request", keylog=d / "keys.log")
    # authentication on TLS session 1 only; one CONNECT per TLS session, both with the same webvpn cookie
    assert [(r[0], r[1]) for r in rows] == [("0", "POST")] * 3 + [("0", "CONNECT"), ("1", "CONNECT")]
    assert rows[3][2] == rows[4][2] and rows[3][2].startswith("webvpn=")
    addrs = tshark_fields(d / "capture.pcapng", ["tcp.stream", "http.response.line"],
                          "http.response.line contains \"X-CSTP-Address\"", keylog=d / "keys.log")
    got = [(r[0], next(l for l in r[1].split("|") if l.startswith("X-CSTP-Address:"))) for r in addrs]
    assert got == [("0", f"X-CSTP-Address: {TUNNEL_IP}\\r\\n"), ("1", f"X-CSTP-Address: {TUNNEL_IP_RECONNECT}\\r\\n")]
    # the first tunnel ends with the gateway's FIN (no TLS alert/close_notify, no CSTP DISCONNECT/TERMINATE)
    fins = tshark_fields(d / "capture.pcapng", ["tcp.stream", "ip.src"], "tcp.flags.fin == 1")
    assert next(r for r in fins if r[0] == "0") == ["0", GW]
    assert not tshark_fields(d / "capture.pcapng", ["frame.number"], "tls.alert_message", keylog=d / "keys.log")
    assert not [r for r in _cstp_records(d, 0) if r[3][6] in (0x05, 0x09)]
    assert [e["action"] for e in f["gateway"]["cstp_actions_done"]] == ["close"]
    assert f["client"]["exit_code"] not in (0, None)
    assert "attempt-reconnect" in f["client"]["script_env"]


@pytest.mark.tshark
def test_profile_missing_on_the_wire(tshark):
    d = _case_dir("profile-missing")
    f = _facts("profile-missing")
    rows = tshark_fields(d / "capture.pcapng", ["tcp.stream", "http.request.method", "http.request.uri",
                                                "http.response.code", "http.user_agent"], "http",
                         keylog=d / "keys.log")
    get = [r for r in rows if r[1] == "GET"]
    assert [(r[2], r[4]) for r in get] == [(PROFILE_URI, "AnyConnect Linux_64 4.10.07061")]
    assert [r[3] for r in rows if r[0] == get[0][0] and r[3]] == ["404"]  # its own TLS session, answered 404
    connect = [r for r in rows if r[1] == "CONNECT"]
    assert len(connect) == 1 and connect[0][0] not in ("0", get[0][0])
    assert [r[3] for r in rows if r[0] == connect[0][0] and r[3]] == ["200"]
    p = f["profile"]
    assert p["uri"] == PROFILE_URI and p["served_status_line"] == "HTTP/1.1 404 Not Found"
    assert p["curl_status"] == 404 and p["downloaded_sha1"] is None and not (d / "downloaded-profile.xml").exists()
    assert f"<uri>{PROFILE_URI}</uri>" in (d / "client-auth.log").read_text()
    assert f"<hash type=\"sha1\">{p['manifest_sha1']}</hash>" in (d / "client-auth.log").read_text()


@pytest.mark.tshark
def test_dtls_full_handshake_on_the_wire(tshark):
    d = _case_dir("dtls-full-handshake")
    f = _facts("dtls-full-handshake")
    sid = dict(f["gateway"]["connect"][0]["headers"])["X-DTLS-Session-ID"].lower()
    rows = tshark_fields(d / "capture.pcapng", ["frame.number", "ip.src", "udp.srcport", "udp.dstport",
                                                "dtls.record.version", "dtls.handshake.type",
                                                "dtls.handshake.session_id"], "dtls && !icmp")
    hellos = [r for r in rows if r[5] == "1"]
    assert hellos and all(r[1] == CLIENT and r[3] == str(DTLS_PORT) and r[6] == sid for r in hellos)
    server = [r for r in rows if r[1] == GW]
    assert server and all(r[2] == str(DTLS_PORT) and r[4] == "0x0100" for r in server)  # DTLS 0.9, from X-DTLS-Port
    # a full handshake: ServerHello with a new session id, then Certificate and ServerHelloDone; never finished
    server_sids = {r[6] for r in server if r[5] == "2"}
    assert len(server_sids) == 1 and sid not in server_sids
    first = [r[5] for r in server][:3]
    assert first == ["2", "11", "14"]
    assert not [r for r in rows if r[5] in ("16", "20")]  # no ClientKeyExchange, no Finished
    logged = next(e["detail"] for e in f["expected"]
                  if isinstance(e["detail"], dict) and "server_session_id" in e["detail"])
    assert server_sids == {logged["server_session_id"].lower()}  # the new session id is the one gnutls-serv logged
    assert not tshark_fields(d / "capture.pcapng", ["frame.number"], "dtls.record.content_type == 23")
    log = (d / "dtls-server.log").read_text()
    assert "_gnutls_server_restore_session" in log and "Selected version DTLS0.9" in log
    assert f["dtls_server"]["argv"][0] == "gnutls-serv" and "--udp" in f["dtls_server"]["argv"]


@pytest.mark.tshark
def test_dtls_source_mismatch_on_the_wire(tshark):
    d = _case_dir("dtls-source-mismatch")
    f = _facts("dtls-source-mismatch")
    rows = tshark_fields(d / "capture.pcapng", ["frame.time_epoch", "ip.src", "udp.srcport", "udp.dstport",
                                                "dtls.handshake.type", "udp.payload"], "udp && !icmp")
    to_gw = [r for r in rows if r[1] == CLIENT]
    from_gw = [r for r in rows if r[1] == GW]
    assert to_gw and all(r[3] == str(DTLS_PORT) and r[4] == "1" for r in to_gw)
    # every answer came from the other port, and is byte for byte what the gateway recorded sending
    assert [r[2] for r in from_gw] == [str(DTLS_REPLY_PORT)] * len(f["gateway"]["udp_sent"])
    assert [r[5] for r in from_gw] == [e["hex"] for e in f["gateway"]["udp_sent"]]
    assert all(r[4] == "3" for r in from_gw)
    assert not [r for r in rows if r[2] == str(DTLS_PORT)]  # nothing ever came from X-DTLS-Port
    # the client's kernel refused each answer (openconnect's UDP socket is connected to port 4443)
    icmp = tshark_fields(d / "capture.pcapng", ["ip.src", "icmp.type", "icmp.code", "udp.srcport"], "icmp")
    assert icmp == [[f"{CLIENT}|{GW}", "3", "3", str(DTLS_REPLY_PORT)]] * len(from_gw)


@pytest.mark.tshark
def test_keepalive_missing_on_the_wire(tshark):
    d = _case_dir("keepalive-missing")
    f = _facts("keepalive-missing")
    acts = {a["action"]: a["time"] for a in f["actions"]}
    rows = tshark_fields(d / "capture.pcapng", ["frame.time_epoch", "ip.src", "tcp.len"],
                         "tcp.stream == 0 && tcp.len > 0")
    c2s = [float(r[0]) for r in rows if r[1] == CLIENT]
    gaps = [(b - a, a, b) for a, b in itertools.pairwise(c2s)]
    longest = max(gaps)
    # the client sent no byte on the tunnel's TCP connection for > 2 x keepalive + 5 s, exactly while frozen
    assert longest[0] > 2 * 5 + 5
    assert longest[1] <= acts["client-sigstop"] and longest[2] >= acts["client-sigcont"]
    assert not [r for r in rows if r[1] == GW and longest[1] < float(r[0]) < longest[2]]  # the gateway was quiet
    recs = _cstp_records(d, 0)
    ka = [r for r in recs if r[2] == CLIENT and r[3] == cstp_frame(7)]
    assert any(r[1] < acts["client-sigstop"] for r in ka) and any(r[1] > acts["client-sigcont"] for r in ka)
    assert "\tX-CSTP-Keepalive: 5\n" in (d / "client.log").read_text()


CLIENT_REACTIONS = {  # what openconnect itself logged about the scripted answer (client.log or client-auth.log)
    "aggauth-v1-fallback": ['XML response has no "auth" node', "GET https://vpn.acflow.test/"],
    "connect-rejected": ["Got inappropriate HTTP CONNECT response: HTTP/1.1 401 Cookie is not acceptable"],
    # the credentials' answer 20 s late: openconnect waits for it (no timeout of its own), then connects
    "auth-mfa-slow": ['type="complete"', "Got CONNECT response: HTTP/1.1 200 CONNECTED"],
    "connect-slow": ["Got CONNECT response: HTTP/1.1 200 CONNECTED"],
    # the user's Ctrl-C while openconnect waits for the credentials' answer
    "auth-client-gives-up": ["Error reading HTTP response: Interrupted system call",
                             "Failed to complete authentication"],
    "connect-unavailable": ["VPN service unavailable; reason: No assigned address"],
    "mtu-ipv6-small": ["IPv6 configuration received but MTU 1200 is too small."],
    "dtls-mtu-differs": ["DTLS handshake timed out", "with SSL connected and DTLS in progress"],
    "profile-hash-mismatch": ["<hash type=\"sha1\">"],
    "server-cert-hash-mismatch": ["<server-cert-hash>"],
    "tls-alert": ["A TLS fatal alert has been received"],
    "terminate": ["received server terminate packet", "Send BYE packet: Server request",
                  "Session terminated by server; exiting."],
    "reconnect-address-changed": ["Read error on SSL session: The TLS connection was non-properly terminated.",
                                  f"Reconnect gave different Legacy IP address ({TUNNEL_IP_RECONNECT} != {TUNNEL_IP})",
                                  "Reconnect failed", "Cookie was rejected by server; exiting."],
    "profile-missing": ["<hash type=\"sha1\">", "CSTP connected"],
    "dtls-full-handshake": ["X-DTLS-CipherSuite: AES256-SHA",
                            "DTLS handshake failed: Insufficient credentials for that request."],
    "dtls-source-mismatch": ["DTLS handshake timed out", "with SSL connected and DTLS in progress"],
    "keepalive-missing": ["CSTP connected. DPD 30, Keepalive 5", "Send CSTP Keepalive"],
    "sleep-reconnect-refused": ["CSTP connected. DPD 10, Keepalive 20", "CSTP Dead Peer Detection detected dead peer!",
                                "Got inappropriate HTTP CONNECT response: HTTP/1.1 401 Cookie is not acceptable",
                                "Reconnect failed"],
    "sleep-gateway-dpd": ["CSTP connected. DPD 30, Keepalive 20", "Got CSTP DPD request", "Send CSTP DPD",
                          "Read error on SSL session"],
    "sleep-past-idle-timeout": ["X-CSTP-Idle-Timeout: 30", "CSTP Dead Peer Detection detected dead peer!",
                                "Got inappropriate HTTP CONNECT response: HTTP/1.1 401 Cookie is not acceptable",
                                "Reconnect failed"],
    "session-timeout-remaining": ["X-CSTP-Session-Timeout-Remaining: 6",
                                  "Received server disconnect: b0 'Max time exceeded'",
                                  "Send BYE packet: Server request", "Session terminated by server; exiting."],
    "dtls-cookie": ["X-DTLS-CipherSuite: PSK-NEGOTIATE", "Established DTLS connection"],
    "gateway-dpd-keepalive": ["Got CSTP Keepalive", "Got CSTP DPD request", "Got DTLS DPD request",
                              "Got DTLS Keepalive"],
    "dtls-cookie-ignored": ["X-DTLS-CipherSuite: PSK-NEGOTIATE", "DTLS handshake timed out"],
    "login-retry": ["Login failed.", "CSTP connected"],
    "login-retry-asa": ['<error id="88" param1="" param2="">Login failed.</error>', "CSTP connected"],
    "saml-external-browser": ["Spawning external browser", "Got encrypted SSO token of", "<sso-token>",
                              "CSTP connected"],
    "saml-browser-stalled": ["Spawning external browser", "Failed to complete authentication"],
    "saml-no-browser": ["No SSO handler", "Failed to complete authentication"],
    "saml-idp": ["Spawning external browser", "Got encrypted SSO token of", "<sso-token>", "CSTP connected"],
    "saml-idp-unknown": ["Spawning external browser", "Failed to complete authentication"],
    "saml-idp-unreachable": ["Spawning external browser", "Failed to complete authentication"],
    "saml-idp-untrusted": ["Spawning external browser", "Failed to complete authentication"],
    "hostscan": ["Trying to run CSD Trojan script", "Refreshing +CSCOE+/sdesktop/wait.html after 1 second",
                 "CSTP connected"],
    "hostscan-stalled": ["Trying to run CSD Trojan script", "Refreshing +CSCOE+/sdesktop/wait.html after 1 second"],
    "load-balancer-redirect": ["Got HTTP response: HTTP/1.1 302 Found", "Connected to 198.18.0.4:443",
                               "CSTP connected"],
    "web-portal-first": ["POST https://vpn.acflow.test/", "CSTP connected"],
}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_openconnect_reaction_logged(name):
    d = _case_dir(name)
    text = "".join((d / f).read_text() for f in ("client-auth.log", "client.log") if (d / f).exists())
    for needle in CLIENT_REACTIONS[name]:
        assert needle in text, needle


def test_profile_hash_mismatch_facts():
    f = _facts("profile-hash-mismatch")
    p = f["profile"]
    assert p["manifest_sha1"] != p["served_sha1"] == p["downloaded_sha1"]
    import hashlib

    d = _case_dir("profile-hash-mismatch")
    assert hashlib.sha1((d / "downloaded-profile.xml").read_bytes()).hexdigest().upper() == p["served_sha1"]
    assert f"<hash type=\"sha1\">{p['manifest_sha1']}</hash>" in (d / "client-auth.log").read_text()


def test_server_cert_hash_mismatch_facts():
    f = _facts("server-cert-hash-mismatch")
    import hashlib

    d = _case_dir("server-cert-hash-mismatch")
    der = ssl.PEM_cert_to_DER_cert((d / "server-cert.pem").read_text())
    presented = hashlib.sha1(der).hexdigest().upper()
    assert f["server_cert_hash"]["presented"] == presented != f["server_cert_hash"]["advertised"]


# ----------------------------------------------------------------------------------------------------------------
# live: real openconnect against the gateway
# ----------------------------------------------------------------------------------------------------------------

def _require(cond: bool, why: str) -> None:
    if not cond:
        if os.environ.get("CI"):
            pytest.fail(f"live scripted-gateway prerequisite missing in CI: {why}")
        pytest.skip(why)


@pytest.mark.lab
def test_live_mtu_ipv6_small(tmp_path, tshark):
    _require(os.geteuid() == 0, "needs root")
    _require(not missing_tools(REQUIRED_TOOLS), f"not installed: {', '.join(missing_tools(REQUIRED_TOOLS))}")
    before = set(subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout.split())
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "lab.scripted", "--case", "mtu-ipv6-small", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    assert elapsed < 30, elapsed
    after = set(subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout.split())
    assert not {n for n in after - before if n.startswith("acflow-")}, "the run left namespaces behind"
    out = tmp_path / "mtu-ipv6-small"
    f = json.loads((out / "facts.json").read_text())
    assert all(e["observed"] for e in f["expected"]), [e for e in f["expected"] if not e["observed"]]
    # openconnect's real reaction to what the gateway granted
    log = (out / "client.log").read_text()
    assert "IPv6 configuration received but MTU 1200 is too small." in log
    assert f["client"]["script_env"]["connect"]["INTERNAL_IP4_MTU"] == "1200"
    assert f["gateway"]["cstp_disconnect_received"]["reason"] == "Aborted by caller"
    reqs = tshark_fields(out / "capture.pcapng", ["http.request.method", "http.request.uri"], "http.request",
                         keylog=out / "keys.log")
    assert [tuple(r) for r in reqs] == [(e["method"], e["target"]) for e in f["gateway"]["exchanges"]]
    assert ("CONNECT", "/CSCOSSLC/tunnel") in [tuple(r) for r in reqs]


@pytest.mark.lab
def test_live_terminate(tmp_path, tshark):
    """The scripted TERMINATE and what openconnect does with it, end to end (< 30 s)."""
    _require(os.geteuid() == 0, "needs root")
    _require(not missing_tools(REQUIRED_TOOLS), f"not installed: {', '.join(missing_tools(REQUIRED_TOOLS))}")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "lab.scripted", "--case", "terminate", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert time.monotonic() - t0 < 30
    out = tmp_path / "terminate"
    f = json.loads((out / "facts.json").read_text())
    assert all(e["observed"] for e in f["expected"]), [e for e in f["expected"] if not e["observed"]]
    assert "received server terminate packet" in (out / "client.log").read_text()
    recs = _cstp_records(out, 0)
    assert [(r[2], r[3]) for r in recs if r[3][6] == 0x09] == [(GW, cstp_frame(9))]
