"""CAPTURE_GAP (warning) and ANALYSIS_LIMIT (warning): what the capture or acflow's bounds left out of a session.

Facts: TCP sequence numbers show bytes the capture missed (packets dropped by the capturing host, or a capture
started/stopped mid-connection); acflow reports the gap and resynchronises on the next TLS record. acflow bounds
what it keeps per connection (HTTP header count/size, body size, reassembly buffer, XML size) so hostile or huge
captures cannot exhaust memory; when a bound is hit the analysis of that item is partial.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.tls_handshake import ConnectionSummary

RULE_IDS = ("CAPTURE_GAP", "ANALYSIS_LIMIT")
_LIMIT_KINDS = ("max_header_bytes", "max_headers", "max_body", "max_pending")


def check(session, ctx):
    out = []
    tcp = [c for c in session.connections if isinstance(c, ConnectionSummary)]
    gaps = [(c.connection, g) for c in tcp for g in c.gaps]
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
