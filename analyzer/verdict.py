"""The verdict: one plain-language sentence per session, before the details.

It reads the typed session model (phase statuses, tunnel parameters, how the tunnel ended) and the session's
findings (analyzer/rules/) — never packets — and says what the user experienced, the root cause with the frames
that prove it, and the remedy: "Tunnel up over TLS only: UDP 443 is blocked between client and gateway — 8 DTLS
ClientHellos unanswered (frames 26, 38, 47, 52, 110, …); allow UDP 443 from the client to the gateway". A healthy
session gets one line saying so.

`outcome` is one of OUTCOMES (a public JSON value, docs/json-schema.md "verdict"):
  healthy       connected, nothing wrong found
  degraded      connected, but something is wrong (DTLS down, a certificate that fails validation, a reconnect…)
  tunnel-lost   the tunnel died or was ended by the gateway (DPD timeout, TERMINATE, a reconnect that cannot go on)
  failed        no tunnel: TLS, login or CONNECT failed
  inconclusive  not decrypted (no keys) and nothing wrong visible without them: the verdict says what is known
"""
from __future__ import annotations

from dataclasses import field

from .evidence import split_endpoint
from .model import Analysis, Finding, Session
from .phases.cstp_connect import connect_details
from .phases.dtls import DTLSDetails
from .phases.inferred import reading
from .phases.record import Record, record
from .wording import timer

OUTCOMES = ("healthy", "degraded", "tunnel-lost", "failed", "inconclusive")
SEVERITY_RANK = {"error": 3, "warning": 2, "info": 1}

#: short remedies for the verdict line (the finding keeps its full remedy)
SHORT_REMEDY = {
    "AUTH_FAILED": "check the username and password (or second factor) and the authentication server's log for "
                   "this user",
    "AUTH_SLOW": "give the users the time a multi-factor push takes (the client's Authentication Timeout, the "
                 "gateway's timeout for its authentication server), or find why that server is slow",
    "AUTH_NO_ANSWER": "find why the gateway's authentication took so long (its authentication server, a multi-factor "
                      "push nobody approved), and give the client time enough (its Authentication Timeout)",
    "GROUP_URL_UNKNOWN": "give the client the gateway's address without a path, or a group URL the gateway defines",
    "HOSTSCAN_INCOMPLETE": "look at the gateway's host scan and posture (DAP) evaluation of this client",
    "AUTH_SSO_INCOMPLETE": "find where the SAML sign-in stopped: the user, the identity provider's log, the browser's "
                           "way to the identity provider and back",
    "TLS_CERT_UNTRUSTED": "install a certificate the clients trust that names the host they connect to",
    "TLS_CERT_HASH_MISMATCH": "find what presents another certificate between client and gateway (TLS inspection, "
                              "a second gateway behind one name)",
    "TLS_HANDSHAKE_STALLED": "clamp the TCP MSS or let ICMP 'fragmentation needed' through on the path (a path MTU "
                             "black hole), or look at the gateway's TLS service",
    "DTLS_COOKIE_IGNORED": "make the gateway's DTLS answers reach the client's socket (NAT, load balancer, "
                           "asymmetric firewall)",
    "DTLS_ANSWERS_LOST": "let the gateway's UDP answers back to the client (a firewall's or NAT's return path)",
    "DTLS_PSK_MISMATCH": "exempt the gateway from TLS inspection (SSL decryption) on the firewall or proxy in the path",
    "DTLS_SOURCE_MISMATCH": "make the gateway answer DTLS from the address and port the client sends to",
    "DTLS_RESUME_FULL_HANDSHAKE": "find the device between client and gateway that terminates DTLS",
    "DTLS_NAT_REBINDING": "raise the client-side NAT's UDP timeout, or lower the gateway's DPD/keepalive interval",
    "DTLS_RECORDS_LOST": "find where the path between client and gateway loses packets (a capture at the other end: "
                         "--other-side; the client's Wi-Fi or Internet link; a device that polices UDP)",
    "DPD_TIMEOUT": "find what dropped the traffic between client and gateway at that time (path loss, NAT or "
                   "firewall state, the gateway)",
    "MTU_EXCEEDED": "make the client's adapter use the granted MTU and let ICMP 'fragmentation needed' through",
    "RECONNECT_ADDRESS_CHANGED": "make the gateway keep the tunnel address across reconnects",
    "SESSION_TERMINATED": "check the gateway's log for the reason (idle or session timeout, administrator logoff, "
                          "licence)",
    "PATH_DTLS_BLOCKED": "allow UDP 443 from the client to the gateway on the device between the two capture points",
    "PATH_TLS_INTERCEPTED": "exempt the gateway from TLS inspection (SSL decryption) on the firewall or proxy between "
                            "the two capture points",
    "PATH_RESET_INJECTED": "find the firewall, IPS or load balancer between the two capture points that resets the "
                           "connection and exempt the VPN's connections (or raise its idle timeout)",
}


#: what a connected user experiences when this finding is the worst one
CONNECTED_BUT = {
    "DNS_OUTSIDE_TUNNEL": "Connected, but the VPN's internal names do not resolve",
    "INNER_UNREACHABLE": "Connected, but servers inside the tunnel did not answer",
    "TRAFFIC_OUTSIDE_TUNNEL": "Connected, but traffic meant for the VPN went outside the tunnel",
    "SPLIT_TUNNEL_ROUTE_MISSING": "Connected, but the tunnel has no route to an internal server",
    "TLS_CERT_UNTRUSTED": "Connected, but the gateway certificate is not trusted",
    "TLS_CERT_HASH_MISMATCH": "Connected, but the certificate check of the login does not match",
    "MTU_MISMATCH": "Connected, but the tunnel MTU does not fit the path",
    "MTU_EXCEEDED": "Connected, but large packets are lost in the tunnel",
    "MTU_IPV6_TOO_SMALL": "Connected, but the tunnel is too small for IPv6",
    "AUTH_FAILED": "Connected after a rejected login",
    "AUTH_SLOW": "Connected after a slow login",
    "TLS_CLIENT_CERT_MISSING": "Connected without a client certificate",
    "AGGAUTH_VERSION_FALLBACK": "Connected through the legacy login form",
    "KEEPALIVE_MISSING": "Connected, but the client went silent",
    "PROFILE_HASH_MISMATCH": "Connected, but the client profile does not match its manifest",
    "PROFILE_MISSING": "Connected without the client profile",
    "DOWNLOADER_FAILED": "Connected, but the downloader failed",
    "DPD_RTT_HIGH": "Connected, with high latency",
    "DTLS_NAT_REBINDING": "Connected, but a NAT moved the DTLS flow",
    "TCP_RESET_INJECTED": "Connected, but a device on the path reset the tunnel's connection",
    "PATH_RESET_INJECTED": "Connected, but a device between the two capture points reset the tunnel's connection",
    "PATH_TLS_INTERCEPTED": "Connected, but through a device that intercepts the TLS connection",
    "DTLS_PSK_MISMATCH": "Tunnel up over TLS only",
    "PATH_PACKETS_LOST": "Connected, but packets were lost between the two capture points",
    "DTLS_RECORDS_LOST": "Connected, but the tunnel's packets are lost on the way",
    "PATH_MTU_BLACKHOLE": "Connected, but big packets are lost between the two capture points",
}


@record
class SessionVerdict(Record):
    """The session's verdict (analyzer/verdict.py): what the user experienced, why, the proving frames, the remedy."""
    outcome: str = field(metadata={"description": "healthy, degraded, tunnel-lost, failed or inconclusive"})
    text: str = field(metadata={"description": "the one-line verdict, in plain language"})
    experienced: str = field(metadata={"description": "what the user experienced"})
    cause: str | None = field(metadata={"description": "the root cause as the capture shows it"})
    frames: list[int] = field(metadata={"description": "frames that prove the cause"})
    time: float | None = field(metadata={"description": "when it happened (capture epoch seconds)"})
    remedy: str | None = field(metadata={"description": "what to do"})
    findings: list[str] = field(metadata={"description": "ids of the findings the verdict rests on"})
    worst_severity: str | None = field(
        metadata={"description": "the most severe finding of the session (error, warning, info; null: none)"})


def worst_severity(findings: list[Finding]) -> str | None:
    best = max((f.severity for f in findings), key=lambda s: SEVERITY_RANK.get(s, 0), default=None)
    return best


def _frames_text(frames: list[int], limit: int = 5) -> str:
    fs = sorted(set(frames))
    if not fs:
        return ""
    word = "frame" if len(fs) == 1 else "frames"
    return f"{word} " + ", ".join(map(str, fs[:limit])) + (", …" if len(fs) > limit else "")


def _rel(ts: float | None, t0: float | None) -> str:
    if ts is None or t0 is None:
        return ""
    d = ts - t0
    return f"+{d:.1f} s" if d >= 0.1 or d == 0 else f"+{d * 1000:.0f} ms"


def _records_lost_cause(ev: dict) -> str:
    """DTLS_RECORDS_LOST's cause, short: per direction, how many of the sender's records were lost."""
    parts = []
    for direction, sender, receiver in (("s2c", "gateway", "client"), ("c2s", "client", "gateway")):
        d = (ev.get("directions") or {}).get(direction)
        if d:
            parts.append(f"{d['lost']} of the {sender}'s {d['records']} DTLS records ({100 * d['rate']:.1f} %) were "
                         f"lost on their way to the {receiver}")
    return " and ".join(parts) + (" — big ones: the MTU probes went unanswered" if ev.get("mtu_probes_unanswered")
                                  else "")


def _ok_status(ev: dict) -> bool:
    """A TUNNEL_SILENT's reconnect was accepted (a 2xx; older evidence without the status counts as accepted)."""
    status = ev.get("reconnect_status")
    return status is None or 200 <= status < 300


def _why_silent(ev: dict) -> str:
    """What a TUNNEL_SILENT's silence means, by its evidence: awake (its other traffic went on) or not."""
    return ("the computer was awake — other traffic went on —: its VPN client stopped" if ev.get("other_flows")
            else "the computer asleep or offline, or its VPN client stopped")


def _silence_cause(ev: dict) -> str:
    """The first half of a verdict's cause from a TUNNEL_SILENT's evidence: the silence, and the gateway's reset of
    the old connection when there was one (ends with "and " or "then ")."""
    reset = ev.get("reset_frame")
    return ((f"the client sent nothing for {_secs(ev.get('seconds'))} while the gateway went on sending"
             if ev.get("gateway_sent") else f"nothing crossed the tunnel either way for {_secs(ev.get('seconds'))}")
            + f" ({_why_silent(ev)}); "
            + (f"the gateway had ended the connection meanwhile (its reset, frame {reset}) and " if reset
               else "then "))


def _secs(d: float) -> str:
    return f"{d:.1f} s" if d < 120 else f"{d / 60:.1f} min"


def _lower_first(text: str) -> str:
    """Lower-case the first word when it is an ordinary word ("The", "A"), not a name or acronym ("DTLS")."""
    word = text.split(" ", 1)[0]
    if word[:1].isupper() and word.isalpha() and (len(word) == 1 or word[1:].islower()):
        return text[0].lower() + text[1:]
    return text


def _plain(message: str) -> str:
    """A finding's message as a clause: no final period, first letter lower case unless it starts a name."""
    return _lower_first(message.strip().rstrip("."))


def _short_remedy(f: Finding) -> str | None:
    if f.id in SHORT_REMEDY:
        return SHORT_REMEDY[f.id]
    r = (f.remedy or "").strip()
    if not r:
        return None
    cut = r.find(". ")
    return _lower_first((r[:cut] if cut > 0 else r).rstrip("."))


def _line(experienced: str, cause: str | None, frames: list[int], remedy: str | None, after: str = "") -> str:
    """"experienced: cause (frames …)after; remedy"."""
    text = experienced
    if cause:
        text += f": {cause}"
    ft = _frames_text(frames)
    if ft:
        text += f" ({ft})"
    text += after
    if remedy:
        text += f"; {remedy}"
    return text


def _verdict(outcome, experienced, cause, frames, time, remedy, used, s, after: str = "") -> SessionVerdict:
    frames = sorted(set(frames))
    return SessionVerdict(outcome=outcome, text=_line(experienced, cause, frames, remedy, after),
                          experienced=experienced, cause=cause + after if cause else cause, frames=frames, time=time,
                          remedy=remedy, findings=used, worst_severity=worst_severity(s.findings))


def _timed_out(f: Finding, s: Session, first) -> SessionVerdict:
    """The verdict of a session the gateway ended at its session or idle timeout (analyzer/rules/gateway_timeout.py)."""
    ev = f.evidence
    at = _rel(f.time, s.start)
    used = [f.id] + (["SESSION_TERMINATED"] if first("SESSION_TERMINATED") is not None else [])
    if f.id == "SESSION_TIMEOUT":
        whole, left = ev.get("session_timeout"), ev.get("remaining")
        if left is not None and left != whole:
            said = (f"its session timeout (X-CSTP-Session-Timeout {timer(whole)}) having {timer(left)} left at "
                    "that CONNECT (X-CSTP-Session-Timeout-Remaining)" if whole else
                    f"its session timeout having {timer(left)} left at that CONNECT "
                    "(X-CSTP-Session-Timeout-Remaining)")
        else:
            said = f"its session timeout being {timer(whole or left or 0)} (X-CSTP-Session-Timeout)"
        cause = (f"the gateway disconnected it {_secs(ev.get('elapsed') or 0)} after the CONNECT, {said}: the user "
                 "has to log in again")
        return _verdict("tunnel-lost", f"Session ended at the gateway's session timeout at {at}", cause, f.frames,
                        f.time, "expected if sessions are limited to that time; otherwise raise the maximum connect "
                        "time (ASA/FTD vpn-session-timeout, ocserv session-timeout)", used, s)
    cause = (f"the gateway disconnected it after {_secs(ev.get('idle') or 0)} without a packet inside the tunnel, its "
             f"idle timeout being {timer(ev.get('idle_timeout') or 0)} (X-CSTP-Idle-Timeout)")
    return _verdict("tunnel-lost", f"Tunnel ended by the gateway as idle at {at}", cause, f.frames, f.time,
                    "expected for an unused tunnel; otherwise raise the idle timeout (ASA/FTD vpn-idle-timeout, "
                    "ocserv idle-timeout)", used, s)


def judge(s: Session) -> SessionVerdict:
    """The verdict of one session whose findings are set (analyzer.rules.apply_rules)."""
    by: dict[str, list[Finding]] = {}
    for f in s.findings:
        by.setdefault(f.id, []).append(f)

    def first(fid: str) -> Finding | None:
        return by[fid][0] if fid in by else None

    # a RECONNECT that is a rekey the gateway asked for (evidence `rekey`: analyzer/rules/reconnect.py) is no
    # dropped tunnel: the verdict reads the others only
    dropped = next((f for f in by.get("RECONNECT", []) if not f.evidence.get("rekey")), None)

    status = {p.phase: p.status for p in s.phases}
    cx = connect_details(s.phase("cstp-connect"))
    params = cx.parameters if cx is not None and cx.parameters else None
    dd = s.phase("dtls").details
    dtls = dd if isinstance(dd, DTLSDetails) else DTLSDetails()
    cstp = status.get("cstp-connect")
    connected = cstp in ("ok", "before-capture", "not-captured")
    decrypted = cstp not in ("undecrypted",)

    # -- a capture that cut the packets short: what they held is not known ---------------------------------------
    cut = first("CAPTURE_TRUNCATED")
    if cut is not None and cstp == "not-captured" and status.get("dtls") in ("not-captured", "absent",
                                                                             "incomplete", None):
        snap = cut.evidence.get("snaplen")
        return _verdict("inconclusive", "Cannot tell from this capture",
                        f"it kept only the first {snap} bytes of each packet (a snapshot length): the handshakes, "
                        "the login and the tunnel cannot be read", cut.frames, cut.time,
                        "capture again with whole packets (tcpdump -s 0, pktmon --pkt-size 0)", ["CAPTURE_TRUNCATED"],
                        s)

    # -- a guest network's sign-in page held the client (keys or none: the portal speaks in the clear) -------------
    portal = first("CAPTIVE_PORTAL")
    if portal is not None and portal.severity == "error":
        item = portal.evidence
        first_answer = (item.get("answers") or [{}])[0]
        cause = (f"{first_answer.get('request')} was answered {first_answer.get('status')}"
                 + (f" → {first_answer['location']}" if first_answer.get("location") else "")
                 + f" by the portal {item.get('portal')}"
                 + ("; its DNS sent the gateway's name to the portal too" if item.get("dns") else
                    "; the network let nothing else through"))
        return _verdict("failed", "Could not connect: the network holds the client at a captive portal", cause,
                        portal.frames, portal.time, "sign in on the portal's page in a browser, then connect again",
                        ["CAPTIVE_PORTAL"], s)

    # -- the login's answer never came (keys or none: its timing shows it) -------------------------------------------
    unanswered = first("AUTH_NO_ANSWER")
    if unanswered is not None and unanswered.severity == "error" and not connected \
            and (decrypted or reading(s.phase("cstp-connect"), confident=False) != "ok"):
        ev = unanswered.evidence
        waited = _secs(ev.get("waited") or 0)
        cause = (f"the client gave up after {waited} without the gateway's answer to its credentials — the gateway's "
                 "authentication server (a multi-factor push, RADIUS, LDAP) took longer than the client waits"
                 if ev.get("ended_by") == "client" else
                 f"the gateway closed the connection {waited} after the credentials without answering them")
        return _verdict("failed", "Login not completed: the gateway never answered it", cause, unanswered.frames,
                        unanswered.time, _short_remedy(unanswered), ["AUTH_NO_ANSWER"], s)

    # -- the gateway's TLS handshake never reached the client (keys or none: nothing was sent to decrypt) ---------
    stall = first("TLS_HANDSHAKE_STALLED")
    if stall is not None and not connected:
        ev = stall.evidence
        cause = (f"nothing came after {'its ServerHello' if ev.get('server_hello') else 'the ClientHello'} for "
                 f"{_secs(ev.get('waited') or 0)} — the certificate's full-size packets lost on the way (a path MTU "
                 "black hole), or the gateway's TLS service hung")
        if ev.get("retransmitted"):
            cause = (f"the gateway sent its certificate {ev['retransmitted'] + 1} times, never acknowledged, for "
                     f"{_secs(ev.get('waited') or 0)} — its full-size packets lost on the way to the client (a path "
                     "MTU black hole)")
        used = ["TLS_HANDSHAKE_STALLED"]
        hole = first("PATH_MTU_BLACKHOLE")  # the two captures' proof of which
        frames, remedy = stall.frames, _short_remedy(stall)
        if hole is not None:  # (its frames, or the stalled handshake's when it was seen in the other capture)
            cause, used, remedy = _plain(hole.message), ["PATH_MTU_BLACKHOLE", *used], _short_remedy(hole)
            frames = hole.frames or frames
        return _verdict("failed", "Could not connect: the gateway's TLS handshake never arrived", cause, frames,
                        stall.time, remedy, used, s)

    # -- no tunnel ----------------------------------------------------------------------------------------------
    if decrypted and not connected:
        scan = first("HOSTSCAN_INCOMPLETE")
        if scan is not None and scan.severity == "info":  # the capture ended during the host scan
            return _verdict("inconclusive", "Login still in progress when the capture ended",
                            "the host scan (posture) was still running", scan.frames, scan.time,
                            _short_remedy(scan), ["HOSTSCAN_INCOMPLETE"], s)
        sso = first("AUTH_SSO_INCOMPLETE")
        if sso is not None and sso.severity == "info":  # the capture ended while the user was signing in
            return _verdict("inconclusive", "Login still in progress when the capture ended",
                            "SAML single sign-on was waiting for the user's browser to bring the token back",
                            sso.frames, sso.time, _short_remedy(sso), ["AUTH_SSO_INCOMPLETE"], s)
        unreached = first("TCP_CONNECT_FAILED")
        if unreached is not None and unreached.severity == "error":  # no TCP connection to the gateway at all
            return _unreached(unreached, s)
        for fid, experienced in (("GROUP_URL_UNKNOWN", "Could not log in"),
                                 ("AUTH_SSO_INCOMPLETE", "Login not completed"),
                                 ("HOSTSCAN_INCOMPLETE", "Login not completed: the host scan did not finish"),
                                 ("AUTH_FAILED", "Login failed"),
                                 ("CONNECT_REJECTED", "Logged in, but the gateway refused the tunnel"),
                                 ("TLS_ALERT", "No tunnel: a TLS connection to the gateway failed"),
                                 ("TLS_CERT_REFUSED", "Could not connect: the client refused the gateway "
                                                      "certificate"),
                                 ("TLS_CERT_UNTRUSTED", "Could not connect: the gateway certificate is refused"),
                                 ("DOWNLOADER_FAILED", "No tunnel: the downloader failed")):
            f = first(fid)
            if f is not None and (fid != "AUTH_FAILED" or f.severity == "error" or status.get("user-auth") ==
                                  "failed"):
                cause = _plain(f.message)
                remedy = _short_remedy(f)
                if fid == "AUTH_SSO_INCOMPLETE":
                    waited = f.evidence.get("waited")
                    cause = ("the SAML sign-in in the browser never brought a token back" +
                             (f"; the client gave up after {waited:.1f} s" if isinstance(waited, (int, float))
                              else ""))
                    if f.evidence.get("browser_requests") == 0 and not f.evidence.get("browser_undecrypted") \
                            and isinstance(waited, (int, float)) and waited < 2:
                        cause = "the client gave up at once, without opening a browser for the SAML sign-in"
                    cause, remedy = _sign_in_path(f, cause, remedy)
                if fid == "TLS_CERT_REFUSED":
                    ev = f.evidence
                    cause = ("the gateway sent its certificate without the intermediate CA that issued it "
                             f"({ev.get('issuer')}), and the client could not verify it"
                             if ev.get("chain_includes_issuer") is False and ev.get("issuer") != ev.get("subject")
                             else f"the gateway's certificate is self-signed ({ev.get('subject')}): the client "
                                  "closed the connection right after it"
                             if ev.get("issuer") and ev.get("issuer") == ev.get("subject") else
                             "the client closed the connection right after the gateway's certificate")
                if fid == "HOSTSCAN_INCOMPLETE":
                    ev = f.evidence
                    cause = ("the gateway never finished evaluating the scan (every wait page a refresh page)"
                             if ev.get("waits") and ev.get("refreshes") == ev.get("waits") else
                             "the host scan (posture) did not complete")
                    if isinstance(ev.get("waited"), (int, float)):
                        cause += f"; the client gave up after {ev['waited']:.1f} s"
                if fid == "AUTH_FAILED" and f.evidence.get("gateway_message"):
                    cause = f"the gateway rejected the login (“{f.evidence['gateway_message']}”)"
                return _verdict("failed", experienced, cause, f.frames, f.time, remedy, [fid], s)
        worst = _worst(s.findings)
        failed = next((p for p in s.phases if p.status == "failed"), None)
        experienced = (f"No tunnel: the {failed.phase} phase failed" if failed is not None
                       else "No tunnel: the capture shows no CONNECT")
        if worst is not None and worst.severity != "info":
            return _verdict("failed", experienced, _plain(worst.message), worst.frames, worst.time,
                            _short_remedy(worst), [worst.id], s)
        return _verdict("failed", experienced, failed.summary if failed is not None else None,
                        failed.frames[:5] if failed is not None else [], failed.start if failed else None,
                        None, [], s)

    # -- without keys: a host scan the gateway never finished evaluating (analyzer/rules/hostscan.py, inferred) ------
    scan = first("HOSTSCAN_INCOMPLETE")
    if not decrypted and not connected and scan is not None and scan.inferred:
        ev = scan.evidence
        polled = f"the client asked for the wait page {ev.get('polls')} times, each answered alike"
        if scan.severity == "info":
            return _verdict("inconclusive", "Login still in progress when the capture ended",
                            f"the host scan (posture), most likely, was still being evaluated: {polled} (read without "
                            "keys)", scan.frames, scan.time, _short_remedy(scan), ["HOSTSCAN_INCOMPLETE"], s)
        return _verdict("failed", "Login not completed: the host scan did not finish",
                        f"the gateway never finished evaluating the scan, most likely: {polled}, then the client gave "
                        "up (read without keys)", scan.frames, scan.time, _short_remedy(scan),
                        ["HOSTSCAN_INCOMPLETE"], s)

    # -- without keys: a browser sign-in that did not come back (analyzer/rules/auth_sso.py, inferred) ----------------
    sso = first("AUTH_SSO_INCOMPLETE")
    if not decrypted and not connected and sso is not None and sso.inferred:
        ev = sso.evidence
        if sso.severity == "info":
            cause, remedy = _sign_in_path(sso, "a browser sign-in (SAML single sign-on, most likely) was still going "
                                               "on", _short_remedy(sso))
            return _verdict("inconclusive", "Login still in progress when the capture ended", cause, sso.frames,
                            sso.time, remedy, ["AUTH_SSO_INCOMPLETE"], s)
        cause, remedy = _sign_in_path(sso, f"a browser sign-in (SAML single sign-on, most likely) never came back; "
                                           f"the client gave up after {ev.get('waited') or 0:.1f} s",
                                      _short_remedy(sso))
        return _verdict("failed", "Login not completed", cause + " (read without keys)", sso.frames, sso.time,
                        remedy, ["AUTH_SSO_INCOMPLETE"], s)

    # -- the tunnel died or was ended ----------------------------------------------------------------------------
    if "DPD_TIMEOUT" in by:
        dpds = by["DPD_TIMEOUT"]
        t = min((f.time for f in dpds if f.time is not None), default=None)
        channels = sorted({str(f.evidence.get("channel", "")) for f in dpds if f.evidence.get("channel")})
        sides = {_dpd_side(f) for f in dpds}
        who = ("the client's" if sides == {"c2s"} else "the gateway's" if sides == {"s2c"}
               else "the client's and the gateway's" if sides == {"c2s", "s2c"} else "the")
        cause = (f"{who} dead-peer checks (DPD) over " + " and ".join(channels) + " went unanswered"
                 if channels else f"{who} dead-peer checks (DPD) went unanswered")
        frames = [x for f in dpds for x in f.frames]
        used = ["DPD_TIMEOUT"]
        nat = first("DTLS_NAT_REBINDING")
        if nat is not None:
            cause = (f"DTLS moved to a new client port without a new handshake (NAT rebinding, "
                     f"{_frames_text(nat.frames)}), then {cause}")
            used.append("DTLS_NAT_REBINDING")
        # the gateway's checks sent into a silence of the client's (TUNNEL_SILENT): the client, not the path
        away = next((f for f in by.get("TUNNEL_SILENT", []) if sides == {"s2c"} and t is not None
                     and f.time is not None and f.time <= t <= (f.evidence.get("to") or f.time) + 1.0), None)
        if away is not None and nat is None:
            ev = away.evidence
            if ev.get("reconnect") and _ok_status(ev):
                # the silence explains the checks, and the session came back: interrupted, as a sleep seen from the
                # client is (the gateway's checks into the silence are what a capture at the gateway adds)
                cause = (_silence_cause(ev) + f"{who} dead-peer checks (DPD) went unanswered, and the client "
                         f"reconnected with its cookie ({ev.get('reconnect')})")
                return _verdict("degraded", f"Tunnel interrupted at {_rel(away.time, s.start)}: the client was silent",
                                cause, away.frames + frames, away.time,
                                "look at the client's VPN software at that time (hung, suspended)"
                                if ev.get("other_flows") else
                                "nothing to fix in the VPN if the computer slept or went offline; otherwise look at "
                                "the client's VPN software at that time (hung, suspended)",
                                ["TUNNEL_SILENT", "DPD_TIMEOUT"] + (["RECONNECT"] if dropped else []), s)
            cause += f": the client sent nothing at all for {_secs(ev.get('seconds') or 0)} ({_why_silent(ev)})"
            used.append("TUNNEL_SILENT")
        rc = dropped
        tries = first("TCP_CONNECT_FAILED")
        if rc is not None:
            gap = rc.evidence.get("gap")
            back = max(rc.frames) if rc.frames else None
            after = ""
            if tries is not None:  # reconnect attempts during the outage (analyzer/rules/tcp_connect.py)
                n = tries.evidence.get("attempts") or 1
                answers = tries.evidence.get("answers") or {}
                after = (f"; {n} reconnect attempt{'s' if n != 1 else ''} "
                         + ("got no answer" if set(answers) == {"none"} else "failed") + ","
                         + f" {_frames_text(tries.frames, 3)}")
                used.append("TCP_CONNECT_FAILED")
            after += (f"; the client reconnected {_secs(gap)} after the old connection ended"
                      if isinstance(gap, (int, float)) else "; the client reconnected")
            after += f" (frame {back})" if back else ""
            used.append("RECONNECT")
        else:
            after = "; no reconnect in the capture"
        remedy = (_short_remedy(nat) if nat is not None else
                  "look at the client's VPN software at that time (hung, suspended), and whether the computer slept"
                  if away is not None else SHORT_REMEDY["DPD_TIMEOUT"])
        return _verdict("tunnel-lost", f"Tunnel died at {_rel(t, s.start)}", cause, frames, t, remedy, used, s,
                        after=after)
    silent = first("TUNNEL_SILENT")
    if silent is not None and silent.evidence.get("reconnect") and not _ok_status(silent.evidence):
        ev = silent.evidence
        refused = first("CONNECT_REJECTED")
        answer = " ".join(str(x) for x in (ev.get("reconnect_status"), ev.get("reconnect_reason")) if x)
        idle = ev.get("idle_timeout")
        outlasted = idle and (ev.get("seconds") or 0) >= idle
        cause = (_silence_cause(ev) + ("" if ev.get("reset_frame") else "the gateway ")
                 + f"refused the client's reconnect ({answer}, {ev.get('reconnect')})"
                 + (f" — the silence outlasted its idle timeout, {timer(idle)} —" if outlasted else "")
                 + ": the session is gone, the user has to log in again")
        return _verdict("tunnel-lost", f"Tunnel lost at {_rel(silent.time, s.start)} while the client was silent",
                        cause, silent.frames + (refused.frames if refused is not None else []), silent.time,
                        "log in again; if every sleep ends so, let the gateway keep a silent session longer ("
                        + (f"its idle timeout, {timer(idle)}: ASA/FTD vpn-idle-timeout" if outlasted else
                           "its idle or DPD timeout, the cookie's lifetime") + ")",
                        ["TUNNEL_SILENT"] + (["CONNECT_REJECTED"] if refused is not None else []), s)
    gone = next((f for f in by.get("TUNNEL_SILENT", []) if f.evidence.get("trailing")), None)
    if gone is not None:
        ev = gone.evidence
        cause = (f"the client sent nothing for the last {_secs(ev.get('seconds') or 0)} of the session while the "
                 "gateway went on sending"
                 + (" (its TCP data unanswered, sent again)" if ev.get("retransmitted") else "")
                 + (": the computer was awake — other traffic went on —, its VPN client stopped"
                    if ev.get("other_flows") else
                    ": the computer asleep or offline, its VPN client stopped, or the path to it broken"))
        return _verdict("tunnel-lost", f"Client gone at {_rel(gone.time, s.start)}", cause, gone.frames, gone.time,
                        "look at the client's side at that time: did it sleep, lose its network, or its VPN client "
                        "hang", ["TUNNEL_SILENT"], s)
    timed = first("SESSION_TIMEOUT") or first("IDLE_TIMEOUT")
    if timed is not None:
        return _timed_out(timed, s, first)
    for fid, experienced in (("RECONNECT_ADDRESS_CHANGED", "Tunnel dropped and came back with another address"),
                             ("SESSION_TERMINATED", "Tunnel ended by the gateway")):
        f = first(fid)
        if f is not None:
            exp = f"{experienced} at {_rel(f.time, s.start)}" if f.time is not None else experienced
            return _verdict("tunnel-lost", exp, _plain(f.message), f.frames, f.time, _short_remedy(f), [fid], s)
    bye = first("SESSION_DISCONNECT")
    if bye is not None and bye.evidence.get("direction") == "s2c":
        reason = bye.evidence.get("reason")
        if bye.inferred:
            idle = bye.evidence.get("idle")
            cause = ("a control record from the gateway, answered at once by the client's DISCONNECT (inferred "
                     "from record sizes)" + (f"; no data in the tunnel for {_secs(idle)} before it"
                                             if idle is not None and idle >= 10 else ""))
            # (a capture that starts after the TLS handshake: no key log can decrypt it, the CONNECT answer with
            # the gateway's timers is not in it)
            remedy = ("the gateway's log says why (its session or idle timeout, an administrator's logoff)"
                      if status.get("tls-handshake") == "before-capture" else
                      "supply the key log to see whether its session or idle timeout ran out; else the gateway's "
                      "log says why")
        else:
            cause = (f"the gateway sent DISCONNECT over {str(bye.evidence.get('channel') or 'cstp').upper()}"
                     + (f" (reason {reason!r})" if reason else "")
                     + " — no session or idle timeout it announced explains it")
            remedy = ("the gateway's log says why (an administrator's logoff, a policy or licence change, its "
                      "restart)")
        return _verdict("tunnel-lost", f"Tunnel ended by the gateway at {_rel(bye.time, s.start)}", cause,
                        bye.frames, bye.time, remedy, ["SESSION_DISCONNECT"], s)

    # -- DTLS down: the tunnel runs over TLS only ------------------------------------------------------------------
    if status.get("dtls") == "failed":
        port = (params.dtls_port if params is not None and params.dtls_port else None) or \
            split_endpoint(s.gateway)[1]
        nr = first("DTLS_NO_RESPONSE")
        for fid in ("PATH_TLS_INTERCEPTED", "PATH_DTLS_BLOCKED", "DTLS_PSK_MISMATCH", "DTLS_RESUME_FULL_HANDSHAKE",
                    "DTLS_COOKIE_IGNORED", "DTLS_SOURCE_MISMATCH", "DTLS_ANSWERS_LOST"):
            f = first(fid)
            if f is not None:
                cause = _psk_cause(f) if fid == "DTLS_PSK_MISMATCH" else _plain(f.message)
                also = [x for x in ("DTLS_PSK_MISMATCH", "DTLS_NO_RESPONSE") if x != fid and first(x)]
                return _verdict("degraded", "Tunnel up over TLS only", cause, f.frames, f.time,
                                _short_remedy(f), [fid] + also, s)
        if nr is not None:
            n = nr.evidence.get("hellos") or len(nr.frames)
            cause = (f"UDP {port or 'to the DTLS port'} is blocked between client and gateway — {n} DTLS "
                     f"ClientHello{'s' if n != 1 else ''} unanswered")
            return _verdict("degraded", "Tunnel up over TLS only", cause, nr.frames, nr.time,
                            f"allow UDP {port} from the client to the gateway" if port else
                            "allow the gateway's DTLS port (UDP) from the client to the gateway",
                            ["DTLS_NO_RESPONSE"], s)
        dp = s.phase("dtls")
        return _verdict("degraded", "Tunnel up over TLS only", f"DTLS did not come up ({dp.summary})",
                        sorted(set(dp.frames))[:5], dp.start, "see the DTLS findings", [], s)

    worst = _worst(s.findings)
    if worst is not None and worst.severity in ("error", "warning"):
        rc = dropped
        if worst.id == "TCP_RETRANSMISSIONS" and rc is not None:
            worst = rc
        # (without keys, a finding read from real packets — the VPN adapter's capture — about a tunnel the keyless
        # reading found up says what the user saw as it would with keys)
        # (a slow login read from record timing, before a tunnel the keyless reading is sure of: the same)
        seen_up = connected or (worst.id in CONNECTED_BUT and (not worst.inferred or worst.id == "AUTH_SLOW")
                                and reading(s.phase("cstp-connect"), confident=False) == "ok")
        exp = (CONNECTED_BUT.get(worst.id, "Connected, with a problem") if seen_up
               else "Tunnel seen without keys, with a problem")
        cause = _psk_cause(worst) if worst.id == "DTLS_PSK_MISMATCH" else _plain(worst.message)
        if worst.id == "DTLS_RECORDS_LOST":
            cause = _records_lost_cause(worst.evidence)
        if worst.id == "AUTH_SLOW":
            cause = (f"the gateway answered the credentials after {_secs(worst.evidence.get('waited') or 0)} — its "
                     "authentication server (a multi-factor push waiting for the user, RADIUS, LDAP) that slow")
        if worst.id == "TCP_RESET_INJECTED":  # (the experience says who; the cause says how it shows)
            r = (worst.evidence.get("resets") or [{}])[0]
            cause = (f"the reset of {r.get('connection')} at {_rel(worst.time, s.start)} arrived with TTL "
                     f"{r.get('ttl')} where the {'gateway' if r.get('direction') == 's2c' else 'client'}'s packets "
                     f"arrive with TTL {r.get('expected_ttl')}: not the "
                     f"{'gateway' if r.get('direction') == 's2c' else 'client'}'s")
            if rc is not None:
                later = rc.time - worst.time if rc.time is not None and worst.time is not None else None
                cause += "; the client reconnected" + (f" {_secs(later)} later" if later is not None and later > 0
                                                       else "")
        lead = "the gateway certificate fails strict validation: "
        if worst.id == "TLS_CERT_UNTRUSTED" and cause.startswith(lead):  # the experience already says so
            cause = cause[len(lead):]
        return _verdict("degraded", exp, cause, worst.frames, worst.time, _short_remedy(worst), [worst.id], s)
    rc = dropped
    moved = first("CLIENT_ADDRESS_CHANGED")
    if moved is not None:
        ev = moved.evidence
        cut = ev.get("interrupted")
        cause = (f"its address changed from {ev.get('before')} to {ev.get('after')} (it moved to another network, or "
                 "its NAT changed) and it reconnected with its cookie"
                 + (f" after {_secs(cut)}" if isinstance(cut, (int, float)) else ""))
        return _verdict("degraded", f"Tunnel interrupted at {_rel(moved.time, s.start)}: the client moved", cause,
                        moved.frames, moved.time, "nothing to fix in the VPN if the client moved",
                        ["CLIENT_ADDRESS_CHANGED"] + (["RECONNECT"] if rc is not None else []), s)
    silent = first("TUNNEL_SILENT")
    if silent is not None and silent.evidence.get("reconnect") and _ok_status(silent.evidence):
        cause = _silence_cause(silent.evidence) + f"the client reconnected with its cookie " \
                                                  f"({silent.evidence.get('reconnect')})"
        return _verdict("degraded", f"Tunnel interrupted at {_rel(silent.time, s.start)}: the client was silent",
                        cause, silent.frames, silent.time,
                        "nothing to fix in the VPN if the computer slept or went offline",
                        ["TUNNEL_SILENT"] + (["RECONNECT"] if rc is not None else []), s)
    if rc is not None:
        gap = rc.evidence.get("gap")
        cause = ("the tunnel's connection ended and the client reconnected "
                 + (f"{_secs(gap)} later" if isinstance(gap, (int, float)) else "") + " with its cookie").replace(
            "  ", " ")
        return _verdict("degraded", f"Tunnel dropped at {_rel(rc.time, s.start)} and came back", cause, rc.frames,
                        rc.time, "look at what ended the first connection (a reset, loss on the path)",
                        ["RECONNECT"], s)

    # -- nothing wrong ------------------------------------------------------------------------------------------
    return _healthy(s, status, params, dtls, decrypted)


#: the verdict's remedy for TCP_CONNECT_FAILED, by how the connects ended (analyzer/rules/tcp_connect.py)
#: the verdict's remedy for the first failure on the browser's way to the identity provider (rules/auth_sso.py
#: `path_failure`)
SIGN_IN_REMEDY = {
    "lookup": "make the identity provider's name resolvable from the user's network, before the tunnel is up",
    "connect": "let the browser reach the identity provider (the network's firewall or proxy, a policy on the machine "
               "that blocks traffic until the VPN is up)",
    "tls": "find why the browser refuses the identity provider's TLS (TLS inspection, a missing root CA, the clock)",
}


def _sign_in_path(f: Finding, cause: str, remedy: str | None) -> tuple[str, str | None]:
    """An AUTH_SSO_INCOMPLETE verdict's cause and remedy with what the browser's way to the identity provider shows
    (its evidence from analyzer/phases/sign_in.py): the failure on it, else nothing changed."""
    ev = f.evidence
    kind, problem = ev.get("sign_in_failure"), ev.get("sign_in_problem")
    if kind in SIGN_IN_REMEDY and problem:
        idp = ev.get("identity_provider")
        return (f"the browser could not reach the identity provider{f' {idp}' if idp else ''} — {problem}",
                SIGN_IN_REMEDY[kind])
    return cause, remedy


UNREACHED_REMEDY = {
    "none": "find what drops TCP {port} between client and gateway (firewall, route, the gateway's interface) or "
            "whether the gateway is up",
    "reset": "make the gateway accept the VPN on port {port} of this address, or point the client at the port it "
             "listens on",
    "icmp": "look at the rules of {icmp_from}, which rejects TCP {port} to the gateway",
    "unacknowledged": "find where the gateway's answers to this client are lost on the way back (asymmetric routing, "
                      "a firewall or NAT, the gateway's route to the client)",
}


def _unreached(f: Finding, s: Session) -> SessionVerdict:
    """The verdict of a session that never got a TCP connection to the gateway (TCP_CONNECT_FAILED, error)."""
    ev = f.evidence
    answers = ev.get("answers") or {}
    port = s.gateway.rsplit(":", 1)[-1]
    icmp_from = ", ".join(ev.get("icmp_from") or [])
    n = ev.get("attempts") or 1
    conns = f"{n} TCP connections" if n != 1 else "TCP connection"
    # the answer the finding speaks of (analyzer/rules/tcp_connect.py `_how`; a document without it: the same order)
    how = ev.get("answer") or next((a for a in ("icmp", "reset", "unacknowledged") if answers.get(a)), "none")
    if how == "icmp":
        cause = f"{icmp_from} rejected the client's {conns} to {s.gateway} with ICMP destination unreachable"
    elif how == "unacknowledged":
        cause = (f"the gateway answered the client's {conns} to {s.gateway} (SYN-ACK), but its answers never reached "
                 "the client, which kept sending its SYN")
    elif how == "reset":
        cause = f"the client's {conns} to {s.gateway} {'were' if n != 1 else 'was'} refused (reset)"
    else:
        dur = (s.end - s.start) if s.start is not None and s.end is not None else None
        how, cause = "none", (f"nothing answered the client's {conns} to {s.gateway}"
                              + (f" (SYNs for {_secs(dur)})" if dur else ""))
    return _verdict("failed", "Could not connect to the gateway", cause, f.frames, f.time,
                    UNREACHED_REMEDY[how].format(port=port, icmp_from=icmp_from), ["TCP_CONNECT_FAILED"], s)


def _ended_without_tunnel(s: Session):
    """The first of phases 2-5 the keyless reading found failed, else cstp-connect read absent: a login that ended
    without a tunnel (None when the reading saw a tunnel, or nothing)."""
    read = [p for p in s.phases[1:5] if p.status == "undecrypted" and p.inferred is not None]
    if any(p.phase == "cstp-connect" and p.inferred.status == "ok" for p in read):
        return None
    failed = next((p for p in read if p.inferred.status == "failed"), None)
    if failed is not None:
        return failed
    return next((p for p in read if p.phase == "cstp-connect" and p.inferred.status == "absent"), None)


def _psk_cause(f: Finding) -> str:
    """DTLS_PSK_MISMATCH in the verdict's words (analyzer/rules/dtls_psk.py)."""
    ev = f.evidence
    # (seen from the gateway's side: the TLS from the device, the DTLS from the client)
    moved = (f" (TLS from {ev['tls_client']}, DTLS from {ev['dtls_client']})"
             if ev.get("tls_client") and ev.get("dtls_client") and ev["tls_client"] != ev["dtls_client"] else "")
    if ev.get("verified_with_session_tls") is False:  # the gateway's side: proven with its key log
        return (f"a device between client and gateway intercepts the TLS connection{moved} — the client's DTLS "
                f"Finished (sent {ev.get('finished_sent')} times) does not decrypt with the key of the TLS session "
                "the gateway holds: the client keyed it from another")
    how = ("the DTLS Finished the client keyed from its TLS session" if ev.get("verified_with_client_tls_session")
           else "the client's DTLS Finished")
    issuer = ev.get("certificate_issuer")
    return (f"a device between client and gateway intercepts the TLS connection{moved}, most likely — the gateway "
            f"never accepted {how} (sent {ev.get('finished_sent')} times): it holds another TLS session"
            + (f"; the certificate the client got is issued by {issuer}" if issuer else ""))


def _dpd_side(f: Finding) -> str | None:
    """Whose DPD requests went unanswered: the evidence's direction, else what the message says (a finding made
    without keys may not carry the direction)."""
    d = f.evidence.get("direction")
    if d in ("c2s", "s2c"):
        return d
    return "s2c" if " from the gateway " in f.message else "c2s" if " from the client " in f.message else None


#: among findings of the same severity, these say best what the user experienced (the packets lost, rather than
#: the MTU numbers that explain it)
# (a path finding is the proof from two captures: it goes before what one capture suggests)
FIRST_AMONG_EQUALS = ("MTU_EXCEEDED", "PATH_TLS_INTERCEPTED", "PATH_MTU_BLACKHOLE", "DTLS_PSK_MISMATCH",
                     "PATH_RESET_INJECTED",
                     "PATH_PACKETS_LOST")


_CAPTURE_OWN = ("CAPTURE_TRUNCATED", "CAPTURE_GAP")


def _worst(findings: list[Finding]) -> Finding | None:
    """The most severe finding: the first of the most severe (rules list findings by severity, then time), unless
    one of FIRST_AMONG_EQUALS has that severity. CAPTURE_TRUNCATED and CAPTURE_GAP are the capture's, not the
    session's: never (a healthy session's verdict says the gap)."""
    findings = [f for f in findings if f.id not in _CAPTURE_OWN]
    top = max((SEVERITY_RANK.get(f.severity, 0) for f in findings), default=None)
    if top is None:
        return None
    same = [f for f in findings if SEVERITY_RANK.get(f.severity, 0) == top]
    return next((f for fid in FIRST_AMONG_EQUALS for f in same if f.id == fid), same[0])


def _healthy(s: Session, status: dict, params, dtls: DTLSDetails, decrypted: bool):
    dur = (s.end - s.start) if s.start is not None and s.end is not None else None
    t = s.tunnel
    end = getattr(t, "end", None) if t is not None else None
    dstat = status.get("dtls")
    if dstat in ("ok", "undecrypted") or (dstat == "before-capture" and dtls.established is not False):
        over = "over DTLS"
    elif dstat == "incomplete":
        over = "(the capture ends during the DTLS handshake)"
    elif dstat == "absent" and any(getattr(c, "proxy", None) for c in s.connections):
        over = "over TLS only (through an HTTP proxy: no DTLS)"
    elif dstat == "absent" and status.get("cstp-connect") == "before-capture" and params is None:
        over = "over TLS (no DTLS in the capture)"  # the CONNECT that would say whether DTLS was offered: not seen
    elif dstat == "absent" and not dtls.offered:
        over = "over TLS only (the gateway offers no DTLS)"
    else:
        over = "over TLS"
    if end is not None:
        who = "the client" if end.direction == "c2s" else "the gateway"
        ended = f", ended by {who} ({end.type})"
    else:
        ended = ""
    unseen = status.get("tls-handshake") == "not-captured"  # a capture filtered to UDP, or cut short
    cut = any(f.id == "CAPTURE_TRUNCATED" for f in s.findings)
    if cut and status.get("cstp-connect") in ("not-captured", "undecrypted"):  # no key helps: records were cut
        return _verdict("inconclusive", "No problem seen in what the capture kept",
                        f"DTLS {'up' if dstat in ('undecrypted', 'ok', 'before-capture') else dstat} — the TLS "
                        "connection (login, CONNECT) was cut short by the capture's snapshot length", [], s.start,
                        "capture again with whole packets (tcpdump -s 0, pktmon --pkt-size 0)", ["CAPTURE_TRUNCATED"],
                        s)
    if not decrypted:
        # the keyless reading saw the login end without a tunnel (analyzer/phases/inferred.py): say where, as read
        ended = _ended_without_tunnel(s)
        if ended is not None:
            p = ended
            inf = p.inferred
            return _verdict("inconclusive", "No tunnel seen without keys",
                            f"{p.phase} {inf.status}, read from record sizes and timing ({inf.confidence} "
                            f"confidence): {inf.basis}", list(inf.frames)[:5], p.start,
                            "supply the key log (--keylog) to see why", [], s)
        parts = [f"TLS handshake {status.get('tls-handshake')}"]
        if dstat in ("undecrypted", "ok"):
            parts.append("DTLS up")
        elif any(f.id == "DTLS_NOT_OFFERED" for f in s.findings):  # (inferred: no DTLS while the tunnel ran)
            parts.append("tunnel over TLS only (no DTLS offered, most likely)")
        cause = ", ".join(parts) + " — login and tunnel not decrypted"
        return _verdict("inconclusive", "No problem seen without keys", cause, [], s.start,
                        "supply the key log (--keylog) to see the login and the tunnel", [], s)
    before = status.get("tls-handshake") == "before-capture"
    addr = params.address if params is not None and params.address else None
    what = ("tunnel already up when the capture started," if before else
            "tunnel up (its TLS connection not readable: the capture cut its packets short)," if unseen and cut else
            "tunnel up (its TLS connection is not in the capture)," if unseen else "logged in,")
    what += f" tunnel {addr}" if addr else ("" if before or unseen else " tunnel")
    if dstat != "incomplete":
        what += f" {over}"
    if dur is not None and dur >= 0.1:
        what += f" for {_secs(dur)}"
    text = "Healthy: " + what + ended + (f"; {over[1:-1]}" if dstat == "incomplete" else "")
    gaps = [f for f in s.findings if f.id == "CAPTURE_GAP"]
    if gaps:  # the capture's own loss (packets its host dropped): said, not the session's problem
        n = sum(f.evidence.get("bytes") or 0 for f in gaps)
        frames = sorted({x for f in gaps for x in f.frames})
        text += (f" — but the capture misses {n} bytes of TCP data (frame{'s' if len(frames) > 1 else ''} "
                 f"{', '.join(map(str, frames[:5]))}{', …' if len(frames) > 5 else ''}): what they carried is unknown")
        return SessionVerdict(outcome="healthy", text=text, experienced="Healthy", cause=None, frames=frames[:5],
                              time=s.start, remedy=None, findings=["CAPTURE_GAP"],
                              worst_severity=worst_severity(s.findings))
    return SessionVerdict(outcome="healthy", text=text, experienced="Healthy", cause=None, frames=[],
                          time=s.start, remedy=None, findings=[], worst_severity=worst_severity(s.findings))


def text_with_clock(v: SessionVerdict, t0: float | None, clock) -> str:
    """The verdict's text with the absolute time beside the relative one it names ("Tunnel died at +4.4 s
    (07:13:26.042)"); `clock(ts)` formats a time of day in the report's zone."""
    rel = _rel(v.time, t0)
    c = clock(v.time) if v.time is not None else ""
    if not rel or not c or f"at {rel}" not in v.text:
        return v.text
    return v.text.replace(f"at {rel}", f"at {rel} ({c})", 1)


def apply_verdicts(analysis: Analysis) -> None:
    """Give every session its verdict (after the rules ran)."""
    for s in analysis.sessions:
        try:
            s.verdict = judge(s)
        except Exception as e:  # noqa: BLE001 - a verdict bug must not cost the report
            s.verdict = SessionVerdict(outcome="inconclusive", text=f"No verdict: acflow failed to make one ({e!r})",
                                       experienced="No verdict", cause=None, frames=[], time=None,
                                       remedy="report this as a bug in acflow", findings=[],
                                       worst_severity=worst_severity(s.findings))
