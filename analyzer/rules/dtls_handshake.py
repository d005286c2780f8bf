"""DTLS_NO_RESPONSE, DTLS_RESUME_FULL_HANDSHAKE, DTLS_NOT_OFFERED: phase 6 handshake problems.

Facts (protocol-notes "DTLS keys", "Failure patterns"; seed document "DTLS Port Blocked"):
* The client sends its DTLS ClientHello to X-DTLS-Port; unanswered hellos (and ICMP port unreachable for them)
  mean UDP is blocked on the path or the gateway does not listen.
* Legacy DTLS is an abbreviated resumption of the session named by X-DTLS-Session-ID; a full handshake instead
  makes openconnect disable DTLS (it suspects a man in the middle).
* A gateway that answers the CONNECT without X-DTLS-Port (or without an X-DTLS-CipherSuite) offers no DTLS:
  the tunnel runs over TLS only (TCP-over-TCP).
"""
from __future__ import annotations

from ..evidence import split_endpoint
from ..model import Finding
from ..phases.cstp_connect import connect_details
from ..phases.dtls import DTLSDetails, DTLSFlowSummary
from ..phases.inferred import reading

RULE_IDS = ("DTLS_NO_RESPONSE", "DTLS_RESUME_FULL_HANDSHAKE", "DTLS_NOT_OFFERED")
NO_RESPONSE_WAIT = 1.0  # seconds of capture after the last hello before it counts as unanswered
#: seconds a tunnel read without keys ran without any DTLS from the client before DTLS_NOT_OFFERED is inferred (a
#: client sends its DTLS ClientHello within a second of the CONNECT answer when the gateway offers DTLS)
DTLS_START_WAIT = 2.0


def _icmp_for(flow: DTLSFlowSummary, ctx) -> list[dict]:
    gw_ip, gw_port = split_endpoint(flow.gateway)
    return [i for i in ctx.icmp_unreachable
            if (i.get("inner") or {}).get("dst") == gw_ip and (i.get("inner") or {}).get("dport") == gw_port
            and flow.start - 1 <= i["ts"] <= flow.end + 1]


def _not_offered_inferred(session, ctx) -> list[Finding]:
    """Without keys: the tunnel came up (its CONNECT answered, read from record sizes) and ran DTLS_START_WAIT
    seconds or more with no DTLS from the client at all — the gateway offered none, most likely."""
    cstp = session.phase("cstp-connect")
    inf = cstp.inferred
    if cstp.status != "undecrypted" or reading(cstp, confident=False) != "ok":
        return []
    if any(getattr(c, "proxy", None) for c in session.connections):
        return []  # (through an HTTP proxy no DTLS is tried: DTLS_FALLBACK_TLS, analyzer/rules/dtls_path.py)
    t = next((t for t in (inf.tunnels or []) if t.established_time is not None), None)
    if t is None:
        return []
    # (still up when the capture ended: the capture's end; else the tunnel's)
    end = t.end_time if t.ended_by is not None else max(x for x in (t.end_time, ctx.capture_end, t.established_time)
                                                         if x is not None)
    if end - t.established_time < DTLS_START_WAIT:
        return []
    up = end - t.established_time
    return [Finding(
        id="DTLS_NOT_OFFERED", severity="info", phase="cstp-connect", time=t.established_time,
        frames=[x for x in (t.connect_frame, t.established_frame) if x], inferred=True,
        message=f"The tunnel ran over TLS only: in the {up:.1f} s it was up on {t.connection} the client sent no DTLS "
                "to the gateway (read without keys). A client starts DTLS within a second of the CONNECT answer "
                "when the gateway offers it (X-DTLS-Port): the gateway offered none, most likely, or none with a "
                "cipher in common — or the client was set not to use DTLS."
                + ("" if ctx.udp_seen else " The capture holds no UDP at all: if a capture filter left UDP out, "
                   "DTLS may have run unseen."),
        remedy="Enable DTLS on the gateway (ASA: 'anyconnect ssl dtls enable'; ocserv: udp-port) unless TLS only is "
               "intended; with the key log the CONNECT answer tells which.",
        evidence={"inferred": True, "tunnel_up_seconds": round(up, 3), "connection": t.connection,
                  "udp_in_capture": ctx.udp_seen})]


def check(session, ctx):
    out = []
    p = session.phase("dtls")
    if p.status == "absent":
        out += _not_offered_inferred(session, ctx)
    flows = p.details.flow_list if isinstance(p.details, DTLSDetails) else []
    cstp = session.phase("cstp-connect")
    cd = connect_details(cstp)
    params = cd.parameters or None if cd is not None else None
    if cstp.status == "ok" and params is not None:
        if not params.dtls_port:
            out.append(Finding(
                id="DTLS_NOT_OFFERED", severity="info", phase="cstp-connect", time=cstp.start,
                frames=sorted(set(cstp.frames))[:2],
                message="The gateway offered no DTLS (no X-DTLS-Port in the CONNECT answer): the tunnel runs over "
                        "TLS/TCP only.",
                remedy="Enable DTLS on the gateway (ASA: 'anyconnect ssl dtls enable'; ocserv: udp-port) unless TLS "
                       "only is intended; TCP-over-TCP suffers badly from loss.",
                evidence={}))
        elif not params.dtls_ciphersuite:
            out.append(Finding(
                id="DTLS_NOT_OFFERED", severity="warning", phase="cstp-connect", time=cstp.start,
                frames=sorted(set(cstp.frames))[:2],
                message="The gateway sent X-DTLS-Port but chose no X-DTLS-CipherSuite: no DTLS cipher in common with "
                        "the client.",
                remedy="Align the DTLS cipher lists of gateway and client (the client offered: "
                       f"{cd.requested.dtls_ciphersuites if cd.requested else None}).",
                evidence={"requested": cd.requested.dtls_ciphersuites if cd.requested else None}))
    # answered by HelloVerifyRequests is answered (the client not using the cookie is DTLS_COOKIE_IGNORED)
    silent = [f for f in flows if f.client_hello_count and not f.server_hello and not f.established
              and not f.hello_verify_requests
              # a client that sent its Finished had the gateway's ServerHello: the capture missed the answer
              and not (isinstance(f.finished, dict) and "c2s" in f.finished)]
    # a capture that ends right after a hello cannot tell whether it would have been answered
    if ctx.capture_end is not None:
        silent = [f for f in silent if ctx.capture_end - f.client_hellos[-1].ts >= NO_RESPONSE_WAIT]
    if silent:
        icmp = [i for f in silent for i in _icmp_for(f, ctx)]
        hellos = [h for f in silent for h in f.client_hellos]
        count = sum(f.client_hello_count for f in silent)
        targets = sorted({f.gateway for f in silent})
        elsewhere = [f for f in flows if all(f is not s for s in silent) and f.client.split(":")[0] ==
                     silent[0].client.split(":")[0] and f.gateway not in targets]
        note = (f"; answers came from {', '.join(sorted({f.gateway for f in elsewhere}))} instead "
                "(see DTLS_SOURCE_MISMATCH)" if elsewhere else "")
        out.append(Finding(
            id="DTLS_NO_RESPONSE", severity="warning", phase="dtls", time=hellos[0].ts if hellos else None,
            frames=[h.frame for h in hellos][:10] + [i["frame"] for i in icmp][:3],
            message=f"{count} DTLS ClientHello(s) to {', '.join(targets)} from {len(silent)} client port(s) got no "
                    "answer from there" + (f"; {len(icmp)} ICMP port-unreachable came back" if icmp else "") + note
                    + ".",
            remedy="UDP to the gateway's DTLS port is blocked or dropped on the path (firewall, NAT, proxy) or the "
                   "gateway does not listen on it: allow UDP " + str(split_endpoint(targets[0])[1])
                   + " end to end. Until then the tunnel falls back to TLS.",
            evidence={"hellos": count, "icmp_unreachable": len(icmp), "flows": [f.connection for f in silent]}))
    for f in flows:
        if f.full_handshake and (f.mode or "").startswith("legacy"):
            out.append(Finding(
                id="DTLS_RESUME_FULL_HANDSHAKE", severity="error", phase="dtls",
                time=f.server_hello.ts if f.server_hello else None,
                frames=[x for x in [f.server_hello.frame if f.server_hello else None] if x],
                message="The DTLS server answered with a full handshake where a resumption of X-DTLS-Session-ID was "
                        "expected.",
                remedy="Something other than the gateway terminates DTLS (a middlebox), or the gateway lost the "
                       "session: openconnect refuses such a handshake (as a possible man in the middle; its GnuTLS "
                       "build fails earlier, for lack of certificate credentials) and stays on TLS.",
                evidence={"flow": f.connection}))
    return out
