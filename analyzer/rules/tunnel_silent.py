"""TUNNEL_SILENT (info): the client sent nothing on any of the session's flows, with a tunnel up, for longer than a
running client can — its computer slept, lost its network, or its VPN client hung.

Facts (protocol-notes "Timers"): a client sends a DPD request after `dpd` seconds without receiving anything
(X-CSTP-DPD / X-DTLS-DPD) and a KEEPALIVE after `keepalive` seconds without sending; a gateway gives a silent
client up after its own DPD or idle timeout (ocserv: no DPD from the client for a while, then it tears the
connection down; ASA: DPD, vpn-idle-timeout). So with a DPD interval set, a pause of 2 × dpd + 5 s without one
packet either way cannot come from two running peers that reach each other: the client was not running (a laptop
asleep or hibernated), its network was gone (Wi-Fi lost, the cable out — a capture on that interface then sees
nothing either), or its VPN client hung. A capture on the laptop shows nothing in that time; after it, the client's
old connections are typically dead (the gateway answers them with a reset) and it reconnects with its cookie (lab
scenario laptop-sleeps: openconnect stopped and its network cut for 45 s; ocserv dpd = 5 tore the connection down
after 40 s).

Seen at the gateway the gateway's own packets go on into the silence (tunnel traffic, its DPD requests, its TCP data
sent again and again unacknowledged: lab scenario laptop-sleeps-gateway-side); then the client alone is silent, and
a running client sends within the longer of its DPD and keepalive intervals (a keepalive after `keepalive` seconds
without sending) — 2 × that + 5 s is the bound. When the client's flows with other servers had packets in the
silence, its computer was awake: its VPN client stopped (lab scenario vpn-client-hangs).

How: every flow keeps its pauses of QUIET_MIN s or more, either way and per direction (dissectors.flows;
`Session.connections[].silences`, `client_silences`, `client_packets`); the client's silence is where none of the
session's flows had a packet from it, while a tunnel connection was open across it; it is "either way" when the
flows had none from the gateway either for 90 % of it. Without the timers (no keys, or 0) a silence is told when a
reconnect ends it or the gateway's TCP data was sent again in it (UNKNOWN_DPD_SILENCE s or more: the tunnel was lost,
or the client's TCP did not answer), or, either way, when it lasts DEFAULT_DPD_SILENCE s; a client-only silence
without either is not (a client that only listens may send nothing for long).
"""
from __future__ import annotations

from dataclasses import dataclass

from dissectors.flows import QUIET_MIN

from ..evidence import split_endpoint
from ..model import Finding
from ..phases.cstp_connect import answered, connect_details
from ..phases.grouping import to_int
from ..phases.inferred import tunnels as inferred_tunnels

RULE_IDS = ("TUNNEL_SILENT",)
#: seconds of silence that a reconnect ends, when the DPD interval is not known
UNKNOWN_DPD_SILENCE = 20.0
#: seconds of silence without a reconnect, when the DPD interval is not known: 2 × 30 s + 5 (30 s: the DPD
#: interval Cisco's and openconnect's defaults give)
DEFAULT_DPD_SILENCE = 65.0
#: seconds after a silence within which a reconnect is its consequence
RECONNECT_WITHIN = 60.0


def busy_spans(session, client_only: bool = False) -> list[tuple[float, float, int | None, int | None]]:
    """(from, to, first frame, last frame) of every stretch in which a flow of the session had packets (of the
    client's alone with ``client_only``) with no pause of QUIET_MIN s (dissectors.flows) between them."""
    spans = []
    for c in session.connections:
        if client_only:
            p = getattr(c, "client_packets", None)
            if not p:
                continue
            start, end, first, last, pauses = p["first"], p["last"], p["first_frame"], p["last_frame"], \
                getattr(c, "client_silences", None)
        else:
            start, end, first, last, pauses = c.start, c.end, c.first_frame, c.last_frame, getattr(c, "silences", None)
        if start is None or end is None:
            continue
        at, frame = start, first
        for q in pauses or ():
            spans.append((at, q["from"], frame, q["frames"][0]))
            at, frame = q["to"], q["frames"][1]
        spans.append((at, end, frame, last))
    return sorted(spans, key=lambda s: (s[0], s[1]))


def session_silences(session, minimum: float, client_only: bool = False) -> list[tuple]:
    """(from, to, frame before, frame after) of the session's pauses of ``minimum`` s or more in which none of its
    flows had a packet (from the client, with ``client_only``)."""
    out = []
    end = end_frame = None
    for a, b, fa, fb in busy_spans(session, client_only):
        if end is not None and a - end >= minimum:
            out.append((end, a, end_frame, fa))
        if end is None or b > end:
            end, end_frame = b, fb
    return out


def _tunnels(session) -> tuple[dict[str, float], list[tuple]]:
    """The session's tunnel connections: {connection: when it came up} of those a CONNECT 2xx (keyless: the
    reading) or a DTLS handshake brought up, and (connection, time, status, reason) of every answered CONNECT (keyless:
    of every tunnel, status 200), in time order."""
    d = connect_details(session.phase("cstp-connect"))
    up: dict[str, float] = {}
    connects: list[tuple] = []
    if d is not None:
        for c in d.connects:
            if c.status and 200 <= c.status < 300:
                up.setdefault(c.connection, c.response_time or c.time)
            if c.status:
                connects.append((c.connection, c.time, c.status, c.reason))
    else:
        for t in inferred_tunnels(session):
            when = t.established_time or t.connect_time
            up.setdefault(t.connection, when if when is not None else float("-inf"))
            if t.connect_time is not None:
                connects.append((t.connection, t.connect_time, 200, None))
    for c in session.connections:
        if getattr(c, "dtls", False) and c.start is not None and up:
            up.setdefault(c.connection, c.start)
    return up, sorted(connects, key=lambda x: x[1])


def _disconnects(session) -> list[float]:
    """When the session's tunnels were ended by a DISCONNECT or TERMINATE (as far as they are known: the first
    tunnel's CSTP channel, every DTLS flow's, the session's last; without keys the reading's)."""
    out = []
    d = connect_details(session.phase("cstp-connect"))
    dtls = session.phase("dtls").details
    channels = [d.channel if d is not None else None] + [f.channel for f in getattr(dtls, "flow_list", None) or []]
    out += [ch.disconnect.ts for ch in channels if ch is not None and getattr(ch, "disconnect", None) is not None]
    end = getattr(getattr(session, "tunnel", None), "end", None)
    if end is not None and getattr(end, "ts", None) is not None:
        out.append(end.ts)
    if d is None:
        out += [t.end_time for t in inferred_tunnels(session)
                if t.ended_by in ("DISCONNECT", "TERMINATE", "END") and t.end_time is not None]
    return out


def _timers(session) -> tuple[int | None, int | None]:
    """(DPD, keepalive) of the CONNECT answer, the shorter of CSTP's and DTLS's; None: not known (no keys, 0)."""
    d = connect_details(session.phase("cstp-connect"))
    p = d.parameters if d is not None else None
    if p is None:
        return None, None
    dpd = [v for v in (p.dpd, p.dtls_dpd) if v]
    keepalive = [v for v in (p.keepalive, p.dtls_keepalive) if v]
    return (min(dpd) if dpd else None), (min(keepalive) if keepalive else None)


@dataclass
class Silence:
    """A silence `told` finds: from, to, the frames around it, whether the gateway went on sending in it (the
    client alone silent), the tunnel connections open across it, the reconnect after it, the old connection's reset."""
    start: float
    end: float
    frames: list
    gateway_sent: bool
    across: list
    reconnect: tuple | None  # (connection, time, status, reason) of the CONNECT after it
    reset: dict | None
    dpd: int | None
    keepalive: int | None
    retransmitted: list  # tunnel connections whose first TCP retransmission (the gateway's data unanswered) is in it
    others: list  # the client's flows with other servers, packets in it: the computer was awake
    trailing: bool = False  # the client never sent again: the session's last packets are the gateway's, into it


def _busy_within(first, last, quiet, a: float, b: float) -> bool:
    """A flow (first and last packet, its pauses: None when not known) had a packet well inside ``a``..``b``."""
    lo, hi = a + 0.5, b - 0.5
    if hi <= lo or first is None or last is None:
        return False
    if lo < first < hi or lo < last < hi:
        return True
    if first <= lo and last >= hi and quiet is not None:  # across it: busy unless one of its pauses covers it
        return not any(q[0] <= lo and q[1] >= hi for q in quiet)
    return False


def _others(mine, own, gateway: str | None, a: float, b: float) -> list[str]:
    """The client's flows (``mine``: `Context.flows_by_host`'s rows of its address) that are not the session's
    (``own``) and go to other servers than the gateway, with packets well inside ``a``..``b``: the computer was awake.
    (Other servers only: a capture that sees the client's own traffic — at a gateway, the flows of the client's address
    are its NAT's, maybe other users'.)"""
    return sorted({n for n, first, last, pauses, peer in mine
                   if n not in own and peer != gateway and _busy_within(first, last, pauses, a, b)},
                  key=lambda n: (n.split()[0], int(n.split()[-1])))


def _reconnect_after(connects: list[tuple], t: float) -> tuple | None:
    """The first CONNECT (`_tunnels`) within RECONNECT_WITHIN s after ``t``: the silence's consequence."""
    return next(((n, at, st, why) for n, at, st, why in connects if t <= at <= t + RECONNECT_WITHIN), None)


def _retransmitted(across: list, conns: dict, a: float, b: float) -> list:
    """The connections of ``across`` whose first TCP retransmission (the gateway's data unanswered) is in a..b."""
    return [n for n in across if a < (getattr(conns[n], "first_retransmission", None) or a) < b]


def _long_enough(seconds: float, dpd, keepalive, gateway_sent: bool, ended: bool) -> bool:
    """Whether a silence of ``seconds`` is more than a running client allows: it sends within DPD s of hearing
    nothing (either way: ``gateway_sent`` False) or within the longer of DPD and keepalive s (the gateway went on
    sending: a keepalive after keepalive s without sending, and its TCP acknowledges data at once) — 2 × that + 5 s;
    UNKNOWN_DPD_SILENCE s (or the timer + 5 s) suffice when something ``ended`` it (a reconnect after it, the
    gateway's TCP data sent again in it). Without the timers: DEFAULT_DPD_SILENCE either way, never for the client
    alone unless ``ended`` (a client that only listens may be silent a long time)."""
    timer = dpd if not gateway_sent else max((t for t in (dpd, keepalive) if t), default=None)
    if gateway_sent and not timer and not ended:
        return False
    if ended:
        return seconds >= (max(UNKNOWN_DPD_SILENCE, timer + 5) if timer else UNKNOWN_DPD_SILENCE)
    return seconds >= (2 * timer + 5 if timer else DEFAULT_DPD_SILENCE)


def told(session, ctx=None) -> list[Silence]:
    """The silences TUNNEL_SILENT tells (see the module's text): both ways, or the client's alone while the gateway
    went on sending. With the rules' ``ctx``, the client's other flows busy in each (`Silence.others`), read once
    per session (`Context.silences`)."""
    kept = getattr(ctx, "silences", None)
    if kept is not None and id(session) in kept:
        return kept[id(session)]
    out = _told(session, ctx)
    if kept is not None:
        kept[id(session)] = out
    return out


def _told(session, ctx) -> list[Silence]:
    up, connects = _tunnels(session)
    if not up:
        return []
    dpd, keepalive = _timers(session)
    conns = {c.connection: c for c in session.connections}
    both = session_silences(session, QUIET_MIN)
    gateway = split_endpoint(session.gateway)[0]
    mine = (getattr(ctx, "flows_by_host", None) or {}).get(session.client, ())
    byes = _disconnects(session)
    out = []
    for a, b, fa, fb in session_silences(session, QUIET_MIN, client_only=True):
        # a tunnel connection open across it: up before it began, with a packet after it
        across = sorted(n for n, t in up.items() if t <= a and n in conns and (conns[n].end or 0) >= b)
        later = _reconnect_after(connects, b)
        if not across and later is not None and not any(a - 2.0 <= t <= b for t in byes):
            # or one whose last packet began the silence (its end not captured: a capture cut before, a flow the
            # client left) — when a reconnect ends the silence and no DISCONNECT ended that tunnel
            across = sorted(n for n, t in up.items() if t <= a and n in conns and abs((conns[n].end or 0) - a) <= 1.0)
        if not across:
            continue
        # the gateway silent too (a capture on the client's side, or a gateway that waits): either way
        overlap = sum(max(0.0, min(b, y) - max(a, x)) for x, y, _fx, _fy in both)
        gateway_sent = overlap < 0.9 * (b - a)
        if not gateway_sent:  # the both-ways silence's own ends
            a, b, fa, fb = max(((x, y, fx, fy) for x, y, fx, fy in both), key=lambda w: min(b, w[1]) - max(a, w[0]))
            later = _reconnect_after(connects, b)
        retransmitted = _retransmitted(across, conns, a, b)
        if not _long_enough(b - a, dpd, keepalive, gateway_sent, bool(later or retransmitted)):
            continue
        reset = next((x for n in across for x in (getattr(conns[n], "closed", None) or ())
                      if x.get("reason") == "rst" and x.get("direction") == "s2c" and b <= x["ts"] <= b + 5), None)
        others = _others(mine, conns, gateway, a, b)
        out.append(Silence(a, b, [f for f in (fa, fb) if f is not None], gateway_sent, across, later, reset, dpd,
                           keepalive, retransmitted, others))
    gone = _trailing(session, up, conns, dpd, keepalive, byes, gateway, mine)
    return out + ([gone] if gone is not None else [])


def _trailing(session, up, conns, dpd, keepalive, byes, gateway, mine) -> Silence | None:
    """The client's silence that the capture never sees end: from the client's last packet on any flow of the session
    to the session's last packet, the gateway's, sent into it — told with the client's timers (2 × the longer of DPD
    and keepalive + 5 s) or, without them, when the gateway's TCP data was sent again in it (the client's TCP did not
    answer; UNKNOWN_DPD_SILENCE s or more)."""
    mine_spans = busy_spans(session, client_only=True)
    if not mine_spans:
        return None
    a, fa = max(((s[1], s[3]) for s in mine_spans), key=lambda x: x[0])
    # the session's last packet: the gateway's (`end` may leave out its TCP retransmissions, `gateway_packets` not)
    ends = {c.connection: max(((c.end, c.last_frame),) + tuple(
        ((g["last"], g["last_frame"]),) if (g := getattr(c, "gateway_packets", None)) else ()))
        for c in session.connections if c.end is not None}
    if not ends:
        return None
    b, fb = max(ends.values())
    if b - a < QUIET_MIN:
        return None
    across = sorted(n for n, t in up.items() if t <= a and n in ends and ends[n][0] > a + 1.0)
    if not across or any(a - 2.0 <= t <= b for t in byes):
        return None
    retransmitted = _retransmitted(across, conns, a, b)
    if not _long_enough(b - a, dpd, keepalive, True, bool(retransmitted)):
        return None
    others = _others(mine, conns, gateway, a, b)
    return Silence(a, b, [f for f in (fa, fb) if f is not None], True, across, None, None, dpd, keepalive,
                   retransmitted, others, trailing=True)


def _rel(t: float, start: float | None) -> str:
    return f"+{t - start:.1f} s" if start is not None else f"{t:.3f}"


def check(session, ctx):
    out = []
    keyless = connect_details(session.phase("cstp-connect")) is None
    for x in told(session, ctx):
        after = []
        if x.reset is not None:
            after.append(f"the gateway answered the client's next packet on the old connection with a reset (frame "
                         f"{x.reset['frame']}): it had ended the connection meanwhile")
        if x.reconnect and 200 <= x.reconnect[2] < 300:
            n, t = x.reconnect[:2]
            after.append(f"the client reconnected {t - x.end:.1f} s after the silence ({n})")
        elif x.reconnect:
            n, t, status, why = x.reconnect
            idle = _idle_timeout(session, x.start)
            outlasted = (f" — the silence outlasted the idle timeout it had announced (X-CSTP-Idle-Timeout {idle} s), "
                         "the longest it keeps a session whose tunnel is down"
                         if idle and x.end - x.start >= idle else "")
            after.append(f"the client's reconnect {t - x.end:.1f} s after the silence was refused ({status}"
                         + (f" {why}" if why else "") + f", {n}): the gateway had given the session up{outlasted}, "
                         "the user has to log in again")
        elif x.trailing:
            after.append("the client had not come back when the session's last packet was captured")
        elif x.reset is not None:
            after.append("no reconnect in the capture")
        else:
            after.append("the tunnel carried on after it on the same connections")
        span = (f"{x.end - x.start:.0f} s ({_rel(x.start, session.start)} to {_rel(x.end, session.start)}"
                + (", the session's last packet)" if x.trailing else ")"))
        timers = " and ".join(f"{name} {v} s" for name, v in (("DPD is", x.dpd), ("keepalive", x.keepalive)) if v)
        if not x.gateway_sent:
            what = (f"Nothing crossed the tunnel either way for {span}"
                    + (f" although the DPD interval is {x.dpd} s (a running client asks after {x.dpd} s without a "
                       "packet)" if x.dpd else " and a reconnect followed" if x.reconnect else
                       " (longer than 2 × the usual 30 s DPD interval + 5 s)"))
        else:
            what = (f"The client sent nothing on any of the session's flows for {span}"
                    + (f" although {timers}" if timers else "")
                    + ", while the gateway went on sending to it"
                    + (f" (its TCP data unanswered and sent again on {', '.join(x.retransmitted)})"
                       if x.retransmitted else ""))
        if x.others:
            why = (f"the client's computer was awake — {len(x.others)} other flow(s) of its address had packets "
                   f"meanwhile ({', '.join(x.others[:4])}{' …' if len(x.others) > 4 else ''}) —: its VPN client "
                   "stopped (hung, suspended), or the tunnel's packets were blocked on the computer")
        else:
            why = "the client's computer slept, lost its network, or its VPN client stopped"
        out.append(Finding(
            id="TUNNEL_SILENT", severity="info", phase="cstp-connect", time=x.start, frames=x.frames,
            inferred=keyless,
            message=f"{what}: {why}; " + "; ".join(after) + ".",
            remedy="Nothing to fix in the VPN if the computer slept or went offline; otherwise look at the client's "
                   "network link and its VPN client's log at that time (a capture on the client that stopped "
                   "would look the same).",
            evidence={"from": x.start, "to": x.end, "seconds": round(x.end - x.start, 3), "dpd": x.dpd,
                      "keepalive": x.keepalive, "gateway_sent": x.gateway_sent, "connections": x.across,
                      "reset_frame": x.reset["frame"] if x.reset is not None else None,
                      "reconnect": x.reconnect[0] if x.reconnect else None,
                      "reconnect_status": x.reconnect[2] if x.reconnect else None,
                      "reconnect_reason": x.reconnect[3] if x.reconnect else None, "retransmitted": x.retransmitted,
                      "other_flows": x.others[:20], "trailing": x.trailing,
                      "idle_timeout": _idle_timeout(session, x.start)}))
    return out


def _idle_timeout(session, before: float) -> int | None:
    """X-CSTP-Idle-Timeout of the last CONNECT answered 2xx before ``before`` (None: not announced, no keys). A
    Cisco gateway keeps a session whose tunnel is down (its "parent" session) until this idle timer runs out
    (Cisco TAC document 116312): a reconnect after a longer silence finds the session gone."""
    done = answered(session, before)
    return to_int(done[-1].parameters.idle_timeout) if done else None
