"""A user's browser at the gateway's web portal before the client connects (scripted case web-portal-first: the
lab browser GETs the gateway, its logon page, posts the logon form, GETs the portal page — a browser's User-Agent,
its own webvpn cookie — then real openconnect logs in with aggregate-auth and connects).

Before: the browser's GETs were the session's downloader ('2 GETs on 2 TLS sessions'), its form login a login round,
its TLS handshake phase 1 and its User-Agent the client's ('client: unknown'); without keys its connections were
'the downloader's GETs, most likely'."""
from __future__ import annotations

import json

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.evidence import GatewaySpec
from analyzer.phases.grouping import is_browser
from analyzer.report.json_report import render_json

from .conftest import sample

D = sample("scripted/web-portal-first")


def _doc(keys: bool, gateways=()) -> dict:
    k, info = load_keys([D / "keys.log"] if keys else [], [])
    return json.loads(render_json(analyze_paths([D / "capture.pcapng"], k, info, gateways=list(gateways)),
                                  version=__version__))


def _browser_steps() -> set[str]:
    """The browser's requests, as the gateway's events name them (steps portal-*)."""
    events = [json.loads(line) for line in (D / "gateway-events.jsonl").read_text().splitlines() if line.strip()]
    return {e["step"] for e in events if e.get("type") == "request" and str(e.get("step", "")).startswith("portal")}


def test_with_keys_the_portal_visit_is_a_note_not_the_session():
    assert _browser_steps() == {"portal-root", "portal-logon", "portal-login", "portal-page"}
    [s] = _doc(keys=True)["sessions"]
    phases = {p["phase"]: p for p in s["phases"]}
    assert phases["downloader"]["status"] == "absent"
    assert phases["user-auth"]["status"] == "ok" and "1 round" in phases["user-auth"]["summary"]
    assert s["client_software"]["name"] == "openconnect"
    assert [c["connection"] for c in s["connections"]] == ["tcp.stream 4"]
    [note] = [n for n in s["notes"] if "web portal" in n]
    assert "Firefox/128.0" in note and "POST /+webvpn+/index.html → 302" in note and "tcp.stream 0" in note
    assert not any(f["id"] == "AUTH_MULTI_ROUND" for f in s["findings"])
    doc = _doc(keys=True)
    assert {(r["protocol"], r["server_port"]): r["flows"] for r in doc["other_traffic"]["by_protocol"]} == \
        {("TLS", 443): 4}


def test_without_keys_the_other_programs_connections_are_left_out_by_their_tls_fingerprint():
    keyed, keyless = _doc(keys=True)["sessions"], _doc(keys=False)["sessions"]
    assert [c["connection"] for c in keyless[0]["connections"]] == [c["connection"] for c in keyed[0]["connections"]]
    phases = {p["phase"]: p["status"] for p in keyless[0]["phases"]}
    assert phases["downloader"] == "absent" and phases["tls-handshake"] == "ok"
    [note] = [n for n in keyless[0]["notes"] if "another program" in n]
    assert "4 TLS connection(s)" in note
    # naming the gateway does not make the browser's visit a session
    assert len(_doc(keys=False, gateways=[GatewaySpec.parse("198.18.0.1:443")])["sessions"]) == 1


@pytest.mark.parametrize("ua, browser", [
    ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", True),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
     "Safari/537.36", True),
    ("Open AnyConnect VPN Agent v9.01-3", False), ("AnyConnect Windows 4.10.07073", False),
    ("Cisco AnyConnect VPN Agent for Windows 4.8.03052", False),
    ("Mozilla/5.0 (Windows NT 10.0) AnyConnect embedded browser", False),  # the client's own SAML browser
    ("curl/7.88.1", False), ("", False),
])
def test_which_user_agents_are_desktop_browsers(ua, browser):
    assert is_browser({"User-Agent": ua} if ua else {}) is browser
