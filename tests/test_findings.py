"""Findings on the real lab captures: each sample gives exactly the expected findings (ids and severities).

Every rule id is documented in docs/findings.md; the baseline sample gives no error or warning.
"""
from __future__ import annotations

import importlib
import json
import re

import pytest

from analyzer.rules import RULE_MODULES

from .conftest import ROOT
from .helpers import doc

EXPECTED = {
    "baseline": {("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "dtls-blocked": {("warning", "DTLS_NO_RESPONSE"), ("warning", "DTLS_FALLBACK_TLS"), ("info", "DTLS_BACKOFF"),
                     ("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "legacy-dtls": {("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "legacy-dtls09": {("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "group-select": {("info", "GROUP_RESELECTED"), ("info", "AUTH_MULTI_ROUND"),
                     ("info", "SESSION_DISCONNECT")},
    "mtu": {("warning", "MTU_MISMATCH"), ("warning", "MTU_EXCEEDED"), ("info", "MTU_IPV6_TOO_SMALL"),
            ("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "auth-fail": {("error", "AUTH_FAILED")},
    "tls12-rsa": {("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "downloader": {("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "cert-expired": {("error", "TLS_CERT_UNTRUSTED"), ("info", "AUTH_MULTI_ROUND"),
                     ("info", "SESSION_DISCONNECT")},
    "cert-wrong-name": {("error", "TLS_CERT_UNTRUSTED"), ("info", "AUTH_MULTI_ROUND"),
                        ("info", "SESSION_DISCONNECT")},
    "client-cert-request": {("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT"),
                            ("info", "TLS_CLIENT_CERT_REQUESTED"), ("warning", "TLS_CLIENT_CERT_MISSING")},
    "dpd-loss": {("error", "DPD_TIMEOUT"), ("info", "AUTH_MULTI_ROUND"),
                 ("info", "RECONNECT"), ("info", "SESSION_DISCONNECT"), ("warning", "TCP_RETRANSMISSIONS"),
                 ("warning", "TCP_CONNECT_FAILED")},
    "dtls-return-blocked": {("info", "AUTH_MULTI_ROUND"), ("info", "DTLS_BACKOFF"), ("info", "SESSION_DISCONNECT"),
                            ("warning", "DTLS_ANSWERS_LOST"), ("warning", "DTLS_FALLBACK_TLS")},
    "rekey": {("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "dns-outside-tunnel": {("warning", "DNS_OUTSIDE_TUNNEL"), ("info", "AUTH_MULTI_ROUND"),
                           ("info", "SESSION_DISCONNECT")},
    "inner-unreachable": {("warning", "INNER_UNREACHABLE"), ("info", "AUTH_MULTI_ROUND"),
                          ("info", "SESSION_DISCONNECT")},
    "inner-unreachable-adapter": {("warning", "INNER_UNREACHABLE"), ("info", "AUTH_MULTI_ROUND"),
                                  ("info", "SESSION_DISCONNECT")},
    "dtls-not-offered": {("info", "DTLS_NOT_OFFERED"), ("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "inner-unreachable-any": {("warning", "INNER_UNREACHABLE"), ("info", "AUTH_MULTI_ROUND"),
                              ("info", "SESSION_DISCONNECT")},
    "route-outside-tunnel-adapter": {("warning", "TRAFFIC_OUTSIDE_TUNNEL"), ("warning", "SPLIT_TUNNEL_ROUTE_MISSING"),
                                     ("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "two-users-one-address": {("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "route-outside-tunnel": {("warning", "TRAFFIC_OUTSIDE_TUNNEL"), ("warning", "SPLIT_TUNNEL_ROUTE_MISSING"),
                             ("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "tls-inspection": {("warning", "DTLS_PSK_MISMATCH"), ("warning", "DTLS_FALLBACK_TLS"), ("info", "AUTH_MULTI_ROUND"),
                       ("info", "SESSION_DISCONNECT")},
    "middlebox-reset": {("warning", "TCP_RESET_INJECTED"), ("warning", "TCP_CONNECT_FAILED"),
                        ("info", "AUTH_MULTI_ROUND"), ("info", "RECONNECT"), ("info", "SESSION_DISCONNECT")},
    "nat-rebinding": {("error", "DPD_TIMEOUT"), ("info", "AUTH_MULTI_ROUND"),
                      ("info", "RECONNECT"), ("info", "SESSION_DISCONNECT"), ("warning", "DPD_RTT_HIGH"),
                      ("warning", "DTLS_NAT_REBINDING")},
    "reconnect": {("info", "AUTH_MULTI_ROUND"), ("info", "RECONNECT"),
                  ("info", "SESSION_DISCONNECT")},
    # real openconnect against the scripted gateway (replay/), for behaviours only Cisco gateways show
    "scripted/aggauth-v1-fallback": {("info", "DTLS_NOT_OFFERED"),
                                     ("info", "SESSION_DISCONNECT"), ("warning", "AGGAUTH_VERSION_FALLBACK")},
    "scripted/connect-rejected": {("error", "CONNECT_REJECTED")},
    "scripted/connect-unavailable": {("error", "CONNECT_REJECTED")},
    "scripted/dtls-mtu-differs": {("info", "DTLS_BACKOFF"), ("info", "SESSION_DISCONNECT"),
                                  ("warning", "DTLS_FALLBACK_TLS"), ("warning", "DTLS_NO_RESPONSE"),
                                  ("warning", "MTU_MISMATCH")},
    "scripted/mtu-ipv6-small": {("info", "DTLS_NOT_OFFERED"), ("info", "SESSION_DISCONNECT"),
                                ("warning", "MTU_IPV6_TOO_SMALL"), ("warning", "MTU_MISMATCH")},
    "scripted/profile-hash-mismatch": {("info", "DTLS_NOT_OFFERED"),
                                       ("info", "SESSION_DISCONNECT"), ("warning", "PROFILE_HASH_MISMATCH")},
    "scripted/server-cert-hash-mismatch": {("error", "TLS_CERT_HASH_MISMATCH"), ("info", "DTLS_NOT_OFFERED"),
                                           ("info", "SESSION_DISCONNECT")},
    "scripted/tls-alert": {("warning", "TLS_ALERT")},
    "scripted/terminate": {("info", "DTLS_NOT_OFFERED"), ("warning", "SESSION_TERMINATED")},
    "scripted/reconnect-address-changed": {("info", "DTLS_NOT_OFFERED"),
                                           ("info", "RECONNECT"), ("warning", "RECONNECT_ADDRESS_CHANGED")},
    "scripted/profile-missing": {("info", "DTLS_NOT_OFFERED"), ("info", "SESSION_DISCONNECT"),
                                 ("warning", "DOWNLOADER_FAILED"), ("warning", "PROFILE_MISSING")},
    "scripted/dtls-full-handshake": {("error", "DTLS_RESUME_FULL_HANDSHAKE"),
                                     ("info", "SESSION_DISCONNECT"), ("warning", "DTLS_FALLBACK_TLS")},
    "scripted/dtls-source-mismatch": {("info", "DTLS_BACKOFF"),
                                      ("info", "SESSION_DISCONNECT"), ("warning", "DTLS_FALLBACK_TLS"),
                                      ("warning", "DTLS_NO_RESPONSE"), ("warning", "DTLS_SOURCE_MISMATCH")},
    # openconnect frozen (SIGSTOP) by the lab for 17 s: a client that stops sending, see samples/scripted/README.md
    "scripted/keepalive-missing": {("info", "DTLS_NOT_OFFERED"),
                                   ("info", "SESSION_DISCONNECT"), ("warning", "KEEPALIVE_MISSING")},
    # issue #12's real-world captures (lab scenarios and scripted cases)
    "mixed-traffic": {("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "client-cert-chain": {("info", "SESSION_DISCONNECT"), ("info", "TLS_CLIENT_CERT_MISSING"),
                          ("info", "TLS_CLIENT_CERT_REQUESTED")},
    "group-url-unknown": {("error", "GROUP_URL_UNKNOWN")},
    "cisco-ua": {("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "scripted/dtls-cookie": {("info", "SESSION_DISCONNECT")},
    # the gateway's own KEEPALIVE/DPD-REQ over CSTP and DTLS, all answered as they should be: nothing to report
    "scripted/gateway-dpd-keepalive": {("info", "SESSION_DISCONNECT")},
    # HelloVerifyRequests on the client's wire, dropped before its socket: cookie-less retransmissions, CSTP only
    "scripted/dtls-cookie-ignored": {("warning", "DTLS_COOKIE_IGNORED"), ("warning", "DTLS_FALLBACK_TLS"),
                                     ("info", "DTLS_BACKOFF"),
                                     ("info", "SESSION_DISCONNECT")},
    "scripted/login-retry": {("info", "AUTH_MULTI_ROUND"), ("info", "DTLS_NOT_OFFERED"),
                             ("info", "SESSION_DISCONNECT"), ("warning", "AUTH_FAILED")},
    "scripted/login-retry-asa": {("info", "AUTH_MULTI_ROUND"), ("info", "DTLS_NOT_OFFERED"),
                                 ("info", "SESSION_DISCONNECT"), ("warning", "AUTH_FAILED")},
    # SAML single sign-on: completed (the browser's SAML pages are not the downloader), never completed, no browser
    "scripted/saml-external-browser": {("info", "DTLS_NOT_OFFERED"), ("info", "SESSION_DISCONNECT")},
    "scripted/saml-browser-stalled": {("error", "AUTH_SSO_INCOMPLETE")},
    "scripted/saml-no-browser": {("error", "AUTH_SSO_INCOMPLETE")},
    # a client that moved to another address mid-session: one session, its reconnect from the new address
    "client-roams": {("info", "AUTH_MULTI_ROUND"), ("info", "RECONNECT"), ("info", "CLIENT_ADDRESS_CHANGED"),
                     ("info", "SESSION_DISCONNECT")},
    # a client asleep 40 s; the gateway gave the session up: the reconnect's CONNECT refused (401)
    "scripted/sleep-reconnect-refused": {("error", "CONNECT_REJECTED"), ("info", "DTLS_NOT_OFFERED"),
                                         ("info", "TUNNEL_SILENT")},
    # a sleep captured at the gateway, whose own DPD requests go unanswered into it (Cisco-like); reconnect accepted
    # (no DPD_TIMEOUT: the tunnel's DPD is 30 s, and the gateway ended the connection 15 s after its unanswered check)
    "scripted/sleep-gateway-dpd": {("info", "DTLS_NOT_OFFERED"), ("info", "TUNNEL_SILENT"), ("info", "RECONNECT"),
                                   ("info", "SESSION_DISCONNECT")},
    # the same, the sleep longer than the idle timeout the CONNECT answer announced (30 s)
    "scripted/sleep-past-idle-timeout": {("error", "CONNECT_REJECTED"), ("info", "DTLS_NOT_OFFERED"),
                                         ("info", "TUNNEL_SILENT")},
    # a laptop that slept 45 s with the tunnel up: nothing either way, then a reset and a reconnect with its cookie
    "laptop-sleeps": {("info", "AUTH_MULTI_ROUND"), ("info", "TUNNEL_SILENT"), ("info", "RECONNECT"),
                      ("info", "SESSION_DISCONNECT")},
    # the VPN client stopped ~50 s while the computer's other traffic went on: the gateway's DPD unanswered, a reconnect
    "vpn-client-hangs": {("error", "DPD_TIMEOUT"), ("info", "AUTH_MULTI_ROUND"), ("info", "TUNNEL_SILENT"),
                         ("info", "RECONNECT"), ("info", "SESSION_DISCONNECT")},
    # the same at the gateway: the client alone silent, the gateway's data sent again into the silence (no loss)
    "laptop-sleeps-gateway-side": {("info", "AUTH_MULTI_ROUND"), ("info", "TUNNEL_SILENT"), ("info", "RECONNECT"),
                                   ("info", "SESSION_DISCONNECT")},
    # a rekey with X-CSTP-Rekey-Method new-tunnel: two new tunnel connections, at the rekey time, no dropped tunnel
    "rekey-new-tunnel": {("info", "AUTH_MULTI_ROUND"), ("info", "RECONNECT"), ("info", "SESSION_DISCONNECT")},
    # the gateway ended the session at a timer it announced: its session timeout (also after a reconnect, counted
    # from it), its idle timeout; its DISCONNECT, not the user's
    "session-timeout": {("warning", "SESSION_TIMEOUT"), ("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "session-timeout-reconnect": {("warning", "SESSION_TIMEOUT"), ("info", "AUTH_MULTI_ROUND"), ("info", "RECONNECT"),
                                  ("info", "SESSION_DISCONNECT")},
    "idle-timeout": {("warning", "IDLE_TIMEOUT"), ("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    "idle-timeout-gateway-side": {("warning", "IDLE_TIMEOUT"), ("info", "AUTH_MULTI_ROUND"),
                                  ("info", "SESSION_DISCONNECT")},
    # 6 s left of an 8-hour session timeout (X-CSTP-Session-Timeout-Remaining), then the gateway's DISCONNECT
    "scripted/session-timeout-remaining": {("warning", "SESSION_TIMEOUT"), ("info", "DTLS_NOT_OFFERED"),
                                           ("info", "SESSION_DISCONNECT")},
    # a host scan (posture) before the login: completed; never evaluated
    "scripted/hostscan": {("info", "DTLS_NOT_OFFERED"), ("info", "SESSION_DISCONNECT")},
    "scripted/hostscan-stalled": {("error", "HOSTSCAN_INCOMPLETE")},
    # the gateway's answer to the credentials 20 s late (a multi-factor push), or never before the client gave up
    "scripted/auth-mfa-slow": {("warning", "AUTH_SLOW"), ("info", "DTLS_NOT_OFFERED"), ("info", "SESSION_DISCONNECT")},
    "scripted/auth-client-gives-up": {("error", "AUTH_NO_ANSWER")},
    "scripted/connect-slow": {("info", "CONNECT_SLOW"), ("info", "DTLS_NOT_OFFERED"), ("info", "SESSION_DISCONNECT")},
    # a load-balancing director's redirect, then the member: one healthy session
    "scripted/load-balancer-redirect": {("info", "DTLS_NOT_OFFERED"), ("info", "SESSION_DISCONNECT")},
    # the client refuses a certificate sent without its intermediate CA: no session unless the gateway is named
    "cert-chain-missing": set(),
    # the gateway's name resolved only after the resolver gave up on an unanswered AAAA query: 6 s lost
    "dns-slow-aaaa": {("info", "DNS_SLOW"), ("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
    # a captive portal holds the client: nothing of the protocol reaches a gateway, no session unless named
    "captive-portal": set(),
    "captive-portal-firewall": set(),
    # lab samples cut as field captures come (lab/cuts.py): a snapshot length of 128 bytes (pktmon's default), the
    # CSTP tunnel over TLS seen mid-tunnel (the DISCONNECT read from record sizes), a capture filtered to UDP
    "cut/baseline-snaplen-128": {("warning", "CAPTURE_TRUNCATED")},
    "cut/keepalive-dpd-mid-tunnel": {("info", "KEYS_MISSING"), ("info", "SESSION_DISCONNECT")},
    "cut/baseline-udp-only": {("info", "KEYS_MISSING")},
    # through an HTTP proxy: no DTLS tried (info, not the warning of a blocked path)
    "http-proxy": {("info", "AUTH_MULTI_ROUND"), ("info", "DTLS_FALLBACK_TLS"), ("info", "SESSION_DISCONNECT")},
    "http-proxy-auth": {("info", "AUTH_MULTI_ROUND"), ("info", "DTLS_FALLBACK_TLS"), ("info", "SESSION_DISCONNECT")},
    # a router between the peers drops 3 % of the packets both ways: the gateway's DTLS records the client's capture
    # lacks (tests/test_dtls_loss.py holds them to the gateway's capture)
    "both-sides-loss": {("warning", "DTLS_RECORDS_LOST"), ("info", "AUTH_MULTI_ROUND"), ("info", "SESSION_DISCONNECT")},
}


def findings(name: str) -> list[dict]:
    return [f for s in doc(name, show_secrets=False)["sessions"] for f in s["findings"]]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_findings(name):
    """The scripted cases also show which rule each one exists for (see samples/scripted/README.md)."""
    got = {(f["severity"], f["id"]) for f in findings(name)}
    assert got == EXPECTED[name]


#: rule ids no committed capture shows yet (each with the reason); every other id must fire on one of EXPECTED
NOT_YET_ON_A_CAPTURE = {
    "ACFLOW_RULE_ERROR": "a bug in a rule: test_a_failing_rule_is_reported_not_fatal injects one",
    "CAPTURE_GAP": "tested on the hostile corpus (tests/test_corpus.py)",
    "CAPTURE_DAMAGED": "tested on the hostile corpus (tests/test_corpus.py)",
    "ANALYSIS_LIMIT": "tested on the hostile corpus (tests/test_corpus.py)",
    "NO_VPN_SESSION": "capture-wide: tests/test_realworld.py (a keyless capture without any session)",
    "CAPTIVE_PORTAL": "capture-wide on samples/captive-portal and captive-portal-firewall (no session: nothing of "
                      "the protocol gets past the portal), in a session with --gateway: tests/test_captive_portal.py",
    "TLS_CERT_REFUSED": "on samples/cert-chain-missing with --gateway (without it no flow shows the protocol): "
                        "tests/test_cert_refused.py",
    "TLS_HANDSHAKE_STALLED": "on samples/path-mtu-blackhole(-gateway-side) with --gateway (no flow shows the "
                             "protocol without it): tests/test_tls_stalled.py",
}


def test_a_failing_rule_is_reported_not_fatal(monkeypatch):
    """A rule that raises becomes an ACFLOW_RULE_ERROR warning on the session; the other rules still run."""
    import types

    from analyzer import rules
    from analyzer.analyze import analyze_paths, load_keys

    from .conftest import sample

    broken = types.ModuleType("analyzer.rules.broken")
    broken.RULE_IDS = ("X",)
    broken.check = lambda session, ctx: 1 / 0
    real = rules.load_rules
    monkeypatch.setattr(rules, "load_rules", lambda: [broken, *real()])
    d = sample("baseline")
    a = analyze_paths([d / "capture.pcapng"], *load_keys([d / "keys.log"], []))
    ids = [f.id for f in a.sessions[0].findings]
    err = next(f for f in a.sessions[0].findings if f.id == "ACFLOW_RULE_ERROR")
    assert "broken" in err.message and "ZeroDivisionError" in err.message and err.severity == "warning"
    assert "SESSION_DISCONNECT" in ids


def test_every_rule_fires_on_a_real_capture():
    ids = {i for m in RULE_MODULES for i in importlib.import_module(f"analyzer.rules.{m}").RULE_IDS}
    seen = {i for found in EXPECTED.values() for _, i in found}
    assert ids - seen <= set(NOT_YET_ON_A_CAPTURE), sorted(ids - seen - set(NOT_YET_ON_A_CAPTURE))
    assert not seen & set(NOT_YET_ON_A_CAPTURE), "an id now fires on a capture: drop it from NOT_YET_ON_A_CAPTURE"


def test_baseline_has_no_error_or_warning():
    assert not [f for f in findings("baseline") if f["severity"] in ("error", "warning")]


def test_findings_cite_evidence():
    for name in EXPECTED:
        for f in findings(name):
            assert f["message"] and f["remedy"], f
            assert f["frames"] or f["id"] in ("KEYS_MISSING", "DTLS_FALLBACK_TLS"), f
            assert f["time"] is not None or f["id"] == "KEYS_MISSING", f


def test_dtls_backoff_measures_both_schedules():
    f = next(f for f in findings("dtls-blocked") if f["id"] == "DTLS_BACKOFF")
    ev = f["evidence"]
    assert ev["fits"] == "openconnect"
    # measured retransmissions +1, +2, +4 s in each attempt, the second attempt ~72 s after the first
    for attempt in ev["retransmit_intervals"]:
        assert attempt == pytest.approx([1, 2, 4], abs=0.1)
    assert ev["between_attempts"] == pytest.approx([72], abs=2)
    assert ev["anyconnect"]["expected_retransmits"] == [1, 2, 4, 8, 16]
    assert "+1" in f["message"] and "AnyConnect" in f["message"]


def test_mtu_exceeded_reports_truncated_df_packets():
    f = next(f for f in findings("mtu") if f["id"] == "MTU_EXCEEDED")
    assert f["evidence"]["count"] == 3 and f["evidence"]["truncated"] == 3
    assert all(s["df"] and s["length"] == 1328 and s["carried"] == 1034 for s in f["evidence"]["samples"])


def test_every_rule_id_is_documented():
    text = (ROOT / "docs" / "findings.md").read_text()
    ids = {i for m in RULE_MODULES for i in importlib.import_module(f"analyzer.rules.{m}").RULE_IDS}
    documented = set(re.findall(r"^### `([A-Z0-9_]+)`", text, re.M))
    assert ids <= documented, ids - documented


def test_cert_verdicts_name_the_problem():
    wrong = next(f for f in findings("cert-wrong-name") if f["id"] == "TLS_CERT_UNTRUSTED")
    assert wrong["evidence"]["verdicts"] == ["name-mismatch"] and wrong["evidence"]["host"] == "vpn.acflow.test"
    expired = next(f for f in findings("cert-expired") if f["id"] == "TLS_CERT_UNTRUSTED")
    assert expired["evidence"]["verdicts"] == ["expired"]


def test_client_cert_request_lists_the_ca():
    f = next(f for f in findings("client-cert-request") if f["id"] == "TLS_CLIENT_CERT_REQUESTED")
    assert f["evidence"]["ca_names"] == ["CN=acflow lab CA,O=acflow lab"]


def test_nat_rebinding_followed_without_new_handshake():
    nat = json.loads((ROOT / "samples" / "nat-rebinding" / "facts.json").read_text())["nat_rebinding"]
    before, after = f":{nat['port_before']}", f":{nat['port_after']}"
    f = next(f for f in findings("nat-rebinding") if f["id"] == "DTLS_NAT_REBINDING")
    assert f["evidence"]["previous_source"].endswith(before) and f["evidence"]["new_source"].endswith(after)
    s = doc("nat-rebinding", show_secrets=False)["sessions"][0]
    flow = next(x for x in s["phases"][5]["details"]["flows"] if x["client"].endswith(after))
    first = next(x for x in s["phases"][5]["details"]["flows"] if x["client"].endswith(before))
    # acflow keeps decrypting the rebound flow with the session's keys (tshark binds DTLS to the 5-tuple)
    assert flow["continues"] == "udp:" + first["connection"].split()[-1] and flow["undecrypted_records"] == 0
    assert flow["channel"]["inner_packets"]["c2s"] > 0


def test_dpd_loss_reconnect_gap():
    f = next(f for f in findings("dpd-loss") if f["id"] == "RECONNECT")
    assert 5 < f["evidence"]["gap"] < 60


def test_dtls_mtu_differs_says_which_mtu_applies():
    f = next(f for f in findings("scripted/dtls-mtu-differs")
             if f["id"] == "MTU_MISMATCH" and f["severity"] == "warning")
    assert f["evidence"] == {"x_cstp_mtu": 1399, "x_dtls_mtu": 1300, "dtls_established": False}
    assert "X-CSTP-MTU 1399" in f["message"] and "larger" in f["message"]


def test_connect_rejected_reasons():
    assert "401" in findings("scripted/connect-rejected")[0]["message"]
    f = findings("scripted/connect-unavailable")[0]
    assert f["evidence"] == {"status": 503, "reason": "No assigned address"}
