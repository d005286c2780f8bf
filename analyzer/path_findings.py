"""Findings from two captures of the same traffic (analyzer/path.py `PathReport`): what happened between the two
capture points.

* PATH_DTLS_BLOCKED (error): a DTLS flow's datagrams one way all passed the first point and none reached the second —
  UDP 443 is dropped between the two (a firewall, a NAT, an ACL), not by the client or the gateway.
* PATH_TLS_INTERCEPTED (error): the client's TLS connection never reached the other point, where instead a TLS
  connection to the same server port with a ClientHello of its own began at that moment — a device in between ends
  the client's TLS and opens its own (TLS inspection): DTLS cannot come up through it.
* PATH_RESET_INJECTED (error): a TCP reset reached one point in the name of a peer whose side never sent it — a
  device between the points (firewall idle timeout, IPS, TCP normaliser) forged it.
* PATH_MTU_BLACKHOLE (error): the packets of a flow one way lost between the points are its big ones, all of them,
  and every smaller one arrived: a link between them with a smaller MTU drops them and its ICMP 'fragmentation
  needed' does not reach the sender (a path MTU black hole).
* PATH_PACKETS_LOST (warning): packets of a flow that passed the first point and never reached the second.
* PATH_PACKETS_ADDED (info): packets (other than resets) that reached the second point without passing the first.
* PATH_MSS_CHANGED (info): a TCP SYN's MSS option differs between the points — a device in between clamps it (the
  largest segment either side sends, so the largest TLS record of the tunnel's CSTP channel, follows the lower one).
* PATH_ADDRESS_TRANSLATED (info): the client (or the gateway) has another address or port at the other point: a
  NAT between them; the report's addresses are each capture's own.
* PATH_NOTHING_IN_COMMON (warning): the two captures share no packet (another time, other traffic, or every TLS
  connection ended in between).

Each finding names its flow as the first capture ("a", the analysed one) shows it. Its `frames` and `time` are that
capture's (times of packets seen in the other one are moved to a's clock by the offset the comparison found); the
evidence names the capture the packets were seen in and their frames there. Pure: no I/O.
"""
from __future__ import annotations

from .model import Finding
from .path import DirectionResult, FlowPair, PathReport
from .timefmt import stamp

RULE_IDS = ("PATH_DTLS_BLOCKED", "PATH_TLS_INTERCEPTED", "PATH_RESET_INJECTED", "PATH_MTU_BLACKHOLE",
            "PATH_PACKETS_LOST", "PATH_PACKETS_ADDED", "PATH_MSS_CHANGED", "PATH_ADDRESS_TRANSLATED",
            "PATH_NOTHING_IN_COMMON")

MAX_FRAMES = 20


def path_findings(report: PathReport, names: dict | None = None,
                  group_of=None) -> list[tuple[FlowPair | None, Finding]]:
    """The findings of a comparison, each with the flow pair it is about (None: about the two captures). ``names``:
    how the messages call the captures ({"a": …, "b": …}; default their names in the report). ``group_of(pair)``:
    what a flow belongs to (a session): one PATH_ADDRESS_TRANSLATED tells the same translation of a group's
    flows."""
    names = names or {"a": report.a.name, "b": report.b.name}
    out: list[tuple[FlowPair | None, Finding]] = []
    intercepted = [p for p in report.pairs if p.paired_by == "tls-intercepted"]
    out.extend((p, _intercepted(p, names, report)) for p in intercepted)
    if report.matched == 0 and report.a.packets and report.b.packets and not intercepted:
        out.append((None, _nothing_in_common(report, names)))
        return out
    translations: dict[tuple, list[FlowPair]] = {}
    for pair in report.pairs:
        for d, res in (("c2s", pair.c2s), ("s2c", pair.s2c)):
            if res is None:
                continue
            out.extend((pair, f) for f in _direction(pair, d, res, names, report))
        if pair.translated():
            key = (group_of(pair) if group_of else None, pair.a.client[0], pair.b.client[0], pair.a.server,
                   pair.b.server[0])
            translations.setdefault(key, []).append(pair)
    out.extend((pairs[0], _translated(pairs, names)) for pairs in translations.values())
    return out


def _nothing_in_common(report: PathReport, names: dict) -> Finding:
    """The two captures share no packet; when their times (each as its own clock says) do not even overlap, the
    gap is said: taken at other times, or a clock is off by more than it."""
    a, b = report.a, report.b
    overlap = None
    if None not in (a.first_ts, a.last_ts, b.first_ts, b.last_ts):
        overlap = min(a.last_ts, b.last_ts) - max(a.first_ts, b.first_ts)  # seconds; negative: the gap
    times = ""
    if overlap is not None and overlap < 0:
        times = (f" Their times do not overlap: {names['a']} from {stamp(a.first_ts)} to {stamp(a.last_ts)}, "
                 f"{names['b']} from {stamp(b.first_ts)} to {stamp(b.last_ts)} ({_span(-overlap)} apart), as "
                 "each capturing machine's clock says — taken at other times, or one of the clocks is off by more "
                 "than that.")
    return Finding(
        id="PATH_NOTHING_IN_COMMON", severity="warning", time=a.first_ts,
        message=f"The two captures share no packet: {names['a']} and {names['b']} were taken at other times, of "
                "other traffic, or something between the two points ended every TLS connection and started its "
                f"own (TLS inspection).{times}",
        remedy="Capture at both points during the same attempt, with no filter that leaves the VPN's traffic out; "
               "if they were, look for a TLS-terminating device between the two points.",
        evidence={"a": names["a"], "b": names["b"], "overlap": overlap})


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _flow_name(pair: FlowPair) -> str:
    f = pair.a or pair.b
    return f"{'TCP' if f.proto == 6 else 'UDP'} {f.label()['client']} → {f.label()['server']}"


def _who(d: str) -> tuple[str, str]:
    return ("client", "gateway") if d == "c2s" else ("gateway", "client")


def _where(frames: list[int], which: str, names: dict) -> str:
    """" (frames … of b)" for packets seen in the other capture; nothing for a's (the finding's frames say them)."""
    if which == "a" or not frames:
        return ""
    return (f" (frame{'s' if len(frames) > 1 else ''} " + ", ".join(map(str, frames[:8]))
            + (", …" if len(frames) > 8 else "") + f" of {names[which]})")


def _in_a(packets: list[dict], which: str, report: PathReport) -> tuple[list[int], float | None]:
    """The frames (of capture a: none when the packets were seen in b) and the time (in a's clock) of packets."""
    ts = packets[0]["ts"]
    if which == "a":
        return [p["frame"] for p in packets[:MAX_FRAMES]], ts
    return [], (ts - report.clock_offset) if report.clock_offset is not None else None


def _seen(fid: str, severity: str, packets: list[dict], which: str, report: PathReport, **kw) -> Finding:
    """A finding about ``packets`` seen in capture ``which``: its frames and time in capture a's terms."""
    frames, ts = _in_a(packets, which, report)
    return Finding(id=fid, severity=severity, time=ts, frames=frames, **kw)


def _evidence(pair: FlowPair, d: str, res: DirectionResult, names: dict, packets: list[dict], which: str) -> dict:
    return {"flow": (pair.a or pair.b).label(), "capture": names[which], "side": which,
            "direction": "client-to-server" if d == "c2s" else "server-to-client",
            "compared": res.sent, "arrived": res.arrived, "count": len(packets),
            "frames": [p["frame"] for p in packets[:MAX_FRAMES]],
            "kinds": sorted({p["kind"] for p in packets})[:10]}


def _is_dtls(pair: FlowPair) -> bool:
    f = pair.a or pair.b
    return f.proto == 17 and 443 in (f.server[1], f.client[1])


def _direction(pair: FlowPair, d: str, res: DirectionResult, names: dict, report: PathReport) -> list[Finding]:
    out = []
    up = res.upstream
    down = "b" if up == "a" else "a"
    sender, receiver = _who(d)
    flow = _flow_name(pair)
    if res.lost:
        frames = [p["frame"] for p in res.lost]
        if _is_dtls(pair) and res.arrived == 0:
            out.append(_seen("PATH_DTLS_BLOCKED", "error", res.lost, up, report,
                phase="dtls",
                message=f"The {sender}'s DTLS never got past the path between the captures: {len(frames)} "
                        f"datagram{'s' if len(frames) != 1 else ''} ({', '.join(sorted({p['kind'] for p in res.lost}))}"
                        f") on {flow} passed {names[up]}{_where(frames, up, names)} and none reached {names[down]}.",
                remedy=f"UDP 443 from the {sender} to the {receiver} is dropped between the two capture points: allow "
                       "it on the firewall, NAT or ACL there (the VPN runs over TLS only meanwhile: slower, and "
                       "sensitive to loss).",
                evidence=_evidence(pair, d, res, names, res.lost, up)))
        elif _too_big(res):
            smallest = min(p["length"] for p in res.lost)
            out.append(_seen("PATH_MTU_BLACKHOLE", "error", res.lost, up, report,
                message=f"Every packet from the {sender} on {flow} with a payload of {smallest} bytes or more — "
                        f"{len(frames)} of them — passed {names[up]}{_where(frames, up, names)} and never reached "
                        f"{names[down]}, while every smaller one did (the largest {res.largest_arrived} "
                        "bytes): a link between the two capture points with a smaller MTU drops them, and its ICMP "
                        "'fragmentation needed' does not reach the sender (a path MTU black hole).",
                remedy="Let ICMP 'fragmentation needed' (type 3 code 4; ICMPv6 'packet too big') through to the sender "
                       f"on the devices between the two points, or clamp the TCP MSS there (to {res.largest_arrived} "
                       "or less for this path); for the tunnel, a lower X-DTLS-MTU / X-CSTP-MTU on the gateway.",
                evidence={**_evidence(pair, d, res, names, res.lost, up), "smallest_lost": smallest,
                          "largest_arrived": res.largest_arrived}))
        else:
            share = f"{len(frames)} of {res.sent}"
            out.append(_seen("PATH_PACKETS_LOST", "warning", res.lost, up, report,
                message=f"{share} packets from the {sender} on {flow} passed {names[up]}{_where(frames, up, names)} "
                        f"and never reached {names[down]}: lost between the two capture points.",
                remedy="Look at the devices and links between the two capture points (interface errors and drops, "
                       "policing, a firewall's or NAT's drops) at that time.",
                evidence=_evidence(pair, d, res, names, res.lost, up)))
    if res.mss is not None:
        before, after = res.mss["upstream"], res.mss["downstream"]
        out.append(Finding(
            id="PATH_MSS_CHANGED", severity="info", time=None,
            frames=[res.syn_frame] if up == "a" and res.syn_frame else [],
            message=f"The {sender}'s {'SYN' if d == 'c2s' else 'SYN-ACK'} on {flow} announced MSS "
                    f"{before if before is not None else 'none'} at "
                    f"{names[up]} and {after if after is not None else 'none'} at {names[down]}: a device between "
                    "the two capture points rewrites it (MSS clamping).",
            remedy="Nothing to do when it is meant: the clamp keeps TCP segments within a smaller link's MTU. When "
                   "the tunnel's MTU findings point at the path, this is the device to look at.",
            evidence={"flow": (pair.a or pair.b).label(), "side": up,
                      "direction": "client-to-server" if d == "c2s" else "server-to-client", **res.mss}))
    resets = [p for p in res.added if "RST" in p["kind"]]
    others = [p for p in res.added if "RST" not in p["kind"]]
    if resets:
        frames = [p["frame"] for p in resets]
        out.append(_seen("PATH_RESET_INJECTED", "error", resets, down, report,
            message=f"A TCP reset on {flow} reached {names[down]}{_where(frames, down, names)} in the {sender}'s "
                    f"name, and {names[up]} never saw the {sender} send it: a device between the two capture points "
                    "forged it.",
            remedy="Find the firewall, IPS or load balancer between the two points that resets connections (an idle "
                   "timeout shorter than the VPN's keepalive, a threat signature, a lost connection state) and "
                   "exempt the VPN's connections or raise its timeout.",
            evidence=_evidence(pair, d, res, names, resets, down)))
    if others:
        frames = [p["frame"] for p in others]
        out.append(_seen("PATH_PACKETS_ADDED", "info", others, down, report,
            message=f"{len(frames)} packet{'s' if len(frames) != 1 else ''} on {flow} reached {names[down]}"
                    f"{_where(frames, down, names)} in the {sender}'s name without passing {names[up]}: sent by a "
                    "device between the two capture points.",
            remedy="Nothing to do unless they disturb the session: a proxy or firewall between the points sends "
                   "these itself.",
            evidence=_evidence(pair, d, res, names, others, down)))
    return out


def _intercepted(pair: FlowPair, names: dict, report: PathReport) -> Finding:
    """The client's connection is the one at the point nearer the client (a when not told), the device's the
    other; frames and time are a's."""
    near = "b" if report.nearer_client == "b" else "a"
    far = "a" if near == "b" else "b"
    client_conn, device_conn = getattr(pair, near).label(), getattr(pair, far).label()
    gap = pair.b.first_ts - pair.a.first_ts - (report.clock_offset or 0.0)  # b's start after a's, in a's clock
    gap = gap if near == "a" else -gap  # the device's start after the client's
    when = (f"{abs(gap) * 1000:.0f} ms {'after' if gap >= 0 else 'before'} it" if report.clock_offset is not None
            else "at that moment")
    relayed = (f", its requests and answers going by in step with the client's ({pair.relay['lined_up']} of "
               f"{pair.relay['turns']} turns)" if pair.relay else "")
    return Finding(
        id="PATH_TLS_INTERCEPTED", severity="error", time=pair.a.first_ts, frames=[pair.a.first_frame],
        phase="tls-handshake",
        message=f"The client's TLS connection {client_conn['client']} → {client_conn['server']} (in {names[near]}) "
                f"never reached {names[far]}: there, a TLS connection {device_conn['client']} → "
                f"{device_conn['server']} with a ClientHello of its own began {when}{relayed} — a device between "
                "the two capture points ends the client's TLS and opens its own to the gateway (TLS inspection).",
        remedy="Exempt the VPN gateway from TLS inspection (SSL decryption) on the firewall or proxy between the two "
               "points: DTLS cannot come up through it (its keys come from the client's own TLS session), and the "
               "gateway sees the device, not the client.",
        evidence={"client_connection": client_conn, "device_connection": device_conn, "a": pair.a.label(),
                  "b": pair.b.label(), "start_gap": gap if report.clock_offset is not None else None,
                  "relay_timing": pair.relay})


MTU_LOST_AT_LEAST = 3  # packets lost, all bigger than any that arrived, for a path MTU black hole
MTU_SIZE_AT_LEAST = 1000  # bytes: the smallest lost payload at least (small packets are not an MTU's)


def _too_big(res: DirectionResult) -> bool:
    """The packets lost one way are the big ones: at least MTU_LOST_AT_LEAST, each longer than every packet that
    arrived, and of MTU_SIZE_AT_LEAST bytes or more."""
    if len(res.lost) < MTU_LOST_AT_LEAST:
        return False
    smallest = min(p["length"] for p in res.lost)
    return smallest >= MTU_SIZE_AT_LEAST and smallest > res.largest_arrived


def _translated(pairs: list[FlowPair], names: dict) -> Finding:
    """One translation (the client's address, the gateway's) of one or more flows."""
    first = pairs[0]
    a, b = first.a, first.b
    parts = []
    if a.client[0] != b.client[0]:
        parts.append(f"the client's address {a.client[0]} in {names['a']} is {b.client[0]} in {names['b']}")
    if a.server[0] != b.server[0]:
        parts.append(f"the gateway's address {a.server[0]} in {names['a']} is {b.server[0]} in {names['b']}")
    ports = sum(1 for p in pairs if p.a.client[1] != p.b.client[1] or p.a.server[1] != p.b.server[1])
    if not parts:
        parts.append("the same addresses, other ports")
    how = ("ports kept" if not ports else f"ports changed on {ports} of them" if ports < len(pairs)
           else "ports changed")
    flows = f"{len(pairs)} flow{'s' if len(pairs) != 1 else ''}"
    return Finding(
        id="PATH_ADDRESS_TRANSLATED", severity="info", time=None, frames=sorted(p.a.first_frame for p in pairs)[:20],
        message="Addresses translated between the two capture points: " + "; ".join(parts)
                + f" ({flows}, {how}): a NAT between them.",
        remedy="Nothing to do: the same flows seen through a NAT. Look for them by these addresses in each capture.",
        evidence={"flows": [{"a": p.a.label(), "b": p.b.label()} for p in pairs[:50]],
                  "translated": [p.translated() for p in pairs[:50]]})
