"""CAPTIVE_PORTAL on real captures: openconnect on a guest network whose captive portal (lab/portal.py) holds it at its
sign-in page — the portal's DNS and HTTPS (samples/captive-portal), or plain HTTP answered and the gateway's port
dropped (samples/captive-portal-firewall). The truth is the lab's facts.json: what the portal answered (its log),
what the connectivity check printed, and the HTTP frames as tshark reads them (the oracle).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.captive_portal import read
from analyzer.plainhttp import starts_http

from .conftest import every_sample, facts, sample
from .helpers import doc

PORTALS = ("captive-portal", "captive-portal-firewall")


def _oracle(name: str) -> tuple[dict, dict]:
    """The request and the answer of the connectivity check as tshark read them (facts.json)."""
    http = facts(name)["captive_portal"]["oracle_http"]
    return next(h for h in http if h["request"]), next(h for h in http if h["status"])


def _ip_dst(capture: Path, frame: int) -> str:
    p = subprocess.run(["tshark", "-n", "-r", str(capture), "-Y", f"frame.number == {frame}", "-T", "fields",
                        "-e", "ip.dst"], capture_output=True, text=True, check=True)
    return p.stdout.strip()


@pytest.mark.parametrize("keys", [True, False], ids=["keyed", "keyless"])
@pytest.mark.parametrize("name", PORTALS)
def test_capture_wide(name, keys, tshark):
    """No session (nothing of the protocol reached a gateway): the capture-wide warning names the portal's answer
    to the connectivity check — the frames, status and Location tshark reads, the address that answered."""
    f = facts(name)["captive_portal"]
    d = doc(name, keys=keys)
    assert d["sessions"] == []
    wide = {x["id"]: x for x in d["findings"]}
    portal = wide["CAPTIVE_PORTAL"]
    assert portal["severity"] == "warning"
    request, answer = _oracle(name)
    first = portal["evidence"]["answers"][0]
    assert (first["frame"], first["answer_frame"]) == (request["frame"], answer["frame"])
    assert first["status"] == answer["status"] == 302 and first["location"] == answer["location"]
    assert first["request"] == "GET " + f["probe_url"] and first["why"] == "connectivity-check"
    assert f"HTTP_STATUS={first['status']}" in f["probe_output"]
    assert portal["evidence"]["portal"] == f["name"]
    assert first["server"] == _ip_dst(sample(name) / "capture.pcapng", request["frame"]) + ":80"
    assert portal["evidence"]["portal_address"] == first["server"].rsplit(":", 1)[0]
    assert f"{request['frame']}, {answer['frame']}" in portal["message"]
    other = d["other_traffic"]["captive_portal"]
    assert [i["client"] for i in other] == ["198.18.0.2"] and other[0]["answers"] == portal["evidence"]["answers"]
    if f["dns"]:  # the portal's resolver: the gateway's name, like every name, is the portal
        dns = portal["evidence"]["dns"]
        assert dns["address"] == f["address"] and dns["server"] == f["dns"]
        assert {"vpn.acflow.test", "connectivity-check.ubuntu.com"} <= set(dns["names"])
        assert "TCP_CONNECT_FAILED" not in wide
    else:  # the gateway's port dropped: its SYNs beside it
        assert "dns" not in portal["evidence"] and "TCP_CONNECT_FAILED" in wide
    assert "the gateway's name, too" in portal["message"] if f["dns"] else "too" not in portal["message"]
    if f["dns"]:  # the certificate the client refused is the portal's: not offered as the gateway's
        assert "captive portal's (CAPTIVE_PORTAL)" in wide["NO_VPN_SESSION"]["message"]
        assert "--gateway 198.18.0.5" not in wide["NO_VPN_SESSION"]["message"]


def test_terminal_names_the_portal():
    """The terminal's other traffic names the portal beside the findings."""
    cap = sample("captive-portal") / "capture.pcapng"
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(cap)], capture_output=True,
                       text=True, env=dict(os.environ, COLUMNS="200"), check=False)
    assert p.returncode in (0, 1, 2), p.stderr
    line = next(x for x in p.stdout.splitlines() if "captive portal:" in x)
    assert "portal.hotspot.test (198.18.0.5:80) answered 198.18.0.2's plain HTTP" in line
    assert "WARNING CAPTIVE_PORTAL" in p.stdout


@pytest.mark.parametrize("keys", [True, False], ids=["keyed", "keyless"])
@pytest.mark.parametrize("name,gateway", [("captive-portal", "vpn.acflow.test"),
                                          ("captive-portal-firewall", "198.18.0.1")])
def test_session_verdict(name, gateway, keys):
    """The gateway named (--gateway): the session could not connect, and the portal is why — not the certificate
    the portal presented under the gateway's name, not the dropped SYNs."""
    d = doc(name, keys=keys, gateway=gateway)
    [s] = d["sessions"]
    ids = {x["id"]: x for x in s["findings"]}
    assert ids["CAPTIVE_PORTAL"]["severity"] == "error"
    v = s["verdict"]
    assert v["outcome"] == "failed" and v["findings"] == ["CAPTIVE_PORTAL"]
    assert v["text"].startswith("Could not connect: the network holds the client at a captive portal")
    if name == "captive-portal":  # the portal's own certificate under the gateway's name
        assert s["gateway"] == f"{facts(name)['captive_portal']['address']}:443"
        assert "is the portal's own" in ids["CAPTIVE_PORTAL"]["message"]
        assert "TLS_CERT_REFUSED" in ids or not keys
    else:
        assert ids["TCP_CONNECT_FAILED"]["severity"] == "error"
        assert "could not reach the VPN gateway" in ids["CAPTIVE_PORTAL"]["message"]


def test_no_portal_elsewhere():
    """No other sample shows a captive portal (mixed-traffic's plain HTTP GET answered 200 included)."""
    for name in every_sample():
        if name in PORTALS:
            continue
        got = doc(name, keys=False)
        assert "captive_portal" not in got["other_traffic"], name
        assert not any(x["id"] == "CAPTIVE_PORTAL" for x in got["findings"]), name


def test_portal_passed_then_connected(tmp_path, tshark):
    """The portal's answer to the connectivity check, then (someone signed in) a whole session: the finding is
    information, the session stays healthy. The firewall sample's HTTP moved to 30 s before the baseline session
    (editcap -t, then mergecap)."""
    portal, base = sample("captive-portal-firewall") / "capture.pcapng", sample("baseline") / "capture.pcapng"
    def first(cap: Path) -> float:
        return float(subprocess.run(["tshark", "-n", "-r", str(cap), "-c", "1", "-T", "fields", "-e",
                                     "frame.time_epoch"], capture_output=True, text=True, check=True).stdout)

    shifted, merged = tmp_path / "portal.pcapng", tmp_path / "merged.pcapng"
    subprocess.run(["editcap", "-r", str(portal), str(tmp_path / "http.pcapng"), "1-14"], check=True,
                   capture_output=True)
    subprocess.run(["editcap", "-t", str(first(base) - first(portal) - 30), str(tmp_path / "http.pcapng"),
                    str(shifted)], check=True, capture_output=True)
    subprocess.run(["mergecap", "-w", str(merged), str(shifted), str(base)], check=True, capture_output=True)
    from analyzer import __version__
    from analyzer.analyze import analyze_paths, load_keys
    from analyzer.report.json_report import to_document

    for keylog in ([sample("baseline") / "keys.log"], []):
        d = to_document(analyze_paths([merged], *load_keys(keylog, [])), version=__version__)
        [s] = d["sessions"]
        f = next(x for x in s["findings"] if x["id"] == "CAPTIVE_PORTAL")
        assert f["severity"] == "info" and "30 s before the session began" in f["message"]
        v = s["verdict"]
        assert v["outcome"] in ("healthy", "inconclusive") and "CAPTIVE_PORTAL" not in v["findings"]


class _Plain:
    def __init__(self, exchanges):
        self.exchanges = exchanges


class _Conn:
    def __init__(self, server, exchanges, client="10.0.0.2"):
        self.client, self.server, self.plain_http = (client, 50000), (server, 80), _Plain(exchanges)


class _Pipe:
    def __init__(self, conns):
        self.tcp = dict(enumerate(conns))


def _ex(t, host, status, location=None, target="/"):
    e = {"frame": int(t * 10), "time": t, "method": "GET", "target": target, "host": host, "status": status,
         "reason": "x", "answer_frame": int(t * 10) + 1, "answer_time": t + 0.01}
    if location:
        e["location"] = location
    return e


def test_a_portal_session_in_its_redirect_is_redacted():
    """A portal's redirect may carry its session (token, sessionid…): those values are redacted in the report — the
    answer's location, the finding's message — and the whole URL is there with --show-secrets only."""
    from analyzer import __version__
    from analyzer.model import Analysis
    from analyzer.report.json_report import to_document
    from dissectors.redact import redact_url

    assert redact_url("http://p.test/login?url=x&token=abc&mac=aa&SessionID=9#f") == \
        "http://p.test/login?url=x&token=«redacted»&mac=aa&SessionID=«redacted»#f"
    assert redact_url("http://p.test/login") == "http://p.test/login"
    loc = "http://portal.test/login?token=s3cr3t&url=http%3A%2F%2Fa.test%2F"
    [item] = read(_Pipe([_Conn("9.9.9.9", [_ex(1, "captive.apple.com", 302, loc)])]))
    assert item["answers"][0]["location"] == "http://portal.test/login?token=«redacted»&url=http%3A%2F%2Fa.test%2F"
    a = Analysis(captures=[], sessions=[], other_traffic={"captive_portal": [item]})
    for shown in (False, True):
        text = json.dumps(to_document(a, version=__version__, show_secrets=shown))
        assert ("s3cr3t" in text) is shown


def test_reading_rules():
    """What counts as a portal's answer, on made-up exchanges: a web site's own redirects (to https, to another of
    its hosts) and a web filter's block page (other sites answering meanwhile) are none; 511, a check redirected, a
    page where an empty 204 is expected, and every site sent to one host are."""
    assert read(_Pipe([_Conn("1.1.1.1", [_ex(1, "example.com", 301, "https://example.com/")]),
                       _Conn("1.1.1.2", [_ex(2, "www.example.org", 302, "http://login.example.org/")])])) == []
    web_filter = [_Conn("1.1.1.1", [_ex(1, "a.test", 302, "http://block.filter.test/")]),
                  _Conn("1.1.1.3", [_ex(1.5, "c.test", 200)]),
                  _Conn("1.1.1.2", [_ex(2, "b.test", 302, "http://block.filter.test/")])]
    assert read(_Pipe(web_filter)) == []
    every = [_Conn("1.1.1.1", [_ex(1, "a.test", 302, "http://portal.test/")]),
             _Conn("1.1.1.2", [_ex(2, "b.test", 302, "http://portal.test/")])]
    [item] = read(_Pipe(every))
    assert [a["why"] for a in item["answers"]] == ["redirects-every-site"] * 2 and item["portal"] == "portal.test"
    [item] = read(_Pipe([_Conn("1.1.1.1", [_ex(1, "a.test", 511)])]))
    assert item["answers"][0]["why"] == "network-authentication-required" and item["portal"] == "1.1.1.1"
    [item] = read(_Pipe([_Conn("9.9.9.9", [_ex(1, "connectivitycheck.gstatic.com", 200, target="/generate_204")])]))
    assert item["answers"][0]["why"] == "connectivity-check"
    assert read(_Pipe([_Conn("9.9.9.9", [_ex(1, "connectivitycheck.gstatic.com", 204)]),
                       _Conn("9.9.9.8", [_ex(1, "www.msftconnecttest.com", 200)])])) == []
    # plain HTTP is read where portals answer (80, 8080), not an application's HTTP on another port
    assert starts_http(b"GET / HTTP/1.1\r\n", 80) and starts_http(b"HEAD /x HTTP/1.1", 8080)
    assert not starts_http(b"GET / HTTP/1.1\r\n", 5000) and not starts_http(b"\x16\x03\x01", 80)
