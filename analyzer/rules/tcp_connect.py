"""TCP_CONNECT_FAILED: the client's TCP connections to the gateway that never carried data — its SYNs unanswered,
refused by a reset, rejected by an ICMP error, or answered by a SYN-ACK the client never acknowledged (on the
gateway's side: the answers do not reach the client) (analyzer/attempts.py).

Error when the session has nothing else (the client never reached the gateway: only --gateway makes such a
session, or the capture-wide finding says it); warning when the session also has connections that worked (a
reconnect attempt during an outage, a first try lost). Capture-wide (`capture_wide`): no session, and connections to
port 443 that never connected — the gateway the client could not reach, most likely.
"""
from __future__ import annotations

from ..attempts import describe_parts
from ..model import Finding
from ..phases.tls_handshake import DTLSConnectionSummary, FailedConnectSummary

RULE_IDS = ("TCP_CONNECT_FAILED",)

#: what to do, by how the connects ended (the worst of them: an ICMP error names the device, a reset the service)
REMEDY = {
    "none": "Nothing answered the client's SYNs: something between client and gateway drops TCP to {gw} (a firewall "
            "or ACL, a route, the gateway's interface), or the gateway is down. Capture on the gateway's side to see "
            "whether the SYNs arrive there, and check the gateway's address and port in the client's profile.",
    "reset": "The gateway's address answered with a reset: nothing accepts connections on port {port} there (the VPN "
             "service not enabled on the interface the client reaches, or listening on another port; the daemon not "
             "running), or a firewall resets them. Check the port the gateway listens on against the client's URL.",
    "icmp": "{icmp_from} rejected the connection with an ICMP destination unreachable ({icmp_text}): a router's or "
            "firewall's rule forbids TCP {port} to the gateway there. Look at that device's rules.",
    "unacknowledged": "The gateway answered (SYN-ACK) but its answers never reached the client, which kept sending "
                      "its SYN: the way back from the gateway to the client is broken — asymmetric routing (the "
                      "answer leaves by another path or interface than the SYN came in), a firewall or NAT on the "
                      "way back, or the gateway's route to the client's address.",
}


def _failed(session) -> list[FailedConnectSummary]:
    return [c for c in session.connections if isinstance(c, FailedConnectSummary)]


def _stream(c) -> int:
    return int(c.connection.rsplit(" ", 1)[-1])


def _text(c, t0) -> str:
    return describe_parts(_stream(c), None if t0 is None or c.start is None else c.start - t0, c.syn_frames,
                          c.answer, c.answer_frame, c.accepted, c.icmp if isinstance(c.icmp, dict) else None)


def _how(failed) -> str:
    """The worst answer among ``failed``: icmp (names the device), reset (the service), none."""
    answers = {c.answer for c in failed}
    return next((a for a in ("icmp", "reset", "unacknowledged") if a in answers), "none")


#: the same, when the client also had connections to the gateway that worked (an outage, not a setting)
REMEDY_AT_THAT_TIME = {
    "none": "The gateway did not answer these connections at that time: find what dropped the traffic between client "
            "and gateway then (the outage the findings around them show: a firewall's or NAT's state, a route, the "
            "gateway busy or restarting).",
    "reset": "The gateway's address reset these connections at that time: the VPN service did not accept "
             "connections then (restarting, at its connection limit), or a firewall reset them.",
    "icmp": REMEDY["icmp"],
    "unacknowledged": REMEDY["unacknowledged"],
}


def _remedy(failed, gateway: str, reached: bool = False) -> str:
    how = _how(failed)
    icmp = next((c.icmp for c in failed if isinstance(c.icmp, dict)), {}) or {}
    text = (REMEDY_AT_THAT_TIME if reached else REMEDY)[how]
    return text.format(gw=gateway, port=gateway.rsplit(":", 1)[-1], icmp_from=icmp.get("from"),
                       icmp_text=icmp.get("text"))


def _frames(failed) -> list[int]:
    out = []
    for c in failed:
        out += c.syn_frames[:3]
        if c.answer_frame is not None:
            out.append(c.answer_frame)
    return sorted(set(out))[:20]


def _evidence(failed, gateway: str) -> dict:
    return {"gateway": gateway, "attempts": len(failed),
            "answers": {a: sum(1 for c in failed if c.answer == a) for a in sorted({c.answer for c in failed})},
            "answer": _how(failed),  # the one the message and remedy speak of (the verdict reads it too)
            "connections": [c.connection for c in failed][:20],
            **({"icmp_from": sorted({c.icmp["from"] for c in failed if isinstance(c.icmp, dict)})}
               if any(isinstance(c.icmp, dict) for c in failed) else {})}


def _verb(failed) -> str:
    how = _how(failed)
    many = len(failed) > 1
    return {"none": "got no answer", "reset": "were refused" if many else "was refused",
            "icmp": "were rejected" if many else "was rejected",
            "unacknowledged": "never completed (the gateway's answers did not reach the client)"}[how]


def check(session, ctx):
    failed = _failed(session)
    if not failed:
        return []
    others = [c for c in session.connections if not isinstance(c, FailedConnectSummary)]
    reached = bool(others)
    n = len(failed)
    lead = (f"{n} TCP connection{'s' if n != 1 else ''} from the client to the gateway {session.gateway} "
            f"{'never connected' if any(c.answer != _how(failed) for c in failed) else _verb(failed)}: ")
    msg = lead + "; ".join(_text(c, session.start) for c in failed[:5]) + (" …" if n > 5 else "") + "."
    if reached:
        tls = [c for c in others if not isinstance(c, DTLSConnectionSummary)]
        later = [c for c in tls if c.start is not None and c.start > failed[-1].start]
        if later:
            msg += f" The client connected again on {later[0].connection} at +{later[0].start - session.start:.1f} s."
    else:
        msg += " The client never reached the gateway: no TLS connection to it in the capture."
    return [Finding(id="TCP_CONNECT_FAILED", severity="warning" if reached else "error", phase="tls-handshake",
                    time=failed[0].start, frames=_frames(failed), message=msg,
                    remedy=_remedy(failed, session.gateway, reached), evidence=_evidence(failed, session.gateway))]


def capture_wide(analysis) -> Finding | None:
    """No session in the capture, and connections to port 443 that never connected: the gateway the client could
    not reach, most likely (nothing else in such a capture says which server is the gateway)."""
    if analysis.sessions:
        return None
    rows = [(server, c) for server, c in getattr(analysis, "failed_connects", None) or [] if server.endswith(":443")]
    if not rows:
        return None
    servers = []
    for server, _c in rows:
        if server not in servers:
            servers.append(server)
    failed = [c for _s, c in rows]
    n = len(failed)
    gw = servers[0]
    msg = (f"No VPN session, but {n} TCP connection{'s' if n != 1 else ''} to port 443 never connected: "
           + "; ".join(f"{c.client} → {server} {_text(c, None)}" for server, c in rows[:5])
           + (" …" if n > 5 else "") + ". If "
           + (f"{gw.rsplit(':', 1)[0]} is" if len(servers) == 1 else "one of " + ", ".join(servers[:5]) + " is")
           + " the VPN gateway, the client could not reach it.")
    return Finding(id="TCP_CONNECT_FAILED", severity="warning", time=failed[0].start, frames=_frames(failed),
                   message=msg, remedy=_remedy(failed, gw) + f" To read it as the session: --gateway {gw}.",
                   evidence=_evidence(failed, gw) | {"servers": servers[:20]})
