"""DPD_TIMEOUT (error), DPD_RTT_HIGH (warning), KEEPALIVE_MISSING (warning): liveness of the tunnel channels.

Facts (protocol-notes "Timers"): a peer sends DPD-REQ after `dpd` seconds (X-CSTP-DPD / X-DTLS-DPD) with nothing
received and declares the other side dead after 2 × dpd without an answer; a KEEPALIVE is sent after `keepalive`
seconds (X-CSTP-Keepalive / X-DTLS-Keepalive) with nothing sent, so NAT/firewall state stays alive.
Thresholds: DPD_RTT_HIGH when a DPD round trip exceeds DPD_RTT_WARN (1 s); KEEPALIVE_MISSING when the client
sent nothing on a channel for more than 2 × keepalive + 5 s while the channel was up.
"""
from __future__ import annotations

from ..model import Finding

RULE_IDS = ("DPD_TIMEOUT", "DPD_RTT_HIGH", "KEEPALIVE_MISSING")
DPD_RTT_WARN = 1.0


def _channels(session):
    cstp = session.phase("cstp-connect").details or {}
    params = cstp.get("parameters") or {}
    if cstp.get("channel"):
        yield "CSTP", "cstp-connect", cstp["channel"], params.get("dpd"), params.get("keepalive")
    for f in (session.phase("dtls").details or {}).get("flows") or []:
        if f.get("established"):
            yield "DTLS", "dtls", f["channel"], params.get("dtls_dpd") or params.get("dpd"), \
                params.get("dtls_keepalive") or params.get("keepalive")


def check(session, ctx):
    out = []
    for name, phase, ch, dpd, keepalive in _channels(session):
        exchanges = (ch.get("dpd") or {}).get("exchanges") or []
        unanswered = [e for e in exchanges if e.get("rtt") is None]
        # a run of unanswered requests from one side lasting at least 2 × dpd
        if dpd and unanswered:
            for side in ("c2s", "s2c"):
                run = [e for e in unanswered if e["direction"] == side]
                if len(run) >= 2 and run[-1]["ts"] - run[0]["ts"] >= dpd:
                    span = run[-1]["ts"] - run[0]["ts"] + dpd
                    who = "client" if side == "c2s" else "gateway"
                    out.append(Finding(
                        id="DPD_TIMEOUT", severity="error", phase=phase, time=run[0]["ts"],
                        frames=[e["frame"] for e in run][:10],
                        message=f"{len(run)} {name} DPD request(s) from the {who} went unanswered for ~{span:.0f} s "
                                f"(DPD {dpd} s: the peer counts as dead after {2 * dpd} s).",
                        remedy="Traffic between client and gateway stopped in that direction (path loss, NAT or "
                               "firewall state dropped, gateway overloaded); expect a reconnect. Look at what else "
                               "was lost at that time.",
                        evidence={"channel": name, "requests": len(run), "dpd": dpd, "first": run[0]["ts"],
                                  "last": run[-1]["ts"]}))
        slow = [e for e in exchanges if e.get("rtt") is not None and e["rtt"] > DPD_RTT_WARN]
        if slow:
            worst = max(slow, key=lambda e: e["rtt"])
            out.append(Finding(
                id="DPD_RTT_HIGH", severity="warning", phase=phase, time=worst["ts"],
                frames=[worst["frame"], worst["answer_frame"]],
                message=f"{len(slow)} {name} DPD round trip(s) above {DPD_RTT_WARN:g} s (worst {worst['rtt']:.2f} s).",
                remedy="High latency or queueing on the path (or a busy gateway): users will feel it; check the "
                       "path and the gateway's load.",
                evidence={"channel": name, "worst_rtt": worst["rtt"], "count": len(slow)}))
        gap = (ch.get("silent_gaps") or {}).get("c2s")
        if keepalive and gap and gap["seconds"] > 2 * keepalive + 5:
            out.append(Finding(
                id="KEEPALIVE_MISSING", severity="warning", phase=phase, time=gap["from"], frames=[gap["frame"]],
                message=f"The client sent nothing on the {name} channel for {gap['seconds']:.0f} s although the "
                        f"keepalive is {keepalive} s.",
                remedy="The client's keepalives are not sent or are dropped before the capture point; NAT/firewall "
                       "state may expire and the tunnel stall.",
                evidence={"channel": name, "silence": gap, "keepalive": keepalive}))
    return out
