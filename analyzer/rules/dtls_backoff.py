"""DTLS_BACKOFF (info/warning): the DTLS retry schedule measured, compared with the known client schedules.

Facts (protocol-notes "Timers"; seed document "DTLS Port Blocked"):
* openconnect with GnuTLS: the library retransmits the ClientHello 1 s after the first, doubling (wire pattern
  t0, +1, +3, +7 s); openconnect abandons the attempt after ~12 s and tries again 60 s later (≈ t0 + 72 s),
  normally from a new UDP source port.
* Cisco AnyConnect: up to five retries, 1 s growing to 16 s (intervals 1, 2, 4, 8, 16 s), then it applies
  X-CSTP-MTU and stays on TLS.
Tolerance: an interval is within the schedule when |measured − expected| ≤ 30 % of expected + 0.25 s.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.dtls import DTLSDetails, DTLSFlowSummary

RULE_IDS = ("DTLS_BACKOFF",)

OPENCONNECT_RETRANSMITS = [1.0, 2.0, 4.0]
OPENCONNECT_ATTEMPT = 12.0  # an attempt is abandoned after this many seconds
OPENCONNECT_NEXT_ATTEMPT = 60.0  # … and the next one starts this long after
ANYCONNECT_RETRANSMITS = [1.0, 2.0, 4.0, 8.0, 16.0]


def _ok(measured: float, expected: float) -> bool:
    return abs(measured - expected) <= 0.3 * expected + 0.25


#: a first hello seen with this record number or less is the attempt's hello that many retries in (the capture
#: missed those before it: a new DTLS session numbers its records from 0)
MAX_MISSED_FIRST = 4


def _attempts(flows: list[DTLSFlowSummary]) -> tuple[list[list[list[tuple[float, int]]]], list[int]]:
    """Hello times per attempt, per flight, each with how many retries it stands for: 1, more when the hello's
    record number skips past the one before it in the flight (the capture missed the hellos between); and per
    attempt, the hellos the capture missed before its first (that hello's record number). A new attempt starts
    with a hello that is neither a retransmission nor carries a cookie; a hello with a cookie (the answer to a
    HelloVerifyRequest, RFC 6347 §4.2.1) starts a new flight of the same attempt; retransmissions repeat the
    current flight."""
    attempts: list[list[list[tuple[float, int]]]] = []
    before: list[int] = []
    last_seq = None
    for f in flows:
        last_seq = None
        for h in f.client_hellos:
            seq = h.record_seq if isinstance(h.record_seq, int) else None
            if not attempts or not (h.retransmission or h.cookie):
                attempts.append([[(h.ts, 1)]])
                before.append(seq if seq is not None and 0 < seq <= MAX_MISSED_FIRST and not h.cookie else 0)
            elif h.retransmission:
                span = seq - last_seq if seq is not None and last_seq is not None and seq > last_seq else 1
                attempts[-1][-1].append((h.ts, min(span, 8)))
            else:
                attempts[-1].append([(h.ts, 1)])
            last_seq = seq
    return attempts, before


def _score(intervals: list[tuple[float, int]], expected: list[float], start: int = 0) -> tuple[int, list[dict]]:
    """Measured intervals against the schedule from its ``start``-th interval on (the hellos before missed); one
    that spans hellos the capture missed is held to the sum of the intervals it spans."""
    rows, bad, i = [], 0, start
    for m, span in intervals:
        part = expected[i:i + span]
        e = round(sum(part), 3) if len(part) == span else None
        i += span
        ok = e is not None and _ok(m, e)
        bad += 0 if ok else 1
        row = {"measured": round(m, 3), "expected": e, "within_tolerance": ok}
        if span > 1:
            row["hellos_missed"] = span - 1
        rows.append(row)
    return bad, rows


def check(session, ctx):
    d = session.phase("dtls").details
    if not isinstance(d, DTLSDetails):
        return []
    flows = [f for f in d.flow_list if f.client_hellos]
    if not flows:
        return []
    flights, before = _attempts(flows)
    retries = sum(len(fl) - 1 for att in flights for fl in att)
    if not retries and (len(flights) < 2 or d.established):
        return []  # no retransmission: one attempt, or new handshakes that succeeded (a cookie exchange is no retry)
    # per attempt: the retransmission intervals of each flight (with the retries each spans), and the hello times
    # (first flight's start)
    attempts = [[t for fl in att for t, _n in fl] for att in flights]
    hellos = sum(len(a) for a in attempts)
    spans = [[(round(b[0] - a[0], 3), b[1]) for fl in att for a, b in zip(fl, fl[1:])] for att in flights]
    retrans = [[m for m, _n in r] for r in spans]
    missed = sum(n - 1 for r in spans for _m, n in r) + sum(before)
    flat = [x for r in spans for x in r]
    oc_bad, oc_rows = 0, []
    for k, r in enumerate(spans):
        bad, rows = _score(r, OPENCONNECT_RETRANSMITS, before[k])
        oc_bad += bad
        oc_rows.append(rows)
    ac_bad, ac_rows = _score(flat, ANYCONNECT_RETRANSMITS, before[0])
    between = [round(b[0] - a[0], 3) for a, b in zip(attempts, attempts[1:])]
    oc_between_ok = all(_ok(x, OPENCONNECT_ATTEMPT + OPENCONNECT_NEXT_ATTEMPT) for x in between)
    if not between:
        oc_between_ok = True
    oc_fit = oc_bad == 0 and oc_between_ok
    ac_fit = ac_bad == 0 and len(attempts) == 1 and before[0] + sum(n for _m, n in flat) <= len(
        ANYCONNECT_RETRANSMITS)
    if oc_fit:
        fits = "openconnect (GnuTLS: 1 s doubling, attempt abandoned after ~12 s, next attempt ~60 s later)"
    elif ac_fit:
        fits = "Cisco AnyConnect (up to five retries, 1 s growing to 16 s)"
    else:
        fits = None
    lines = []
    for i, r in enumerate(retrans, 1):
        lines.append(f"attempt {i}: " + (", ".join(f"+{x:g}s" for x in r) if r else "one hello"))
    if between:
        lines.append("between attempts: " + ", ".join(f"{x:g}s" for x in between))
    msg = (f"DTLS ClientHello retries ({hellos} hellos in {len(attempts)} attempt(s)): " + "; ".join(lines) +
           ". Expected: openconnect +1, +2, +4 s per attempt and a new attempt ~72 s after the first; "
           "AnyConnect +1, +2, +4, +8, +16 s. " +
           (f"The capture misses {missed} of the client's hellos (their record numbers skip); the intervals "
            "around them are held to the retries they span. " if missed else "") +
           (f"The capture fits {fits}." if fits else "The capture fits neither schedule."))
    return [Finding(
        id="DTLS_BACKOFF", severity="info" if fits else "warning", phase="dtls", time=attempts[0][0],
        frames=[h.frame for f in flows for h in f.client_hellos][:20],
        message=msg,
        remedy=("The retries are the client's normal back-off while DTLS is blocked; fix the DTLS path (see "
                "DTLS_NO_RESPONSE, DTLS_COOKIE_IGNORED)." if fits else
                "The retry timing matches no known client: something delays or drops the client's hellos "
                "irregularly, or the capture misses packets."),
        evidence={"attempts": [[round(t - attempts[0][0], 3) for t in a] for a in attempts],
                  "retransmit_intervals": retrans, "between_attempts": between, "hellos_missed": missed,
                  "openconnect": {"expected_retransmits": OPENCONNECT_RETRANSMITS,
                                  "expected_between_attempts": OPENCONNECT_ATTEMPT + OPENCONNECT_NEXT_ATTEMPT,
                                  "intervals": oc_rows, "between_within_tolerance": oc_between_ok,
                                  "fits": oc_fit},
                  "anyconnect": {"expected_retransmits": ANYCONNECT_RETRANSMITS, "intervals": ac_rows,
                                 "fits": ac_fit},
                  "fits": "openconnect" if oc_fit else ("anyconnect" if ac_fit else None)})]
