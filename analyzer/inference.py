"""Keyless reading of a TLS connection (issue #13): its HTTP request/response rounds and where a CSTP tunnel starts,
from the sizes, directions and timing of records that could not be decrypted.

The clients and gateways of the AnyConnect protocol speak HTTP/1.1 one request at a time until the CONNECT: the
client writes a request (one or more records), the gateway answers (one or more records), the client writes the
next. A *round* here is such a burst of client records and the gateway's records that follow. After the CONNECT is
answered the connection carries CSTP frames instead, one per record, whose sizes are known (analyzer/keyless.py):
a control frame is the 8-byte header alone, a DISCONNECT's payload is too short for an IP packet, a DATA frame's
is an IP packet.

Where the tunnel starts (the CONNECT round), from the earliest of:

* `cstp-record`: after the round, a client record whose plaintext is shorter than any HTTP request acflow's
  clients send (`HTTP_MIN_REQUEST`) — a CSTP control frame, DISCONNECT or small DATA packet;
* `dtls-after-connect`: the client's first DTLS ClientHello follows the round's answer within
  `HELLO_WINDOW` seconds (clients start DTLS right after the CONNECT answer, with the X-DTLS-* it carries);
* `control-size`: a record of exactly a CSTP control frame's size (DPD, keepalive) after the round.

Everything here is an inference, labelled as such in reports with its basis and the frames it rests on.
TLS 1.3 hides the end of the handshake and the alerts in application-data records too: the gateway's encrypted
flight before the client's first record, the client's Finished flight (up to the record of a Finished message's
size), and records too short to be a CSTP frame (alerts, key updates) are left out.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from dissectors.tls.names import cipher_suite_name

from .keyless import CSTP_HEADER, Protection, TunnelEstimate, fits_cstp, protection, tls13_finished_length
from .tcptracker import MAX_SAMPLES

HTTP_MIN_REQUEST = 150  # plaintext bytes: the shortest request line + Host + User-Agent the clients send
HELLO_WINDOW = 3.0  # seconds from the CONNECT answer to the client's first DTLS ClientHello


@dataclass
class Round:
    """One HTTP request/response round seen from outside: the client's records, then the gateway's."""

    start: float
    frame: int
    request_records: int = 0
    request_bytes: int = 0  # plaintext bytes (the least, for CBC suites)
    response_start: float | None = None
    response_frame: int | None = None
    response_records: int = 0
    response_bytes: int = 0
    end: float | None = None
    end_frame: int | None = None
    records: list = field(default_factory=list)  # (ts, direction, length, frame)

    @property
    def http_like(self) -> bool:
        return self.request_bytes >= HTTP_MIN_REQUEST and self.response_records > 0


@dataclass
class ConnectionReading:
    """What one undecrypted TLS connection shows: rounds, and the tunnel after the CONNECT round if any."""

    conn: object
    prot: Protection | None
    rounds: list[Round] = field(default_factory=list)
    connect: int | None = None  # index in `rounds` of the CONNECT round
    basis: list[str] = field(default_factory=list)  # why the tunnel starts there
    basis_frames: list[int] = field(default_factory=list)
    estimate: TunnelEstimate | None = None  # the CSTP frames after the CONNECT answer, by size
    complete: bool = True  # every record up to the CONNECT answer was in the bounded sample

    @property
    def http_rounds(self) -> list[Round]:
        """The rounds before the tunnel (all of them on a connection without one)."""
        return self.rounds if self.connect is None else self.rounds[:self.connect + 1]

    @property
    def connect_round(self) -> Round | None:
        return self.rounds[self.connect] if self.connect is not None else None


def records(c) -> tuple[list, Protection | None]:
    """The connection's application-data records in order, TLS 1.3 handshake and alerts left out."""
    sh = c.server_hello
    suite = cipher_suite_name(sh.cipher_suite) if sh is not None else None
    prot = protection(suite, sh.version if sh else None, dtls=False, etm=bool(sh and sh.encrypt_then_mac))
    if prot is None and sh is None and c.guessed_protection is not None:
        prot = c.cstp_estimate.prot  # the handshake was before the capture: the protection the sizes fit
    recs = sorted([(ts, d, n, fr) for d in ("c2s", "s2c") for ts, n, fr in c.record_sizes[d]],
                  key=lambda r: (r[0], r[3]))
    if prot is None:
        return recs, None
    if sh is not None and sh.version >= 0x0304 and c.client_hello is not None and not c.started_before_capture:
        # the gateway's encrypted flight and the client's Finished flight (Certificate and CertificateVerify
        # first when asked for one), up to the record of a Finished message's size; session tickets after it
        # come before the first request and are left out with the rounds (`read_connection`)
        fin = tls13_finished_length(prot, suite or "")
        c2s = [i for i, r in enumerate(recs) if r[1] == "c2s"]
        end = next((i for i in c2s[:4] if recs[i][2] == fin), c2s[0] if c2s else len(recs))
        recs = recs[end + 1:]
    # too short for a CSTP frame: a TLS 1.3 alert (close_notify), key update
    recs = [r for r in recs if prot.plaintext(r[2])[1] >= CSTP_HEADER]
    return recs, prot


def read_connection(c, dtls_hellos: list[float], other_starts: list[float] = ()) -> ConnectionReading:
    """Rounds and tunnel of one undecrypted TLS connection; ``dtls_hellos``: times of the client's first DTLS
    ClientHello of each DTLS flow of the session; ``other_starts``: when the session's other TLS connections
    started (a hello that follows another connection's start answers that one's CONNECT, not this one's)."""
    recs, prot = records(c)
    r = ConnectionReading(c, prot)
    if prot is None:
        return r
    cur: Round | None = None
    for ts, d, n, fr in recs:
        least = prot.plaintext(n)[0]
        if d == "c2s":
            if cur is None or cur.response_records:
                cur = Round(start=ts, frame=fr)
                r.rounds.append(cur)
            cur.request_records += 1
            cur.request_bytes += least
        else:
            if cur is None:
                continue  # before the first request: session tickets
            if not cur.response_records:
                cur.response_start, cur.response_frame = ts, fr
            cur.response_records += 1
            cur.response_bytes += least
        cur.end, cur.end_frame = ts, fr
        cur.records.append((ts, d, n, fr))
    control = prot.record_length(CSTP_HEADER)
    cands: list[tuple[int, str, int]] = []  # (round index, basis, frame)
    for i, rd in enumerate(r.rounds):
        if i == 0:
            continue
        if not rd.http_like:
            if _unanswered_request(r, rd):
                break
            cands.append((i - 1, "cstp-record", rd.frame))
            break
    for i, rd in enumerate(r.rounds):
        ctl = next((x for x in rd.records if x[2] == control), None)
        if ctl is not None and i > 0:
            cands.append((i - 1 if rd.records[0][2] == control or not rd.http_like else i, "control-size", ctl[3]))
            break
    # the tunnel connection is still open when DTLS starts (it carries the tunnel until the end)
    hello = next((h for h in sorted(dtls_hellos) if c.first_ts <= h and (h <= c.last_ts or not c.closed)), None)
    if hello is not None:
        answered = [i for i, rd in enumerate(r.rounds) if rd.response_start is not None and rd.response_start <= hello]
        if answered:
            rs = r.rounds[answered[-1]].response_start
            if hello - rs <= HELLO_WINDOW and not any(rs < t <= hello for t in other_starts):
                cands.append((answered[-1], "dtls-after-connect", r.rounds[answered[-1]].response_frame))
    if not cands:
        return r
    k = min(i for i, _, _ in cands)
    if k < 0 or r.rounds[k].response_start is None:
        return r
    r.connect = k
    _split_answer(r.rounds[k], prot)
    r.basis = sorted({b for i, b, _ in cands if i == k} | {b for i, b, _ in cands if i > k})
    r.basis_frames = sorted({f for _, _, f in cands if f})
    r.estimate = _tunnel_estimate(c, r, recs)
    return r


def _unanswered_request(r: ConnectionReading, rd: Round) -> bool:
    """The connection's last round is a request the gateway never answered (a record or two of a request's size,
    nothing after them but the close): a login whose answer the client gave up waiting for, not a tunnel's first
    packet — a tunnel the client leaves sends its DISCONNECT, and carries traffic both ways."""
    return (rd is r.rounds[-1] and not rd.response_records and rd.request_records <= 2
            and rd.request_bytes >= HTTP_MIN_REQUEST and bool(r.conn.closed))


def _split_answer(rd: Round, prot: Protection) -> None:
    """The CONNECT answer ends with the gateway's largest record of the round (an HTTP answer with the X-CSTP-*
    headers is bigger than the session tickets that may come first and than the CSTP frames that may follow
    before the client writes again) and the records in the same segment; later records are CSTP frames."""
    resp = [x for x in rd.records if x[1] == "s2c"]
    if len(resp) < 2:
        return
    big = max(resp, key=lambda x: x[2])
    at = rd.records.index(big)
    end = max(i for i, x in enumerate(rd.records) if i == at or (i > at and x[1] == "s2c" and x[3] == big[3]))
    rd.records = rd.records[:end + 1]
    resp = [x for x in rd.records if x[1] == "s2c"]
    rd.response_records = len(resp)
    rd.response_bytes = sum(prot.plaintext(x[2])[0] for x in resp)
    rd.end, rd.end_frame = resp[-1][0], resp[-1][3]


def _tunnel_estimate(c, r: ConnectionReading, recs: list) -> TunnelEstimate | None:
    """The connection's running CSTP estimate with every record up to the CONNECT answer taken back."""
    if c.cstp_estimate is None:
        return None
    est = copy.deepcopy(c.cstp_estimate)
    rd = r.rounds[r.connect]
    boundary = (rd.end, rd.end_frame)
    withheld = set(c.estimate_withheld)  # TLS 1.3 handshake records: never in the estimate
    for d in ("c2s", "s2c"):
        sizes = c.record_sizes[d]
        before = [x for x in sizes if (x[0], x[2]) <= boundary]
        if len(before) == len(sizes) == MAX_SAMPLES:
            r.complete = False  # the CONNECT answer may lie beyond the bounded sample: no estimate
            return None
        for ts, n, fr in before:
            if (d, ts, n, fr) not in withheld:
                est.forget(d, n)
    est.controls = [e for e in est.controls if (e[2], e[1]) > boundary]
    # DATA times of the tunnel only (an HTTP record before it is no DATA frame)
    est.first_data = {d: t for d, t in est.first_data.items() if t > boundary[0]}
    est.last_data = {d: t for d, t in est.last_data.items() if t > boundary[0]}
    return _ending(c, est, recs)


def read_tunnel_before_capture(c) -> ConnectionReading | None:
    """A connection that already carried the tunnel when the capture started (its handshake and CONNECT were
    before it): every record is a CSTP frame, read by the protection its records' sizes fit
    (`TCPTracker.guessed_protection`) — or by the suite, should a renegotiation have shown one. None when its
    records were not read as a tunnel."""
    if not c.started_before_capture or c.cstp_estimate is None or c.decrypted:
        return None
    recs, prot = records(c)
    if not fits_cstp(prot, c.record_sizes, whole=True):
        # records before the tunnel's first control frame that are no CSTP frame: the end of the HTTP exchanges
        # (the capture started between a reconnect's handshake and its CONNECT), read as a connection whose CONNECT
        # round is in the capture
        r = read_connection(c, [])
        if r.connect is not None and r.estimate is not None:
            return r
    r = ConnectionReading(c, prot, basis=["before-capture"])
    r.estimate = _ending(c, copy.deepcopy(c.cstp_estimate), recs)
    return r


def _ending(c, est: TunnelEstimate, recs: list) -> TunnelEstimate:
    """How the tunnel's estimate ``est`` ends: a late DPD answer, or the gateway's end (below)."""
    # a control frame from the gateway as its last record, right before the connection closes: END, the gateway's
    # DISCONNECT or TERMINATE (both a bare 8-byte frame: ocserv's DISCONNECT at its session or idle timeout, lab
    # scenarios session-timeout, idle-timeout; a TERMINATE, scripted case terminate — without keys alike) —
    # unless it is the gateway's first record after the client's last one, an unanswered control record: then it
    # answers that DPD request late (the request reached the gateway only when TCP retransmitted it, after a
    # loss of the path, as the connection was ending)
    last = next((e for e in reversed(est.controls) if e[0] == "s2c"), None)
    later = [x for x in recs if x[1] == "s2c" and (x[0], x[3]) > (last[2], last[1])] if last else []
    asked = next((e for e in reversed(est.controls) if e[0] == "c2s" and e[2] <= last[2]), None) if last else None
    if (asked is not None and asked[3] in ("KEEPALIVE", "DPD_REQ") and asked[5] == last[2] and not later
            and not any(x[1] == "c2s" and asked[2] < x[0] <= last[2] for x in recs)):
        asked[3], last[3] = "DPD_REQ", "DPD_RESP"
        return est
    answered = last is not None and any(x[0] == "c2s" and x[3] == "DPD_RESP" and x[2] >= last[2] for x in est.controls)
    if (last is not None and last[3] in ("KEEPALIVE", "DPD_REQ") and not answered and not later and c.closed
            and c.last_ts - last[2] <= 1.0):
        last[3] = "END"
    return est
