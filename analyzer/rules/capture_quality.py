"""CAPTURE_GAP (warning), CAPTURE_TRUNCATED (warning) and ANALYSIS_LIMIT (warning): what the capture or acflow's
bounds left out of a session.

Fact: a capture taken with a snapshot length (tcpdump -s N, dumpcap -s N, Windows pktmon, whose --pkt-size keeps
128 bytes of each packet unless set to 0) records only the first bytes of each packet and its length on the wire:
the TLS and DTLS records in a cut packet cannot be read whole, with or without keys.

Facts: TCP sequence numbers show bytes the capture missed (packets dropped by the capturing host, or a capture
started/stopped mid-connection); acflow reports the gap and resynchronises on the next TLS record. acflow bounds
what it keeps per connection (HTTP header count/size, body size, reassembly buffer, XML size) so hostile or huge
captures cannot exhaust memory; when a bound is hit the analysis of that item is partial.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.tls_handshake import ConnectionSummary

RULE_IDS = ("CAPTURE_GAP", "CAPTURE_TRUNCATED", "ANALYSIS_LIMIT")
_LIMIT_KINDS = ("max_header_bytes", "max_headers", "max_body", "max_pending")
TRUNCATED_REMEDY = ("Capture whole packets: tcpdump -s 0 (the default of tcpdump 4.0 and later), Wireshark or dumpcap "
                    "without a snapshot length, Windows pktmon start --capture --pkt-size 0 (pktmon keeps 128 bytes of "
                    "each packet by default).")


def truncated(flows) -> tuple[int, int, list[str], int | None] | None:
    """(frames cut short, most bytes captured of one, the flows, the first such frame) of ``flows`` (connection
    summaries), None when the capture cut none of them."""
    cut = [c for c in flows if getattr(c, "truncated_frames", 0)]
    if not cut:
        return None
    return (sum(c.truncated_frames for c in cut), max(c.snaplen for c in cut), [c.connection for c in cut],
            min(c.first_truncated_frame for c in cut))


def capture_holes(session) -> list[tuple[str, dict]]:
    """(connection, gap) of every stretch of TCP data the capture itself missed in ``session`` (its TCP connections'
    `gaps`, not those of a snapshot length): CAPTURE_GAP's; DTLS_RECORDS_LOST reads them too (a capture that drops
    packets drops DTLS records as well)."""
    return [(c.connection, g) for c in session.connections if isinstance(c, ConnectionSummary)
            for g in c.gaps or [] if not g.get("snapped")]


def check(session, ctx):
    out = []
    tcp = [c for c in session.connections if isinstance(c, ConnectionSummary)]
    gaps = capture_holes(session)
    if gaps:
        total = sum(g["length"] for _, g in gaps)
        out.append(Finding(
            id="CAPTURE_GAP", severity="warning", phase=None, time=gaps[0][1]["ts"],
            frames=[g["frame"] for _, g in gaps][:10],
            message=f"The capture misses {total} byte(s) of TCP data in {len(gaps)} place(s) "
                    f"({', '.join(sorted({c for c, _ in gaps}))}); what they carried is unknown.",
            remedy="Capture again with a bigger buffer/snaplen (dumpcap -B, -s 0) or closer to the client; the "
                   "rest of the analysis is based on the data around the gaps.",
            evidence={"gaps": [dict(g, connection=c) for c, g in gaps[:20]], "bytes": total}))
    cut = truncated(session.connections)
    if cut is not None:
        n, snap, flows, first = cut
        out.append(Finding(
            id="CAPTURE_TRUNCATED", severity="warning", phase=None, time=session.start, frames=[first],
            message=f"The capture cut {n} of this session's packets short: at most {snap} bytes of each were captured "
                    f"(a snapshot length; {', '.join(flows[:4])}{'…' if len(flows) > 4 else ''}), so the TLS and DTLS "
                    "records in them cannot be read whole — handshakes, certificates and, even with keys, the login "
                    "and the tunnel. What the phases say rests on the packets' headers and sizes.",
            remedy=TRUNCATED_REMEDY,
            evidence={"truncated_frames": n, "snaplen": snap, "connections": flows}))
    limits = [(c.connection, p) for c in tcp for p in c.problems
              if any(k in (p.get("message") or "") for k in _LIMIT_KINDS) or p.get("kind") == "limit"]
    if limits:
        out.append(Finding(
            id="ANALYSIS_LIMIT", severity="warning", phase=None, time=limits[0][1].get("ts"),
            frames=[p["frame"] for _, p in limits if p.get("frame")][:10],
            message="acflow stopped keeping data at a safety bound: " + "; ".join(p["message"] for _, p in limits[:3])
                    + ".",
            remedy="The capture holds unusually large or many HTTP headers/bodies (possibly hostile); the rest of "
                   "the session was analysed.",
            evidence={"problems": [dict(p, connection=c) for c, p in limits[:10]]}))
    return out
