"""SAML single sign-on (aggregate-auth `sso-v2-*`), from real openconnect runs against the scripted gateway
(samples/scripted/saml-*: `openconnect --external-browser` with the lab's browser, lab/scripted/browser.py).

Before: the browser's GETs of the gateway's SAML pages were read as the VPN downloader (a completed single sign-on
was 'DEGRADED: the downloader failed: GET /+CSCOE+/saml/sp/login → 302'), and a sign-in that never came back was
'No tunnel: the capture shows no CONNECT' (user-auth 'absent: no auth-reply POST')."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.report.html import render_html
from analyzer.report.json_report import render_json
from replay.sso import open_blob, seal_token

ROOT = Path(__file__).resolve().parent.parent
DONE = ROOT / "samples" / "scripted" / "saml-external-browser"
STALLED = ROOT / "samples" / "scripted" / "saml-browser-stalled"
NO_BROWSER = ROOT / "samples" / "scripted" / "saml-no-browser"


def _doc(d: Path, capture: Path | None = None, show_secrets: bool = False) -> dict:
    keys, info = load_keys([d / "keys.log"], [])
    a = analyze_paths([capture or d / "capture.pcapng"], keys, info)
    return json.loads(render_json(a, version=__version__, show_secrets=show_secrets))


def _token(d: Path) -> str:
    """The token openconnect posted, from its own log (-vvv --dump-http-traffic)."""
    m = re.search(r"<sso-token>([A-Za-z0-9]+)</sso-token>", (d / "client.log").read_text())
    assert m, "openconnect's log holds its auth-reply"
    return m.group(1)


def test_the_sealed_token_round_trip():
    client = ec.generate_private_key(ec.SECP256R1())
    spki = client.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    blob = seal_token(base64.b64encode(spki).decode(), "abcDEF123")
    assert open_blob(client, blob) == "abcDEF123"
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Exception):  # noqa: B017 - another client's key cannot read it (GCM tag)
        open_blob(other, blob)
    with pytest.raises(ValueError):
        seal_token(base64.b64encode(b"not a key").decode(), "x")


def test_real_openconnect_took_the_token_the_gateway_sealed():
    """The scheme of replay/sso.py is the one the client reads: openconnect decrypted it and posted it back."""
    log = (DONE / "client.log").read_text()
    assert re.search(r"Got encrypted SSO token of \d+ bytes", log)
    events = [json.loads(line) for line in (DONE / "gateway-events.jsonl").read_text().splitlines() if line.strip()]
    steps = [e.get("step") for e in events if e["type"] == "request"]
    assert "sso-token" in steps and steps.index("sso-token") > steps.index("sso-login")


def test_a_completed_single_sign_on_is_a_healthy_login():
    doc = _doc(DONE)
    [s] = doc["sessions"]
    assert s["verdict"]["outcome"] == "healthy", s["verdict"]
    phases = {p["phase"]: p for p in s["phases"]}
    auth = phases["user-auth"]
    assert auth["status"] == "ok" and auth["summary"].startswith("SAML single sign-on (external browser), token after")
    sso = auth["details"]["sso"]
    assert (sso["browser_mode"], sso["outcome"], sso["token_cookie_name"]) == ("external", "token-returned",
                                                                              "acSamlv2Token")
    assert sso["login_url"].endswith("/+CSCOE+/saml/sp/login?tgname=ACFLOW-SAML&acsamlcap=v2")
    # the browser's two requests, on TLS connections of their own, as the gateway recorded them
    events = [json.loads(line) for line in (DONE / "gateway-events.jsonl").read_text().splitlines() if line.strip()]
    browser = [(e["method"], e["target"]) for e in events if e["type"] == "request" and e["method"] == "GET"]
    assert [("GET", b["target"]) for b in sso["browser"]] == browser
    assert [b["status"] for b in sso["browser"]] == [302, 200]
    assert sso["browser"][0]["location"].startswith("http://localhost:29786/api/sso/«redacted»?return=")
    assert {b["connection"] for b in sso["browser"]}.isdisjoint({s["connections"][0]["connection"]})
    assert sso["offered_frame"] < sso["token_frame"] and 0 <= sso["waited"] < 5
    assert phases["downloader"]["status"] == "absent"  # the SAML pages are not the downloader
    assert not {f["id"] for f in s["findings"]} & {"DOWNLOADER_FAILED", "AUTH_FAILED", "AUTH_SSO_INCOMPLETE"}
    codes = [e["code"] for e in s["evidence"]]
    assert "aggregate-auth" in codes and "downloader" not in codes


def test_the_token_is_redacted_unless_asked():
    token = _token(DONE)
    assert token not in json.dumps(_doc(DONE))
    assert token in json.dumps(_doc(DONE, show_secrets=True))  # the auth-reply's XML, shown on request
    keys, info = load_keys([DONE / "keys.log"], [])
    a = analyze_paths([DONE / "capture.pcapng"], keys, info)
    html = render_html(a, version=__version__)
    assert token not in html
    blob = re.search(r"/api/sso/([^?\s\"]+)", (DONE / "browser.log").read_text()).group(1)
    assert blob not in html and blob not in json.dumps(_doc(DONE, show_secrets=True))


def test_a_sign_in_that_never_came_back():
    doc = _doc(STALLED)
    [s] = doc["sessions"]
    auth = next(p for p in s["phases"] if p["phase"] == "user-auth")
    assert auth["status"] == "failed"
    sso = auth["details"]["sso"]
    assert sso["outcome"] == "gave-up" and [b["status"] for b in sso["browser"]] == [200]
    # openconnect was interrupted 8 s after it was started (the case's give_up_after): it closed its connection
    assert 7.0 < sso["waited"] < 10.0
    ids = [f["id"] for f in s["findings"]]
    assert "AUTH_SSO_INCOMPLETE" in ids and "AUTH_FAILED" not in ids
    f = next(f for f in s["findings"] if f["id"] == "AUTH_SSO_INCOMPLETE")
    assert f["severity"] == "error" and f["evidence"]["browser_requests"] == 1
    assert s["verdict"]["outcome"] == "failed" and s["verdict"]["experienced"] == "Login not completed"
    assert "never brought a token back" in s["verdict"]["text"]


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap not installed")
def test_a_capture_that_ends_while_the_user_signs_in(tmp_path):
    """Cut 3 s after the sign-in URL: the client was still waiting, which is no failure."""
    doc = _doc(STALLED)
    offered = next(p for p in doc["sessions"][0]["phases"] if p["phase"] == "user-auth")["details"]["sso"]
    cut = tmp_path / "cut.pcapng"
    subprocess.run(["editcap", "-B", _iso(offered["offered_time"] + 3.0), str(STALLED / "capture.pcapng"), str(cut)],
                   check=True, capture_output=True)
    doc = _doc(STALLED, cut)
    [s] = doc["sessions"]
    auth = next(p for p in s["phases"] if p["phase"] == "user-auth")
    assert auth["status"] == "incomplete" and auth["details"]["sso"]["outcome"] == "capture-ended"
    f = next(f for f in s["findings"] if f["id"] == "AUTH_SSO_INCOMPLETE")
    assert f["severity"] == "info"
    assert s["verdict"]["outcome"] == "inconclusive"


def _iso(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_client_without_a_browser_for_the_mode_asked():
    """Embedded-browser mode to openconnect, which has none ('No SSO handler' in its log): it gives up at once."""
    assert "No SSO handler" in (NO_BROWSER / "client.log").read_text()
    [s] = _doc(NO_BROWSER)["sessions"]
    sso = next(p for p in s["phases"] if p["phase"] == "user-auth")["details"]["sso"]
    assert (sso["browser_mode"], sso["outcome"], sso["browser"]) == ("embedded", "gave-up", [])
    assert "single-sign-on-external-browser" in sso["client_auth_methods"]
    f = next(f for f in s["findings"] if f["id"] == "AUTH_SSO_INCOMPLETE")
    assert "without opening a browser" in f["message"] and "external browser" in f["remedy"]
    assert "without opening a browser" in s["verdict"]["text"]
