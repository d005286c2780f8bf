"""DTLS_RECORDS_LOST (warning): records of the tunnel's DTLS channel lost before they reached the capture point.

Fact (RFC 6347 §4.1): a DTLS sender gives every record it sends the next sequence number of its epoch,
retransmissions included, and the number travels in the record header in the clear. A number the capture lacks
between two it holds is a record that did not reach the capture point: lost on the way there (or, rarely, dropped by
the capturing program itself). So one capture measures the loss of the direction coming towards it, with keys or
without: on the client's side the gateway's records lost on the way down, on the gateway's side the client's lost on
the way up (a capture between the two, on a router, sees both). TCP retransmits what it loses and TCP_RETRANSMISSIONS
counts it; DTLS never does, and until now nothing in one capture showed its loss — a tunnel losing 3 % of its
packets both ways read as healthy (lab sample `both-sides-loss`).

What counts (`DTLSFlowSummary.records_missing`): numbers skipped by a jump within an epoch, less those that came
late (reordered); a new epoch's numbering is no loss. A run skipped across more than OUTAGE_S of silence is an
interruption (a laptop asleep, a path down: TUNNEL_SILENT, DPD_TIMEOUT tell those), counted apart and left out of
the rate. Threshold as TCP_RETRANSMISSIONS': at least MIN_LOST records and LOSS_RATE of the direction's.

Warning when one direction lost them (the other, the capture's own end's, lost none); information when both did —
a capture taken between the two (a router) sees both ways' loss, but so does a capture that dropped packets itself
— or when the capture also missed TCP data of the session (CAPTURE_GAP) or the capturing program reported packets
dropped (CAPTURE_DROPPED): its own holes then explain some of them.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.dtls import DTLSDetails
from ..phases.record import UNSET
from .capture_quality import capture_holes

RULE_IDS = ("DTLS_RECORDS_LOST",)

MIN_LOST = 3  # records lost before it is a finding
LOSS_RATE = 0.01  # of the direction's records
OUTAGE_S = 5.0  # a run of numbers skipped across a longer silence is an interruption, not loss

_WHO = {"c2s": ("client", "gateway"), "s2c": ("gateway", "client")}


def lost(missing) -> tuple[int, int, list, int]:
    """(records lost, records skipped in interruptions, the gaps counted as loss (those kept), how many gaps are
    loss) of one direction's `DTLSRecordsMissing`. The gaps beyond the first ones kept are counted as loss (their
    spans are not known)."""
    listed = missing.first_gaps or []
    breaks = [g for g in listed if g.time - g.before > OUTAGE_S]
    counted = [g for g in listed if g.time - g.before <= OUTAGE_S]
    outage = sum(g.missing for g in breaks)
    return max(0, missing.missing - outage), outage, counted, missing.gaps - len(breaks)


def _when(gaps: list, more: bool, start: float | None) -> str:
    """When the gaps were: ", at +3.3 s" (one), ", from +3.3 s to +9.4 s" (several: the first and the last kept;
    ``more``: gaps beyond those kept, "and later")."""
    if not gaps or start is None:
        return ""
    first, last = gaps[0].time - start, gaps[-1].time - start
    if len(gaps) == 1 and not more:
        return f", at +{first:.1f} s"
    return f", from +{first:.1f} s to +{last:.1f} s" + (" and later" if more else "")


def _mtu_probes_lost(f) -> bool:
    """The flow's DTLS MTU probes (padded DPD requests) went unanswered: big records are dropped on the path."""
    probes = getattr(f.channel, "mtu_probes", None) or []
    return any(p.get("answered_ts") is None for p in probes)


def check(session, ctx):
    out = []
    d = session.phase("dtls").details
    for f in d.flow_list if isinstance(d, DTLSDetails) else []:
        rm = f.records_missing
        if rm is UNSET or not rm:
            continue
        found = {}
        for direction, m in rm.items():
            n, outage, gaps, n_gaps = lost(m)
            records = m.records - outage
            if n >= MIN_LOST and records > 0 and n / records >= LOSS_RATE:
                found[direction] = (n, records, outage, gaps, n_gaps, m)
        if not found:
            continue
        parts, frames, first = [], [], None
        for direction in ("s2c", "c2s"):
            if direction not in found:
                continue
            n, records, outage, gaps, n_gaps, m = found[direction]
            sender, receiver = _WHO[direction]
            parts.append(f"{n} of the {sender}'s {records} DTLS records ({100 * n / records:.1f} %) never reached "
                         f"the capture point on their way to the {receiver} — in {n_gaps} gap"
                         f"{'s' if n_gaps != 1 else ''} of its record numbers"
                         + (f", the largest {max(g.missing for g in gaps)} records in a row" if gaps and
                            max(g.missing for g in gaps) > 1 else "")
                         + _when(gaps, m.gaps > len(m.first_gaps or []), session.start)
                         + (f" ({outage} more skipped across a silence of over {OUTAGE_S:.0f} s: an interruption, "
                            "not counted)" if outage else ""))
            frames += [g.frame for g in gaps if g.frame is not None]
            t = min((g.time for g in gaps), default=None)
            if t is not None and (first is None or t < first):
                first = t
        both = len(found) == 2
        holes = list(dict.fromkeys(c for c, _g in capture_holes(session)))  # (the connections, in order)
        dropped = getattr(ctx, "capture_dropped", 0)
        where = ("both ways: the capture was taken between the two (a router, a firewall), or the capturing program "
                 "itself missed them (a capture at one end sees everything its own end sends)" if both else
                 "on the way from the gateway to where the capture was taken" if "s2c" in found else
                 "on the way from the client to where the capture was taken")
        big = _mtu_probes_lost(f)
        message = (f"Records of the tunnel's DTLS channel were lost on {f.connection}: " + "; ".join(parts)
                   + f". A DTLS sender numbers every record it sends, so the missing numbers are packets lost {where}"
                   + (". The flow's MTU probes also went unanswered: records bigger than the path carries are dropped "
                      "there (see the MTU findings)" if big else "")
                   + (f". The capture itself missed data on {', '.join(holes[:3])} (CAPTURE_GAP): some of these "
                      "records may be its own holes, not the network's" if holes else "")
                   + (f". The capturing program reported {dropped} packet(s) dropped (CAPTURE_DROPPED): some or all "
                      "of these records may be those" if dropped else "")
                   + ". DTLS does not send them again: what the tunnel carried lost them (TCP inside slows down, "
                     "calls and video break up).")
        remedy = ("Find where the path loses packets: capture at the other end too and compare (acflow analyze "
                  "--other-side names the stretch: PATH_PACKETS_LOST); look at the client's link (Wi-Fi signal, "
                  "a mobile or home connection), the gateway's Internet link and any device that polices or "
                  "rate-limits UDP on the way."
                  + (" Lower the tunnel MTU or let ICMP 'fragmentation needed' through if big records are the ones "
                     "lost." if big else ""))
        out.append(Finding(
            id="DTLS_RECORDS_LOST", severity="info" if both or holes or dropped else "warning", phase="dtls",
            time=first if first is not None else f.start,
            frames=sorted(set(frames))[:10], message=message, remedy=remedy,
            # (the record numbers are read, not inferred; but without keys, that this flow is the session's DTLS
            # channel is the keyless reading's, as for TCP_RETRANSMISSIONS)
            inferred=f.keys is None,
            evidence={"flow": f.connection, "mtu_probes_unanswered": big, "capture_holes": holes[:10],
                      "capture_dropped": dropped,
                      "directions": {direction: {"lost": n, "records": records, "rate": round(n / records, 4),
                                                 "gaps": n_gaps, "late": m.late, "interrupted": outage,
                                                 "gap_frames": [g.frame for g in gaps][:20],
                                                 "gap_times": [g.time for g in gaps][:20]}
                                     for direction, (n, records, outage, gaps, n_gaps, m) in sorted(found.items())}}))
    return out
