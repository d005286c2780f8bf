"""HTTPStream: requests/responses in any split, bounds, CONNECT → CSTP, and the real lab captures."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dissectors.aggauth import ConfigAuth, parse_config_auth
from dissectors.cstp import (
    CSTPError,
    CSTPFrame,
    CSTPType,
    build_cstp_frame,
    inner_packet_summary,
    parse_disconnect_reason,
)
from dissectors.http import (
    DEFAULT_MAX_DOWNLOAD_BODY,
    Headers,
    HTTPError,
    HTTPStream,
    Request,
    Response,
    TunnelEstablished,
)

from .conftest import SEVERAL_CLIENTS

ROOT = Path(__file__).resolve().parent.parent

# -- a realistic openconnect ↔ ocserv exchange (shapes as seen on the wire) ------------------------

UA = b"User-Agent: Open AnyConnect VPN Agent v9.01-3\r\n"
COMMON = (b"Host: vpn.acflow.test\r\n" + UA + b"Accept: */*\r\nAccept-Encoding: identity\r\n"
          b"X-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\nX-Support-HTTP-Auth: true\r\n")


def post(target: bytes, xml: bytes, cookie: bytes = b"") -> bytes:
    return (b"POST " + target + b" HTTP/1.1\r\n" + COMMON + cookie
            + b"Content-Type: application/xml; charset=utf-8\r\n"
            + b"Content-Length: " + str(len(xml)).encode() + b"\r\n\r\n" + xml)


def ok_xml(xml: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Type: text/xml\r\nContent-Length: "
            + str(len(xml)).encode() + b"\r\nX-Transcend-Version: 1\r\n\r\n" + xml)


INIT = (b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" '
        b'aggregate-auth-version="2"><version who="vpn">v9.01-3</version><device-id>linux-64</device-id>'
        b'<group-access>https://vpn.acflow.test/</group-access></config-auth>\n')
ASK_USER = (b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-request">\n'
            b'<version who="sg">0.1(1)</version>\n<auth id="main">\n<message>Please enter your username.'
            b'</message>\n<form method="post" action="/auth">\n<input type="text" name="username" '
            b'label="Username:" />\n</form></auth>\n</config-auth>')
REPLY_USER = (b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-reply">'
              b'<version who="vpn">v9.01-3</version><device-id>linux-64</device-id><auth><username>alice'
              b'</username></auth></config-auth>\n')
COMPLETE = (b'<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="complete">\n'
            b'<version who="sg">0.1(1)</version>\n<auth id="success">\n<title>SSL VPN Service</title>'
            b'</auth></config-auth>\n')
CONNECT = (b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn.acflow.test\r\n" + UA
           + b"Cookie: webvpn=AKGOor8uBQVsRW9Q9Y972FE+gJODT1XkZDbQ9H1A6CE=\r\nX-CSTP-Version: 1\r\n"
           b"X-CSTP-Hostname: vm\r\nX-CSTP-Accept-Encoding: oc-lz4,lzs\r\nX-CSTP-Base-MTU: 1500\r\n"
           b"X-CSTP-MTU: 1390\r\nX-CSTP-Address-Type: IPv6,IPv4\r\n"
           b"X-DTLS-Master-Secret: " + b"4D" * 48 + b"\r\nX-DTLS-CipherSuite: PSK-NEGOTIATE:AES256-SHA\r\n\r\n")
CONNECTED = (b"HTTP/1.1 200 CONNECTED\r\nX-CSTP-Version: 1\r\nX-CSTP-Server-Name: ocserv 1.1.6\r\n"
             b"X-CSTP-DPD: 20\r\nX-CSTP-Address: 198.19.0.50\r\nX-CSTP-Netmask: 255.255.255.0\r\n"
             b"X-CSTP-Split-Include: 198.19.0.0/255.255.255.0\r\nX-CSTP-Split-Include: 10.0.0.0/8\r\n"
             b"X-CSTP-Keepalive: 30\r\nX-DTLS-Port: 443\r\nX-DTLS-CipherSuite: PSK-NEGOTIATE\r\n"
             b"X-CSTP-MTU: 1434\r\n\r\n")
PING = bytes.fromhex("4500005412344000400100000ac600320ac60001") + b"\x08\x00" + b"p" * 62
C2S_CSTP = [build_cstp_frame(CSTPType.DPD_REQ, b""), build_cstp_frame(CSTPType.DATA, PING),
            build_cstp_frame(CSTPType.KEEPALIVE), build_cstp_frame(CSTPType.DISCONNECT, b"\xb0Aborted by caller")]
S2C_CSTP = [build_cstp_frame(CSTPType.DPD_RESP, b""), build_cstp_frame(CSTPType.DATA, PING)]

#: what the TLS layer would deliver, in capture order: (direction, one record's plaintext)
SESSION = [
    ("c2s", post(b"/", INIT)),
    ("s2c", ok_xml(ASK_USER, b"Set-Cookie: webvpncontext=; expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; "
                             b"Secure; HttpOnly\r\n")),
    ("c2s", post(b"/auth", REPLY_USER)),
    ("s2c", ok_xml(COMPLETE, b"Connection: Keep-Alive\r\nSet-Cookie: webvpn=AKGOor8u=; Secure; HttpOnly\r\n")),
    ("c2s", CONNECT),
    ("s2c", CONNECTED),
    ("c2s", C2S_CSTP[0]),
    ("s2c", S2C_CSTP[0]),
    ("c2s", C2S_CSTP[1]),
    ("s2c", S2C_CSTP[1]),
    ("c2s", C2S_CSTP[2] + C2S_CSTP[3]),
]


def strip_where(ev):
    """An event without its ts/frame fields, to compare runs fed in different pieces."""
    if isinstance(ev, Request):
        return ("req", ev.method, ev.target, ev.version, ev.headers, ev.body, ev.trailers,
                ev.headers_truncated, ev.body_truncated)
    if isinstance(ev, Response):
        return ("resp", ev.status, ev.reason, ev.headers, ev.body, ev.request_method, ev.trailers,
                ev.headers_truncated, ev.body_truncated)
    if isinstance(ev, HTTPError):
        return ("err", ev.direction, ev.kind, ev.message)
    if isinstance(ev, TunnelEstablished):
        return ("tunnel",)
    if isinstance(ev, CSTPFrame):
        return ("cstp", ev.direction, ev.type, ev.payload, ev.packet)
    if isinstance(ev, CSTPError):
        return ("cstp-err", ev.direction, ev.message)
    raise AssertionError(ev)


def run(records, splitter=None, stream=None, close=True):
    """Feed (direction, data) records, each cut where ``splitter(data)`` says; frame = record index + 1."""
    stream = stream or HTTPStream()
    events = []
    for i, (direction, data) in enumerate(records, start=1):
        cuts = sorted(set(splitter(data))) if splitter else []
        pos = 0
        for cut in [*cuts, len(data)]:
            events += stream.feed(direction, data[pos:cut], float(i), i)
            pos = cut
    if close:
        events += stream.close()
    return events


def test_session_whole_records():
    events = run(SESSION)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Request", "Response", "Request", "Response", "Request", "Response", "TunnelEstablished",
                     *["CSTPFrame"] * 6]
    init, ask, reply, complete, connect, connected, tunnel = events[:7]
    assert (init.method, init.target, init.version) == ("POST", "/", "HTTP/1.1")
    assert init.headers.get("x-aggregate-auth") == "1" and init.body == INIT
    assert (init.frame, init.end_frame, init.ts) == (1, 1, 1.0)
    assert (ask.status, ask.reason, ask.request_method, ask.body, ask.frame) == (200, "OK", "POST", ASK_USER, 2)
    ca = parse_config_auth(reply.body)
    assert isinstance(ca, ConfigAuth) and ca.type == "auth-reply" and ca.auth.values == (("username", "alice"),)
    assert complete.headers.get_all("set-cookie")[0].startswith("webvpn=")
    assert connect.method == "CONNECT" and connect.target == "/CSCOSSLC/tunnel" and connect.body == b""
    assert (connected.status, connected.reason, connected.request_method) == (200, "CONNECTED", "CONNECT")
    assert connected.headers.get_all("X-CSTP-Split-Include") == ("198.19.0.0/255.255.255.0", "10.0.0.0/8")
    assert (tunnel.ts, tunnel.frame) == (6.0, 6)
    cstp = [(e.direction, e.type, e.frame) for e in events[7:]]
    assert cstp == [("c2s", CSTPType.DPD_REQ, 7), ("s2c", CSTPType.DPD_RESP, 8), ("c2s", CSTPType.DATA, 9),
                    ("s2c", CSTPType.DATA, 10), ("c2s", CSTPType.KEEPALIVE, 11), ("c2s", CSTPType.DISCONNECT, 11)]
    assert events[9].packet == PING
    assert parse_disconnect_reason(events[-1].payload) == "Aborted by caller"


def test_session_byte_by_byte():
    baseline = [strip_where(e) for e in run(SESSION)]
    assert [strip_where(e) for e in run(SESSION, lambda d: range(1, len(d)))] == baseline


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_session_random_chunking(data):
    baseline = [strip_where(e) for e in run(SESSION)]

    def splitter(record):
        return data.draw(st.lists(st.integers(min_value=0, max_value=len(record)), max_size=8))

    assert [strip_where(e) for e in run(SESSION, splitter)] == baseline


def test_session_every_single_split_of_the_connect_exchange():
    # the server's CONNECTED head and its first CSTP frames in one buffer, split at every offset
    s2c = CONNECTED + S2C_CSTP[0] + S2C_CSTP[1]
    expected = None
    for cut in range(len(s2c) + 1):
        stream = HTTPStream()
        stream.feed("c2s", CONNECT, 0.0, 1)
        events = stream.feed("s2c", s2c[:cut], 1.0, 2) + stream.feed("s2c", s2c[cut:], 2.0, 3)
        got = [strip_where(e) for e in events]
        if expected is None:
            expected = got
            assert [g[0] for g in got] == ["resp", "tunnel", "cstp", "cstp"]
        assert got == expected, cut


def test_every_split_of_a_chunked_response():
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\n"
            b"HTTP/1.1 204 No Content\r\n\r\n")
    for cut in range(len(data) + 1):
        stream = HTTPStream()
        stream.feed("c2s", b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 0.0, 1)
        events = stream.feed("s2c", data[:cut], 1.0, 2) + stream.feed("s2c", data[cut:], 1.0, 3)
        assert [(e.status, e.body, e.trailers) for e in events] == [
            (200, b"Wikipedia", Headers([("X-Trailer", "yes")])), (204, b"", Headers())], cut


def test_frame_numbers_of_a_message_spanning_records():
    stream = HTTPStream()
    req = post(b"/", INIT)
    assert stream.feed("c2s", req[:10], 1.0, 5) == []
    assert stream.feed("c2s", req[10:200], 2.0, 6) == []
    (ev,) = stream.feed("c2s", req[200:] + b"GET /next HTTP/1.1\r", 3.0, 7)
    assert (ev.ts, ev.frame, ev.end_frame) == (1.0, 5, 7)
    (ev2,) = stream.feed("c2s", b"\n\r\n", 4.0, 8)
    assert (ev2.target, ev2.ts, ev2.frame, ev2.end_frame) == ("/next", 3.0, 7, 8)


# -- response framing rules -------------------------------------------------------------------------

def test_pipelined_head_and_get():
    stream = HTTPStream()
    stream.feed("c2s", b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n", 0, 1)
    events = stream.feed("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
                                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0, 2)
    assert [(e.request_method, e.body) for e in events] == [("HEAD", b""), ("GET", b"hello")]


def test_interim_1xx_and_304():
    stream = HTTPStream()
    stream.feed("c2s", b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
                       b"GET /c HTTP/1.1\r\nIf-None-Match: x\r\n\r\n", 0, 1)
    events = stream.feed("s2c", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
                                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", 0, 2)
    assert [(e.status, e.request_method, e.body) for e in events] == [
        (100, "POST", b""), (201, "POST", b"ok"), (304, "GET", b"")]


def test_response_until_close():
    stream = HTTPStream()
    stream.feed("c2s", b"GET /1/VPNManifest.xml HTTP/1.0\r\n\r\n", 0, 1)
    assert stream.feed("s2c", b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<vpn", 1.0, 2) == []
    assert stream.feed("s2c", b"/>", 2.0, 3) == []
    (ev,) = stream.close("s2c", 3.0, 4)
    assert (ev.body, ev.frame, ev.end_frame, ev.body_truncated) == (b"<vpn/>", 2, 3, False)


def test_close_inside_a_content_length_body():
    stream = HTTPStream()
    stream.feed("c2s", b"GET / HTTP/1.1\r\n\r\n", 0, 1)
    stream.feed("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, 2)
    err, resp = stream.close()
    assert isinstance(err, HTTPError) and err.kind == "truncated"
    assert resp.body == b"abc" and resp.body_truncated


def test_close_inside_a_head_and_data_after_close():
    stream = HTTPStream()
    stream.feed("c2s", b"GET / HT", 0, 1)
    (err,) = stream.close("c2s")
    assert err.kind == "truncated" and "message head" in err.message
    (err,) = stream.feed("c2s", b"more", 1.0, 2)
    assert err.kind == "after-close"
    assert stream.feed("c2s", b"more", 1.0, 3) == []


def test_connect_refused_then_http_resumes():
    # ocserv: "HTTP/1.1 401 Unauthorized\r\n\r\n" then "X-Reason: …" as the body, and close
    stream = HTTPStream()
    evs = stream.feed("c2s", CONNECT + b"GET /again HTTP/1.1\r\n\r\n", 0, 1)
    assert [e.method for e in evs] == ["CONNECT"]  # the GET is held until the answer is known
    evs = stream.feed("s2c", b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", 1.0, 2)
    assert [type(e).__name__ for e in evs] == ["Response", "Request"]
    assert evs[0].status == 401 and evs[1].target == "/again" and evs[1].frame == 1
    assert not stream.tunnel


def test_ocserv_401_cookie_not_acceptable_read_until_close():
    stream = HTTPStream()
    stream.feed("c2s", CONNECT, 0, 1)
    evs = stream.feed("s2c", b"HTTP/1.1 401 Unauthorized\r\n\r\nX-Reason: Cookie is not acceptable\r\n\r\n", 1, 2)
    assert evs == []
    (resp,) = stream.close()
    assert resp.status == 401 and b"Cookie is not acceptable" in resp.body


def test_connect_503_with_reason_header():
    stream = HTTPStream()
    stream.feed("c2s", CONNECT, 0, 1)
    (resp,) = stream.feed("s2c", b"HTTP/1.1 503 Service Unavailable\r\nX-Reason: no addresses\r\n"
                                 b"Content-Length: 0\r\n\r\n", 1, 2)
    assert resp.headers.get("x-reason") == "no addresses" and not stream.tunnel


def test_client_cstp_before_the_answer_is_held_then_framed():
    stream = HTTPStream()
    evs = stream.feed("c2s", CONNECT + C2S_CSTP[0], 0.0, 1)
    assert [type(e).__name__ for e in evs] == ["Request"]
    evs = stream.feed("s2c", CONNECTED, 1.0, 2)
    assert [type(e).__name__ for e in evs] == ["Response", "TunnelEstablished", "CSTPFrame"]
    assert (evs[2].direction, evs[2].frame) == ("c2s", 1)


def test_compressed_cstp_uses_the_negotiated_encoding():
    lzs_literals = "".join("0" + format(b, "08b") for b in PING) + "110000000"
    lzs_literals += "0" * (-len(lzs_literals) % 8)
    compressed = bytes(int(lzs_literals[i:i + 8], 2) for i in range(0, len(lzs_literals), 8))
    stream = HTTPStream()
    stream.feed("c2s", CONNECT, 0, 1)
    evs = stream.feed("s2c", CONNECTED.replace(b"\r\n\r\n", b"\r\nX-CSTP-Content-Encoding: lzs\r\n\r\n")
                      + build_cstp_frame(CSTPType.COMPRESSED_DATA, compressed), 1, 2)
    assert evs[-1].type == CSTPType.COMPRESSED_DATA and evs[-1].packet == PING
    assert stream.framer.encoding == "lzs"


def test_101_switching_protocols_stops_parsing():
    stream = HTTPStream()
    stream.feed("c2s", b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 0, 1)
    evs = stream.feed("s2c", b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hello", 1, 2)
    assert evs[0].status == 101 and isinstance(evs[1], HTTPError)
    assert stream.feed("c2s", b"\x81\x85garbage", 2, 3) == []


# -- malformed input and bounds ---------------------------------------------------------------------

def test_garbage_start_line_resyncs_to_the_next_request():
    data = b"\x16\x03\x01 not http at all\r\nmore junk\r\nGET /ok HTTP/1.1\r\nHost: a\r\n\r\n"
    for splitter in (None, lambda d: range(1, len(d))):
        events = run([("c2s", data)], splitter)
        assert [type(e).__name__ for e in events] == ["HTTPError", "Request"]
        assert "malformed request line" in events[0].message and events[1].target == "/ok"


def test_malformed_header_lines_and_obs_fold():
    evs = run([("c2s", b"GET / HTTP/1.1\r\nGood: yes\r\n folded\r\nno colon here\r\nBad Name: x\r\n\r\n")])
    errors = [e for e in evs if isinstance(e, HTTPError)]
    assert len(errors) == 2
    (req,) = [e for e in evs if isinstance(e, Request)]
    assert req.headers == Headers([("Good", "yes folded")])


def test_malformed_line_errors_are_bounded():
    evs = run([("c2s", b"GET / HTTP/1.1\r\n" + b"junk\r\n" * 10_000 + b"\r\n")])
    assert len([e for e in evs if isinstance(e, HTTPError)]) == 6
    assert isinstance(evs[-1], Request)


def test_conflicting_content_length():
    evs = run([("c2s", b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcGET / HTTP/1.1\r\n\r\n")])
    assert isinstance(evs[0], HTTPError) and "Content-Length" in evs[0].message
    assert [e.body for e in evs if isinstance(e, Request)] == [b"abc", b""]


def test_bad_chunk_size_truncates_and_resyncs():
    stream = HTTPStream()
    stream.feed("c2s", b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 0, 1)
    evs = stream.feed("s2c", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"
                             b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", 0, 2)
    assert [type(e).__name__ for e in evs] == ["HTTPError", "Response", "Response"]
    assert evs[1].body == b"abc" and evs[1].body_truncated and evs[2].body == b"x"


def test_100000_headers_is_an_error_without_memory_blowup():
    headers = b"".join(b"X-H-%d: v\r\n" % i for i in range(100_000))
    data = b"GET /big HTTP/1.1\r\nContent-Length: 3\r\n" + headers + b"\r\nabcGET /after HTTP/1.1\r\n\r\n"
    stream = HTTPStream()
    tracemalloc.start()
    events = []
    for i in range(0, len(data), 4096):
        events += stream.feed("c2s", data[i:i + 4096], 0.0, i // 4096 + 1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    errors = [e for e in events if isinstance(e, HTTPError)]
    assert [e.kind for e in errors] == ["max_headers"]  # crossed first (13 KiB < 64 KiB); reported once
    big, after = [e for e in events if isinstance(e, Request)]
    assert big.headers_truncated and big.body == b"abc" and len(big.headers) < 10_000
    assert after.target == "/after" and not after.headers_truncated
    assert peak < 8 * 1024 * 1024, peak


def test_header_bytes_bound():
    headers = b"".join(b"X-Long-%d: %s\r\n" % (i, b"v" * 1000) for i in range(100))  # ~100 KiB
    evs = run([("c2s", b"POST / HTTP/1.1\r\n" + headers + b"Content-Length: 2\r\n\r\nhi")])
    err, req = evs
    assert err.kind == "max_header_bytes" and "max_header_bytes=65536" in err.message
    assert req.headers_truncated and req.body == b"hi" and 60 <= len(req.headers) <= 66
    assert req.headers.get("Content-Length") == "2"


def test_header_count_bound_keeps_framing_headers():
    headers = b"a:b\r\n" * 1500
    stream = HTTPStream(max_headers=1000)
    stream.feed("c2s", b"GET / HTTP/1.1\r\n\r\n", 0, 1)
    evs = stream.feed("s2c", b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 2\r\n\r\nok", 0, 2)
    err, resp = evs
    assert err.kind == "max_headers" and "max_headers=1000" in err.message
    assert len(resp.headers) == 1001 and resp.headers.get("content-length") == "2" and resp.body == b"ok"


def test_huge_line_without_newline_is_dropped_as_it_arrives():
    stream = HTTPStream()
    tracemalloc.start()
    events = []
    for i in range(160):  # 10 MiB in 64 KiB pieces, no newline
        events += stream.feed("c2s", b"A" * 65536, 0.0, i + 1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [e.kind for e in events] == ["max_header_bytes"]
    assert peak < 4 * 1024 * 1024
    events = stream.feed("c2s", b"AAAA\r\nGET /ok HTTP/1.1\r\n\r\n", 0.0, 200)
    assert [e.target for e in events] == ["/ok"]


def test_body_bound():
    stream = HTTPStream(max_body=100)
    evs = stream.feed("c2s", b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
                             + b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                             + b"80\r\n" + b"y" * 128 + b"\r\n0\r\n\r\n", 0, 1)
    assert [type(e).__name__ for e in evs] == ["HTTPError", "Request", "HTTPError", "Request"]
    assert evs[0].kind == "max_body" and "max_body=100" in evs[0].message
    assert evs[1].body == b"x" * 100 and evs[1].body_truncated
    assert evs[3].body == b"y" * 100 and evs[3].body_truncated


def test_every_body_has_its_whole_length_and_sha1_however_much_is_kept():
    body = bytes(range(256)) * 8
    stream = HTTPStream(max_body=100)
    evs = stream.feed("c2s", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                             + b"".join(b"%x\r\n" % len(body[i:i + 300]) + body[i:i + 300] + b"\r\n"
                                        for i in range(0, len(body), 300))
                             + b"0\r\n\r\nPOST /e HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 0, 1)
    req, empty = [e for e in evs if isinstance(e, Request)]
    assert req.body == body[:100] and req.body_truncated  # a POST is cut at max_body, and says so
    assert (req.body_length, req.body_sha1) == (len(body), hashlib.sha1(body).hexdigest())
    assert (empty.body_length, empty.body_sha1) == (0, hashlib.sha1(b"").hexdigest())
    assert [e.kind for e in evs if isinstance(e, HTTPError)] == ["max_body"]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 5000), keep=st.integers(0, 3000), cuts=st.lists(st.integers(0, 6000), max_size=8),
       chunked=st.booleans(), method=st.sampled_from(["GET", "POST", "get"]))
def test_an_answer_to_a_get_keeps_its_first_bytes_and_digests_all(size, keep, cuts, chunked, method):
    """The downloader's files: the answer to a GET keeps max_download_body bytes, with no error (its length and
    SHA-1 are whole, however the stream is cut into feeds); any other answer keeps up to max_body."""
    body = bytes((i * 7) % 251 for i in range(size))
    framing = (b"Transfer-Encoding: chunked\r\n\r\n" + (b"%x\r\n" % size + body + b"\r\n" if size else b"")
               + b"0\r\n\r\n") if chunked else b"Content-Length: %d\r\n\r\n" % size + body
    wire = b"HTTP/1.1 200 OK\r\n" + framing
    stream = HTTPStream(max_body=4000, max_download_body=keep)
    stream.feed("c2s", f"{method} /CACHE/stc/1/x HTTP/1.1\r\nHost: g\r\n\r\n".encode(), 0, 1)
    evs, last = [], 0
    for n, cut in enumerate([*sorted(c for c in cuts if c < len(wire)), len(wire)]):
        evs += stream.feed("s2c", wire[last:cut], 0.1, 2 + n)
        last = cut
    (resp,) = [e for e in evs if isinstance(e, Response)]
    limit = min(keep, 4000) if method.upper() == "GET" else 4000
    assert resp.body == body[:limit] and resp.body_truncated == (size > limit)
    assert (resp.body_length, resp.body_sha1) == (size, hashlib.sha1(body).hexdigest())
    assert resp.body_complete  # (cut to the kept bytes, yet whole on the wire)
    errors = [e.kind for e in evs if isinstance(e, HTTPError)]
    assert errors == (["max_body"] if method.upper() != "GET" and size > 4000 else [])


def test_a_body_the_stream_ends_inside_is_incomplete():
    """An answer whose connection ends before its Content-Length (a transfer cut, or a capture that stopped): emitted
    at close with what came, ``body_complete`` False; a body read until the close is complete."""
    stream = HTTPStream()
    stream.feed("c2s", b"GET /CACHE/stc/1/x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n", 0, 1)
    evs = stream.feed("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
                             b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 40, 0, 2)
    evs += stream.close()
    whole, cut = [e for e in evs if isinstance(e, Response)]
    assert whole.body_complete and (whole.body_length, whole.body) == (10, b"0123456789")
    assert not cut.body_complete and cut.body_truncated and cut.body_length == 40
    assert cut.body_sha1 == hashlib.sha1(b"z" * 40).hexdigest()
    stream = HTTPStream()
    stream.feed("c2s", b"GET / HTTP/1.0\r\n\r\n", 0, 1)
    evs = stream.feed("s2c", b"HTTP/1.0 200 OK\r\n\r\nuntil the close", 0, 2) + stream.close()
    (resp,) = [e for e in evs if isinstance(e, Response)]
    assert resp.body_complete and resp.body == b"until the close"


def test_a_large_download_is_digested_in_flat_memory():
    """A 48 MiB client package fetched by the downloader: read whole (no 16 MiB max_body cut, no error), its
    length and SHA-1 exact, at most DEFAULT_MAX_DOWNLOAD_BODY bytes of it held."""
    piece = bytes(range(256)) * 256  # 64 KiB
    n = 768
    stream = HTTPStream()
    stream.feed("c2s", b"GET /CACHE/stc/1/binaries/vpn-core.msi HTTP/1.1\r\n\r\n", 0, 1)
    tracemalloc.start()
    evs = stream.feed("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (n * len(piece)), 0, 2)
    for i in range(n):
        evs += stream.feed("s2c", piece, 0, 3 + i)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    (resp,) = evs
    whole = hashlib.sha1()
    for _ in range(n):
        whole.update(piece)
    assert (resp.body_length, resp.body_sha1) == (n * len(piece), whole.hexdigest())
    assert len(resp.body) == DEFAULT_MAX_DOWNLOAD_BODY and resp.body_truncated
    assert peak < 4 * DEFAULT_MAX_DOWNLOAD_BODY


def test_pending_bound_after_connect():
    stream = HTTPStream(max_pending=1000)
    evs = stream.feed("c2s", CONNECT + b"z" * 5000, 0, 1)
    assert [type(e).__name__ for e in evs] == ["Request", "HTTPError"] and evs[1].kind == "max_pending"
    assert stream.feed("c2s", b"z" * 5000, 0, 2) == []


def test_headers_helper():
    h = Headers([("Set-Cookie", "a=1"), ("content-type", "text/xml"), ("SET-COOKIE", "b=2")])
    assert h.get("set-cookie") == "a=1" and h.get("Content-Type") == "text/xml"
    assert h.get_all("Set-Cookie") == ("a=1", "b=2") and h.get_all("x") == ()
    assert h.get("x", "dflt") == "dflt" and h.has("CONTENT-TYPE")
    assert h[0] == ("Set-Cookie", "a=1") and isinstance(h, tuple) and hash(h)
    assert Headers([("TE", "gzip, Chunked")]).tokens("te") == ("gzip", "chunked")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.binary(max_size=80)), max_size=12))
def test_fuzz_never_raises(records):
    stream = HTTPStream(max_header_bytes=256, max_headers=8, max_body=64, max_pending=64)
    for i, (direction, data) in enumerate(records):
        stream.feed(direction, data, float(i), i + 1)
    stream.close()


# -- the real lab captures (tshark decrypts, HTTPStream parses) ------------------------------------

# (a sample of several clients: its facts are the first client's; tests/test_shared_address.py reads it)
SAMPLES = sorted(p.parent for p in (ROOT / "samples").glob("*/facts.json") if p.parent.name not in SEVERAL_CLIENTS)


def decrypted_chunks(sample: Path) -> dict[int, list[tuple[str, bytes]]]:
    """Decrypted application data of every TCP stream, in capture order, as (direction, bytes) chunks.

    Decrypted with acflow's own TCP and TLS layers (checked byte for byte against tshark in
    tests/test_tls_tshark.py): tshark 4.0's follow,tls output drops records now and then on these captures.
    """
    from analyzer.capture import Frame, read_capture
    from dissectors.flows import FlowTable, StreamData
    from dissectors.keylog import KeyStore
    from dissectors.packet import decode
    from dissectors.tls import ApplicationData, TLSConnection

    keys, _ = KeyStore.from_keylog((sample / "keys.log").read_text())
    gateway = json.loads((sample / "facts.json").read_text())["gateway_address"]
    table = FlowTable()
    conns: dict[int, TLSConnection] = {}
    out: dict[int, list[tuple[str, bytes]]] = {}
    proxied: dict[int, set] = {}  # through an HTTP proxy: the directions whose TLS began (after its exchange)
    for ev in read_capture(sample / "capture.pcapng"):
        if not isinstance(ev, Frame):
            continue
        pkt = decode(ev.linktype, ev.data)
        if pkt is None or pkt.proto != 6:
            continue
        for flow, fev in table.feed(pkt, ev.ts, ev.number):
            # the gateway's connections only (mixed-traffic also holds TLS to unrelated servers: not HTTP)
            if isinstance(fev, StreamData) and flow.server[0] == gateway:
                if flow.index not in conns and fev.data[:8] == b"CONNECT ":
                    proxied[flow.index] = set()
                if flow.index in proxied and fev.direction not in proxied[flow.index]:
                    if fev.data[:2] != b"\x16\x03":
                        continue  # the proxy's CONNECT and answers, in segments of their own before the TLS
                    proxied[flow.index].add(fev.direction)
                tls = conns.setdefault(flow.index, TLSConnection(keys))
                for tev in tls.feed(fev.direction, fev.data, fev.ts, fev.frame):
                    if isinstance(tev, ApplicationData):
                        out.setdefault(flow.index, []).append((tev.direction, bytes(tev.data)))
    return out


@pytest.mark.tshark
@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_lab_capture(tshark, sample):
    facts = json.loads((sample / "facts.json").read_text())
    requests, responses, frames, errors, tunnels = [], [], [], [], 0
    for _n, chunks in sorted(decrypted_chunks(sample).items()):
        stream = HTTPStream()
        for i, (direction, data) in enumerate(chunks):
            for ev in stream.feed(direction, data, float(i), i + 1):
                if isinstance(ev, Request):
                    requests.append(ev)
                elif isinstance(ev, Response):
                    responses.append(ev)
                elif isinstance(ev, CSTPFrame):
                    frames.append(ev)
                elif isinstance(ev, TunnelEstablished):
                    tunnels += 1
                else:
                    errors.append(ev)
        for ev in stream.close():
            (responses if isinstance(ev, Response) else errors).append(ev)
    assert errors == []

    # every HTTP exchange the peers logged is on the wire, in order, with its status (a CONNECT to an HTTP proxy,
    # host:port, travels in the clear outside the TLS: tests/test_field_captures.py reads it)
    seen = [(r.method, r.target) for r in requests]
    facts["http"] = [h for h in facts["http"] if not (h["method"] == "CONNECT" and not h["target"].startswith("/"))]
    logged = [(h["method"], h["target"]) for h in facts["http"]]
    it = iter(seen)
    assert all(x in it for x in logged), (seen, logged)
    statuses = {(q.method, q.target, r.status) for q, r in zip(requests, responses)}
    assert all((h["method"], h["target"], h["status"]) in statuses for h in facts["http"] if h.get("status"))

    # the aggregate-auth rounds parse, and say what the peers logged
    posts = [r for r in requests if r.method == "POST" and b"<config-auth" in r.body]
    answers = [parse_config_auth(r.body) for q, r in zip(requests, responses)
               if q.method == "POST" and b"<config-auth" in r.body]
    assert len(posts) >= len(facts["auth_rounds"])
    for rnd, q in zip(facts["auth_rounds"], posts):
        ca = parse_config_auth(q.body)
        assert isinstance(ca, ConfigAuth) and ca.type == rnd["request_type"]
        assert [k for k, _ in ca.auth.values] == rnd["request_fields"] if ca.auth else not rnd["request_fields"]
        assert ca.group_select == rnd["group_select"]
    for rnd, ca in zip(facts["auth_rounds"], answers):
        assert isinstance(ca, ConfigAuth) and ca.type == rnd["response_type"]
        assert ca.auth.id == rnd["response_auth_id"]
        assert (ca.auth.message.formatted if ca.auth.message else None) == rnd["response_message"]
        assert ([f.name for f in ca.auth.form.fields] if ca.auth.form else []) == rnd["form_fields"]
    if facts["group_list"]:
        offered = next(ca.group_list for ca in answers if ca.group_list)
        assert [o.label for o in offered.options] == [g["label"] for g in facts["group_list"]]
        assert [o.value for o in offered.options] == [g["value"] or g["label"] for g in facts["group_list"]]
    if facts["profile_manifest"]:
        config = next(ca.config for ca in answers if ca.config)
        assert [{"hash": f.hash, "hash_type": f.hash_type, "uri": f.uri} for f in config.profile_manifest] == \
            facts["profile_manifest"]
    for dl in facts["downloader"]:
        assert any(q.method == "GET" and q.target == dl["uri"] and r.status == dl["status"]
                   for q, r in zip(requests, responses))

    if facts["auth_result"] != "success":
        assert tunnels == 0 and not any(r.method == "CONNECT" for r in requests)
        return
    connects = [(q, r) for q, r in zip(requests, responses) if q.method == "CONNECT"]
    assert connects and connects[0][0].target == "/CSCOSSLC/tunnel"
    assert (connects[0][1].status, connects[0][1].reason) == (200, "CONNECTED")
    assert tunnels == len(facts["connects"])
    assert [list(p) for p in connects[0][1].headers] == facts["connects"][0]["response_headers"]
    sent = iter([list(p) for p in connects[0][0].headers])
    assert all(p in sent for p in facts["connects"][0]["request_headers"])  # same headers, same order

    # CSTP: the client's clean exit is a DISCONNECT "Aborted by caller"; data over CSTP when counted
    types = {(f.direction, f.type) for f in frames}
    if facts["end"]["how"] == "cstp-disconnect":
        (bye,) = [f for f in frames if f.type == CSTPType.DISCONNECT]
        assert bye.direction == "c2s" and parse_disconnect_reason(bye.payload) == facts["end"]["reason"]
    elif facts["end"]["how"] == "gateway-disconnect":
        # the gateway's DISCONNECT (ocserv: a bare frame, no reason), then the client's "Server request"
        ends = [f for f in frames if f.type == CSTPType.DISCONNECT]
        assert [f.direction for f in ends] == ["s2c", "c2s"]
        assert parse_disconnect_reason(ends[1].payload) == facts["end"]["client_answer"]
    inner = facts["inner_packets"]
    data_c2s = [f for f in frames if f.direction == "c2s" and f.type == CSTPType.DATA]
    data_s2c = [f for f in frames if f.direction == "s2c" and f.type == CSTPType.DATA]
    # the DATA frames are the packets openconnect logged as sent/received over CSTP
    if facts.get("traffic_blocks") or facts.get("nat_rebinding"):
        # packets the gateway sent while traffic was blocked reach the wire later (TCP retransmission) on a
        # connection openconnect had already given up: on the wire, never logged by the client
        assert len(data_c2s) >= inner["client_sent_cstp"] and len(data_s2c) >= inner["client_received_cstp"]
    elif any(a["action"] == "client-moved" for a in facts["actions"]):
        # a packet the client sent on its old connection after its address was taken away never left the host
        assert len(data_c2s) <= inner["client_sent_cstp"] and len(data_s2c) == inner["client_received_cstp"]
    else:
        assert len(data_c2s) == inner["client_sent_cstp"]
        assert len(data_s2c) == inner["client_received_cstp"]
    pings = sum(p["sent"] for p in facts["pings"])
    if inner["client_sent_cstp"] and not facts["dtls_established"]:
        echo = [s for s in map(inner_packet_summary, (f.payload for f in data_c2s)) if s and s.proto == 1]
        assert len(echo) == pings and all(s.src == facts["tunnel_address"] for s in echo)
    # every DPD-REQ is answered by a DPD-RESP with the same payload
    reqs = [f.payload for f in frames if f.type == CSTPType.DPD_REQ and f.direction == "c2s"]
    resps = [f.payload for f in frames if f.type == CSTPType.DPD_RESP and f.direction == "s2c"]
    if facts.get("traffic_blocks") or facts.get("nat_rebinding"):
        it = iter(reqs)  # some requests went unanswered while traffic was blocked: answers in order, no extras
        assert all(r in it for r in resps)
    else:
        assert reqs == resps
    assert (("s2c", CSTPType.DISCONNECT) in types) == (facts["end"]["by"] == "gateway")
    if sample.name == "dtls-blocked":  # everything went over CSTP there, DPD included
        assert {("c2s", CSTPType.DPD_REQ), ("s2c", CSTPType.DPD_RESP), ("c2s", CSTPType.DATA),
                ("s2c", CSTPType.DATA), ("c2s", CSTPType.KEEPALIVE), ("c2s", CSTPType.DISCONNECT)} <= types
