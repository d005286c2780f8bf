"""DPD_TIMEOUT (error), DPD_RTT_HIGH (warning), KEEPALIVE_MISSING (warning): liveness of the tunnel channels.

Facts (protocol-notes "Timers"): a peer sends DPD-REQ after `dpd` seconds (X-CSTP-DPD / X-DTLS-DPD) with nothing
received and declares the other side dead after 2 × dpd without an answer; a KEEPALIVE is sent after `keepalive`
seconds (X-CSTP-Keepalive / X-DTLS-Keepalive) with nothing sent, so NAT/firewall state stays alive.
Thresholds: DPD_RTT_HIGH when a DPD round trip exceeds DPD_RTT_WARN (1 s); KEEPALIVE_MISSING when the client
sent nothing on a channel for more than 2 × keepalive + 5 s while the channel was up.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.cstp_connect import connect_details
from ..phases.dtls import DTLSDetails
from ..phases.inferred import tunnels as inferred_tunnels

RULE_IDS = ("DPD_TIMEOUT", "DPD_RTT_HIGH", "KEEPALIVE_MISSING")
DPD_RTT_WARN = 1.0


def _channels(session):
    cstp = connect_details(session.phase("cstp-connect"))
    params = cstp.parameters if cstp is not None else None
    dpd, keepalive = (params.dpd, params.keepalive) if params else (None, None)
    if cstp is not None and cstp.channel:
        yield "CSTP", "cstp-connect", cstp.channel, dpd, keepalive
    dtls = session.phase("dtls").details
    for f in dtls.flow_list if isinstance(dtls, DTLSDetails) else []:
        if f.established:
            yield "DTLS", "dtls", f.channel, (params.dtls_dpd if params else None) or dpd, \
                (params.dtls_keepalive if params else None) or keepalive


def check(session, ctx):
    out = []
    holes: dict[str, list[float]] = {}  # direction -> times of the TCP data the capture missed (CAPTURE_GAP)
    for c in session.connections:
        for g in getattr(c, "gaps", None) or ():
            if not g.get("snapped"):
                holes.setdefault(g["direction"], []).append(g["ts"])
    for name, phase, ch, dpd, keepalive in _channels(session):
        exchanges = ch.dpd.exchanges
        probes = ch.mtu_probes
        # padded DPD requests (MTU probes) count as liveness checks too when none of them was answered
        requests = sorted(exchanges + (probes if not any(p.get("rtt") is not None for p in probes) else []),
                          key=lambda e: e["ts"])
        # the capture must go on for 2 × dpd after a request before "no answer" means something
        end = max([t for t in (ch.last_frame_ts, session.end, ctx.capture_end) if t is not None] or [None])
        if dpd:
            limit = 2 * dpd
            for side in ("c2s", "s2c"):
                # (an answer on the TLS channel may be in bytes the capture missed: such a request is no evidence)
                back = holes.get("s2c" if side == "c2s" else "c2s", []) if name == "CSTP" else []
                late = [e for e in requests if e["direction"] == side and (
                    (e.get("rtt") is not None and e["rtt"] > limit) or
                    (e.get("rtt") is None and end is not None and end - e["ts"] >= limit
                     and not any(e["ts"] <= t <= e["ts"] + limit for t in back)))]
                if not late:
                    continue
                who = "client" if side == "c2s" else "gateway"
                answered = [e for e in late if e.get("rtt") is not None]
                out.append(Finding(
                    id="DPD_TIMEOUT", severity="error", phase=phase, time=late[0]["ts"],
                    frames=[e["frame"] for e in late][:10],
                    message=f"{len(late)} {name} DPD request(s) from the {who} got no answer within 2 × DPD "
                            f"({limit} s)" + (f"; {len(answered)} answered only after "
                                              f"{max(e['rtt'] for e in answered):.1f} s" if answered else "") +
                            ": the peer counts as dead.",
                    remedy="Traffic between client and gateway stopped in that direction (path loss, NAT or firewall "
                           "state dropped, gateway worker gone); expect a reconnect. Look at what else was lost at "
                           "that time.",
                    evidence={"channel": name, "requests": len(late), "dpd": dpd, "first": late[0]["ts"],
                              "last": late[-1]["ts"], "direction": side}))
        slow = [e for e in exchanges if e.get("rtt") is not None and DPD_RTT_WARN < e["rtt"] <= 2 * (dpd or 1e9)]
        if slow:
            worst = max(slow, key=lambda e: e["rtt"])
            out.append(Finding(
                id="DPD_RTT_HIGH", severity="warning", phase=phase, time=worst["ts"],
                frames=[worst["frame"], worst["answer_frame"]],
                message=f"{len(slow)} {name} DPD round trip(s) above {DPD_RTT_WARN:g} s (worst {worst['rtt']:.2f} s).",
                remedy="High latency or queueing on the path (or a busy gateway): users will feel it; check the "
                       "path and the gateway's load.",
                evidence={"channel": name, "worst_rtt": worst["rtt"], "count": len(slow)}))
        gap = ch.silent_gaps.get("c2s")
        if keepalive and gap and gap["seconds"] > 2 * keepalive + 5:
            out.append(Finding(
                id="KEEPALIVE_MISSING", severity="warning", phase=phase, time=gap["from"], frames=[gap["frame"]],
                message=f"The client sent nothing on the {name} channel for {gap['seconds']:.0f} s although the "
                        f"keepalive is {keepalive} s.",
                remedy="The client's keepalives are not sent or are dropped before the capture point; NAT/firewall "
                       "state may expire and the tunnel stall.",
                evidence={"channel": name, "silence": gap, "keepalive": keepalive}))
    if connect_details(session.phase("cstp-connect")) is None:
        out += _inferred(session)
    return out


def _inferred(session):
    """Without keys: runs of control-size records that got no answer and ended the sender's traffic while the
    peer sent no data any more (analyzer/keyless.py `dead_peer`): DPD requests to a peer gone silent."""
    runs = [("CSTP", "cstp-connect", r) for t in inferred_tunnels(session) if t.estimate is not None
            for r in t.estimate.dead_peer]
    d = session.phase("dtls").details
    for f in d.flow_list if isinstance(d, DTLSDetails) else []:
        if f.estimate and f.estimate.dead_peer:
            runs += [("DTLS", "dtls", r) for r in f.estimate.dead_peer]
    out = []
    for name, phase, r in runs:
        who = "client" if r["direction"] == "c2s" else "gateway"
        out.append(Finding(
            id="DPD_TIMEOUT", severity="error", phase=phase, time=r["first"], frames=list(r["frames"]),
            inferred=True,
            message=f"{r['requests']} {name} DPD request(s) from the {who} got no answer over "
                    f"{r['last'] - r['first']:.1f} s and ended its traffic on the channel: the peer counts as dead "
                    "(inferred from record sizes and timing, no keys).",
            remedy="Traffic between client and gateway stopped in that direction (path loss, NAT or firewall state "
                   "dropped, gateway worker gone); expect a reconnect. Look at what else was lost at that time.",
            evidence={"channel": name, "requests": r["requests"], "first": r["first"], "last": r["last"],
                      "inferred": True}))
    return out
