"""Phases 2–6 read without keys (issue #13): the status each phase most likely had, *inferred* from record sizes,
directions and timing (analyzer/inference.py), with a confidence and the frames it rests on.

A phase whose status stays `undecrypted` (or, for the DTLS phase, whose handshake was recognised without keys)
gets `inferred` (`PhaseInference`): the status the keyless reading gives (`ok`, `failed`, `absent`), how sure it
is (`high`, `medium`, `low`), its basis in words and the frames. The phase's `status` itself keeps its documented
meaning (`undecrypted`: the contents were not read); `inferred.status` is the reading from outside.

* group-selection: the first round of the first connection (the `init` POST and its answer); `ok` when the
  session went on (more rounds, or a tunnel).
* user-auth: the rounds after it up to the CONNECT round; `ok` when a tunnel followed, `failed` when the
  connections ended without one after the client's rounds.
* downloader: TLS connections that started after the first and before the tunnel connection, carrying rounds
  only (the downloader's GETs); `absent` when there are none.
* cstp-connect: the connection whose CONNECT round is followed by CSTP frames or DTLS; when the tunnel came up,
  how it ended, and its CSTP frames by class from their sizes (`CSTPEstimate`).
* dtls: established without keys (protected Finished / application-data records from both sides).

Another program's connections during the login (`_sign_in`): after the gateway answered the first request, the
client may wait while another TLS client program on its machine — its ClientHello fingerprint not the client's
(analyzer/phases/grouping.py `tls_client_fingerprint`) — connects to the gateway: a browser for SAML single sign-on
(the client's next request then posts the token), or the host scan's script. Those connections are the user's
sign-in, not the downloader, and not the client's rounds; user-auth's reading then says how long the client waited
and whether it went on, gave up (`failed`) or still waited when the capture ended (`incomplete`), with
`PhaseInference.sign_in` (`InferredSignIn`; its `path` — the same program's way to the identity provider — is added
by analyzer/phases/session.py, which has the capture's DNS and other connections).
"""
from __future__ import annotations

from typing import Any

from ..inference import ConnectionReading, read_connection, read_tunnel_before_capture
from ..model import Phase
from ..tcptracker import capture_missed
from ..wording import plural
from .dtls import DirectionEstimate, direction_estimate
from .grouping import Group, another_program, tls_client_fingerprint
from .record import UNSET, Record, record
from .sign_in import SignInPath


@record
class InferredRound(Record):
    """One HTTP request/response round seen from outside (sizes are plaintext bytes: record minus overhead)."""
    connection: str
    time: float
    frame: int
    request_records: int
    request_bytes: int
    response_time: float | None
    response_frame: int | None
    response_records: int
    response_bytes: int


@record
class InferredConnection(Record):
    """An extra TLS connection between the login and the tunnel (the downloader's, most likely)."""
    connection: str
    start: float
    end: float
    rounds: int
    bytes: dict[str, int]  # plaintext bytes per direction, over its rounds


@record
class CSTPEstimate(Record):
    """The CSTP frames of an undecrypted tunnel connection, by class, *estimated* from record sizes."""
    estimated: bool  # always true
    c2s: DirectionEstimate
    s2c: DirectionEstimate
    #: direction → DATA / DPD_REQ / DPD_RESP / KEEPALIVE / DISCONNECT / END (the gateway's DISCONNECT or TERMINATE,
    #: alike without keys) / MTU_PROBE → records
    frame_classes: dict[str, dict[str, int]]
    control_answered: int
    control_unanswered: int
    exact_sizes: bool
    dead_peer: list[dict[str, Any]]  # unanswered DPD requests that end one side's traffic
    first_data: dict[str, float]  # direction → time of its first DATA frame (first_data/last_data: the tunnel's)
    last_data: dict[str, float]


@record
class InferredTunnel(Record):
    """One tunnel connection: its CONNECT round, when the tunnel came up and how it ended."""
    connection: str
    connect_time: float | None  # None: the CONNECT was before the capture started (basis `before-capture`)
    connect_frame: int | None
    established_time: float | None  # the CONNECT answer's first record (None: before the capture)
    established_frame: int | None
    end_time: float | None  # a DISCONNECT/TERMINATE record, else the connection's last packet
    end_frame: int | None
    #: DISCONNECT (the client's, or one inferred from a payload too short for a packet), END (the gateway's last
    #: control record right before the connection closed: its DISCONNECT or TERMINATE, alike without keys), close
    #: (FIN/RST), None: still up when the capture ends
    ended_by: str | None
    #: cstp-record, control-size, dtls-after-connect (analyzer/inference.py); before-capture: the connection
    #: already carried the tunnel when the capture started (`read_tunnel_before_capture`)
    basis: list[str]
    estimate: CSTPEstimate | None
    #: the client's DISCONNECT answered a control record of the gateway's (ended_by DISCONNECT): the gateway ended
    #: the tunnel — its DISCONNECT or TERMINATE, which look alike without keys — and the client said goodbye;
    #: {frame, time} of that record; present only then
    gateway_ended: dict = UNSET


#: seconds within which a client's DISCONNECT after the gateway's control record is its answer (openconnect
#: answers a gateway's DISCONNECT or TERMINATE with its own DISCONNECT at once: 0.2 ms in lab scenario
#: session-timeout; a capture at the gateway adds the round trip)
ANSWERS_GATEWAY_END = 1.0


@record
class InferredSignIn(Record):
    """Without keys: another program on the client's machine connected to the gateway while the client waited after
    the gateway's answer to its first request (`_sign_in`)."""
    connections: list[str]  # that program's connections to the gateway
    since: float  # the gateway's answer to the first request
    since_frame: int
    waited: float  # seconds to the client's next request, its give-up, or the capture's end
    outcome: str  # went-on (the client's next request came), gave-up (it closed its connections), capture-ended
    #: the same program went on to another server, or a lookup near its requests failed: a browser at an identity
    #: provider — SAML single sign-on, most likely (set by analyzer/phases/session.py with `path`)
    single_sign_on: bool = False
    path: SignInPath = UNSET  # that program's way to the identity provider (analyzer/phases/sign_in.py)
    #: then the client asked for one page again and again, alike each time at a steady pace, and went no further (a
    #: refresh page: a host scan's wait page while the gateway evaluates the scan, `_polling`)
    polls: int = UNSET
    poll_interval: float = UNSET  # seconds between those requests (the median)
    poll_frames: list[int] = UNSET


@record
class PhaseInference(Record):
    """The keyless reading of a phase: the status it most likely had, how sure, and on what it rests."""
    status: str  # ok / failed / absent
    confidence: str  # high / medium / low
    basis: str
    frames: list[int]
    rounds: list[InferredRound] = UNSET  # group-selection, user-auth
    auth_rounds: int = UNSET  # user-auth: rounds after the first (init) one, up to the CONNECT
    connections: list[InferredConnection] = UNSET  # downloader
    tunnels: list[InferredTunnel] = UNSET  # cstp-connect: every tunnel connection (reconnects included)
    dtls_mode: str | None = UNSET  # dtls: psk-negotiate / legacy / legacy-0x0100, from the clear hellos
    sign_in: InferredSignIn = UNSET  # user-auth: another program's sign-in while the client waited (`_sign_in`)


def _round(conn, rd) -> InferredRound:
    return InferredRound(connection=f"tcp.stream {conn.index}", time=rd.start, frame=rd.frame,
                         request_records=rd.request_records, request_bytes=rd.request_bytes,
                         response_time=rd.response_start, response_frame=rd.response_frame,
                         response_records=rd.response_records, response_bytes=rd.response_bytes)


def _estimate(est) -> CSTPEstimate | None:
    if est is None:
        return None
    return CSTPEstimate(estimated=True, c2s=direction_estimate(est.dirs["c2s"]),
                        s2c=direction_estimate(est.dirs["s2c"]), frame_classes=est.classes(),
                        control_answered=est.control_answered, control_unanswered=est.control_unanswered,
                        exact_sizes=not est.prot.block, dead_peer=list(est.dead_peer),
                        first_data=dict(est.first_data), last_data=dict(est.last_data))


def _tunnel(r: ConnectionReading) -> InferredTunnel:
    c = r.conn
    rd = r.connect_round  # None: a tunnel up before the capture started
    end = next((e for e in reversed(r.estimate.controls) if e[3] in ("DISCONNECT", "TERMINATE", "END")), None) \
        if r.estimate is not None else None
    if end is not None:
        end_time, end_frame, by = end[2], end[1], end[3]
    elif c.closed:
        end_time, end_frame, by = c.last_ts, c.last_frame, "close"
    else:
        end_time, end_frame, by = c.last_ts, c.last_frame, None
    t = InferredTunnel(connection=f"tcp.stream {c.index}", connect_time=rd.start if rd else None,
                       connect_frame=rd.frame if rd else None,
                       established_time=rd.response_start if rd else None,
                       established_frame=rd.response_frame if rd else None,
                       end_time=end_time, end_frame=end_frame, ended_by=by, basis=list(r.basis),
                       estimate=_estimate(r.estimate))
    t.reading = r  # not a field, not in the JSON: the per-record classes, for analyzer/agreement.py
    if end is not None and end[0] == "c2s" and by == "DISCONNECT":
        g = _gateway_end(r.estimate, end)
        if g is not None:
            t.gateway_ended = {"frame": g[1], "time": g[2]}
    return t


def _gateway_end(est, end) -> list | None:
    """The gateway's control record the client's DISCONNECT ``end`` answered (ANSWERS_GATEWAY_END), or None: the
    gateway's last control record before it, no DPD answer, and no data from the client in between."""
    g = next((e for e in reversed(est.controls) if e[0] == "s2c" and e[2] <= end[2]), None)
    if g is None or g[3] == "DPD_RESP" or end[2] - g[2] > ANSWERS_GATEWAY_END:
        return None
    sent = est.last_data.get("c2s")
    if sent is not None and g[2] < sent <= end[2]:
        return None
    if any(e[0] == "c2s" and g[2] < e[2] < end[2] for e in est.controls):
        return None
    return g


def readings(g: Group) -> list[ConnectionReading] | None:
    """The keyless reading of every TLS connection of the group, None when there is none or any was decrypted
    (the keyed analysis then speaks)."""
    conns = [cn.c for cn in g.conns if cn.c.is_tls]
    if not conns or any(c.decrypted for c in conns):
        return None
    hellos = [f.hellos[0]["ts"] for f in g.dtls if f.hellos]
    starts = [c.first_ts for c in conns]
    return [read_connection(c, hellos, [t for t in starts if t != c.first_ts]) for c in conns]


def apply(g: Group, phases: list[Phase]) -> None:
    """Add the keyless reading (`Phase.inferred`) to the phases that stayed undecrypted."""
    tls, grp, auth, dl, cstp, dt = phases
    if dt.status == "undecrypted":
        d = dt.details
        est = [f for f in d.flow_list if f.established]
        if est:
            f = est[0]
            mode, why = dtls_mode(f)
            dt.inferred = PhaseInference(
                status="ok", confidence="high",
                basis=f"DTLS established ({f.established_from}: protected records from both sides after the "
                      "handshake)" + (f"; {mode}: {why}" if mode else ""),
                frames=[x for x in (f.established_frame, f.first_frame) if x], dtls_mode=mode)
        else:
            # the client's Finished sent, the gateway's never (its protected records absent): not completed
            stuck = [f for f in d.flow_list if f.finished is not UNSET and "c2s" in f.finished
                     and "s2c" not in f.finished and not f.before_capture]
            if stuck:
                fin = stuck[0].finished["c2s"]
                dt.inferred = PhaseInference(
                    status="failed", confidence="medium",
                    basis=f"DTLS handshake not completed on {stuck[0].connection}: the client sent its Finished "
                          f"{plural(len(fin.frames), 'time')}, the gateway never its own",
                    frames=fin.frames[:6])
    rs = readings(g)
    if rs is None:
        return
    live = [r for r in rs if not r.conn.started_before_capture]
    _before_capture(cstp, [x for x in (read_tunnel_before_capture(r.conn) for r in rs) if x is not None], live)
    if not live:
        return
    sign_in, browser = _sign_in(live, g)
    live = [r for r in live if r not in browser]
    tunnels = [r for r in live if r.connect is not None]
    first_t = tunnels[0] if tunnels else None
    first = live[0]
    t_start = first_t.conn.first_ts if first_t else None
    # rounds before the first tunnel: the login (on the first connection and on the tunnel connection before
    # its CONNECT); extra connections in between: the downloader
    login = [(first.conn, rd) for rd in first.http_rounds if first is not first_t or rd is not first.connect_round]
    extra = [r for r in live[1:] if r is not first_t and r.connect is None
             and (t_start is None or r.conn.first_ts < t_start)]
    if first_t is not None and first_t is not first:
        login += [(first_t.conn, rd) for rd in first_t.http_rounds[:-1]]
    rounds = [_round(c, rd) for c, rd in login]
    inits = _init_rounds(login) if login else 0  # the init, posted again with the chosen group
    closed = all(r.conn.closed for r in live)
    if grp.status == "undecrypted" and rounds:
        answered = rounds[0].response_records > 0
        went_on = len(rounds) > inits or first_t is not None or sign_in is not None
        if answered and went_on:
            grp.inferred = PhaseInference(
                status="ok", confidence="high" if first_t is not None else "medium",
                basis="the first request (init) was answered and the client went on" + (
                    " (to a sign-in in another program)" if sign_in is not None and len(rounds) == 1 and
                    first_t is None else ""),
                frames=[x for rd in rounds[:inits] for x in (rd.frame, rd.response_frame) if x],
                rounds=rounds[:inits])
    if auth.status == "undecrypted" and rounds:
        auth_rounds = rounds[inits:]
        frames = [x.frame for x in auth_rounds][:20]
        if first_t is not None:
            rd = first_t.connect_round
            waits = _wait_pages(auth_rounds, sign_in) if sign_in is not None and sign_in.outcome == "went-on" \
                else None
            scan = ""
            if waits is not None:  # a host scan that finished: its wait page, then the login went on
                n, interval, fr = waits
                sign_in.polls, sign_in.poll_interval, sign_in.poll_frames = n, interval, fr
                scan = f" ({n} of them one page asked every {interval:.1f} s: the host scan's wait page)"
            # bytes the capture missed before the CONNECT may have held rounds: their count is then a floor
            holes = sum(gp["length"] for r in live for gp in capture_missed(r.conn) if gp["ts"] <= rd.start)
            auth.inferred = PhaseInference(
                status="ok", confidence="high" if len(first_t.basis) > 1 and not holes else "medium",
                basis=f"{len(auth_rounds)} round(s) after the init{scan}"
                      + (f" (or more: the capture misses {holes} bytes before the CONNECT)" if holes else "")
                      + f", then a tunnel (CONNECT round at frame {rd.frame}, {', '.join(first_t.basis)})",
                frames=frames + [rd.frame], rounds=auth_rounds,
                auth_rounds=len(auth_rounds) - (waits[0] if waits is not None else 0))
    poll = _polling(rounds) if sign_in is not None and first_t is None and sign_in.outcome == "went-on" else None
    if poll is not None and auth.status == "undecrypted":
        # (the client's rounds after another program's: one page asked again and again — no refused CONNECT)
        n, interval, fr = poll
        sign_in.polls, sign_in.poll_interval, sign_in.poll_frames = n, interval, fr
        gone = ("then closed its connection" if closed else "and still asked when the capture ended")
        auth.inferred = PhaseInference(
            status="failed" if closed else "incomplete", confidence="medium",
            basis=f"after the gateway answered the first request, another program on the client's machine connected "
                  f"to the gateway ({', '.join(sign_in.connections[:4])}: a host scan's script, or a browser), then "
                  f"the client asked for one page {n} times, every {interval:.1f} s, each answered alike (a refresh "
                  f"page: the host scan's wait page, most likely), {gone} without going on",
            frames=[sign_in.since_frame] + fr[:8], sign_in=sign_in)
        if cstp.status == "undecrypted" and closed:
            cstp.inferred = PhaseInference(status="absent", confidence="medium",
                                           basis="the login never got past the wait: no CONNECT", frames=[])
    elif first_t is None:
        if sign_in is not None and sign_in.outcome != "went-on" and auth.status == "undecrypted" and len(rounds) == 1:
            streams = ", ".join(sign_in.connections[:4])
            gone = ("then closed its connection without another request" if sign_in.outcome == "gave-up" else
                    "and was still waiting when the capture ended")
            auth.inferred = PhaseInference(
                status="failed" if sign_in.outcome == "gave-up" else "incomplete", confidence="medium",
                basis=f"after the gateway answered the first request, the client waited {sign_in.waited:.1f} s while "
                      f"another program on its machine connected to the gateway ({streams}: a browser signing in, "
                      f"or the host scan), {gone}",
                frames=[sign_in.since_frame] + [r.conn.first_frame for r in browser[:4]], sign_in=sign_in)
        _no_tunnel(grp, auth, cstp, live, rounds, closed, inits)
    if sign_in is not None and auth.inferred is not None and auth.inferred.sign_in is UNSET:
        auth.inferred.sign_in = sign_in
    if dl.status in ("undecrypted", "absent") and first_t is not None:
        if extra:
            conns = [InferredConnection(connection=f"tcp.stream {r.conn.index}", start=r.conn.first_ts,
                                        end=r.conn.last_ts, rounds=len(r.rounds),
                                        bytes={"c2s": sum(x.request_bytes for x in r.rounds),
                                               "s2c": sum(x.response_bytes for x in r.rounds)}) for r in extra]
            dl.inferred = PhaseInference(
                status="ok", confidence="medium",
                basis=f"{len(extra)} extra TLS connection(s) with request/response rounds between the login and "
                      "the tunnel (the downloader's GETs, most likely)",
                frames=[r.conn.first_frame for r in extra], connections=conns)
        elif dl.status == "undecrypted":
            dl.inferred = PhaseInference(status="absent", confidence="medium",
                                         basis="no extra TLS connection between the login and the tunnel",
                                         frames=[])
    if dl.status == "undecrypted" and dl.inferred is None and sign_in is not None and not extra:
        dl.inferred = PhaseInference(status="absent", confidence="medium",
                                     basis=f"the other TLS connections are another program's ("
                                           f"{', '.join(sign_in.connections[:4])}: the sign-in or the host scan), "
                                           "not a downloader", frames=[])
    if cstp.status == "undecrypted" and tunnels:
        ts = [_tunnel(r) for r in tunnels]
        t0 = ts[0]
        cstp.inferred = PhaseInference(
            status="ok", confidence="high" if len(tunnels[0].basis) > 1 else "medium",
            basis=f"CONNECT round at frame {t0.connect_frame} on {t0.connection}, then "
                  + ", ".join(tunnels[0].basis) + (f"; {len(ts)} tunnel connections" if len(ts) > 1 else ""),
            frames=[t0.connect_frame] + [x for x in (t0.established_frame,) if x] + tunnels[0].basis_frames[:8],
            tunnels=ts)


def _sign_in(live: list[ConnectionReading], g: Group) -> tuple[InferredSignIn | None, list[ConnectionReading]]:
    """Another TLS client program's connections to the gateway while the client waited after the answer to its first
    request (the module's docstring): (the reading, those connections), or (None, [])."""
    first = live[0]
    mark = tls_client_fingerprint(first.conn)
    if mark is None or not first.rounds or not first.rounds[0].response_records:
        return None, []
    init = first.rounds[0]
    since = init.end if init.end is not None else init.start
    since_frame = init.end_frame or init.response_frame or init.frame
    others = [r for r in live[1:] if r.conn.first_ts >= since and another_program(r.conn, (mark,))]
    if not others:
        return None, []
    own = [r for r in live if r not in others]
    nxt = min((rd.start for r in own for rd in r.rounds if rd.start > since), default=None)
    browser = [r for r in others if nxt is None or r.conn.first_ts < nxt]
    if not browser:
        return None, []
    if nxt is not None:
        outcome, end = "went-on", nxt
    else:
        gone = [x["ts"] for r in own for x in (r.conn.closed or []) if x.get("direction") == "c2s"
                and x.get("ts", 0) >= since]
        if gone and len(gone) >= len(own):
            outcome, end = "gave-up", min(gone)
        else:
            outcome, end = "capture-ended", max([since] + [r.conn.last_ts for r in live])
    return InferredSignIn(connections=[f"tcp.stream {r.conn.index}" for r in browser], since=since,
                          since_frame=since_frame, waited=round(end - since, 3), outcome=outcome), browser


POLL_LEAST = 3  # rounds alike in a row at a steady pace that make a polling run (a refresh page asked again)
POLL_SPREAD = 0.35  # seconds the intervals of a polling run may differ from their median


def _polling(rounds: list[InferredRound]) -> tuple[int, float, list[int]] | None:
    """The client's last rounds, when they are one request asked again and again: POLL_LEAST or more in a row with the
    same request and answer sizes, at intervals within POLL_SPREAD of their median (0.5 s or more: a page's refresh,
    not a burst). (rounds, median interval, their frames), or None."""
    run = [rounds[-1]] if rounds else []
    for rd in reversed(rounds[:-1]):
        last = run[-1]
        if rd.request_bytes == last.request_bytes and rd.response_bytes == last.response_bytes \
                and rd.response_records:
            run.append(rd)
        else:
            break
    if len(run) < POLL_LEAST:
        return None
    run.reverse()
    return _steady(run)


def _wait_pages(rounds: list[InferredRound], sign_in: InferredSignIn) -> tuple[int, float, list[int]] | None:
    """A host scan that finished, read without keys: right after another program's connections to the gateway (the
    host scan's script posting its results), the client's first rounds after them are one request asked again and
    again — the same request size, at a steady pace of 0.5 s or more (the wait page's refresh) — the answers alike
    but the last (the gateway's verdict). Two such rounds or more; (rounds, median interval, their frames) or None.
    A browser's sign-in is followed by one request (the token's), never by a refresh."""
    after = [rd for rd in rounds if rd.time >= sign_in.since]
    run = after[:1]
    for rd in after[1:]:
        if rd.request_bytes == run[0].request_bytes and rd.response_records:
            run.append(rd)
        else:
            break
    if len(run) < 2 or len({rd.response_bytes for rd in run[:-1]}) != 1:
        return None
    return _steady(run)


def _steady(run: list[InferredRound]) -> tuple[int, float, list[int]] | None:
    """``run`` (two rounds or more) at a steady pace — intervals within POLL_SPREAD of their median, 0.5 s or more (a
    page's refresh, not a burst) —: (rounds, median interval, their frames), else None."""
    gaps = sorted(b.time - a.time for a, b in zip(run, run[1:]))
    median = gaps[len(gaps) // 2]
    if median < 0.5 or any(abs(g - median) > POLL_SPREAD for g in gaps):
        return None
    return len(run), round(median, 3), [rd.frame for rd in run]


def _before_capture(cstp: Phase, early: list[ConnectionReading], live: list[ConnectionReading]) -> None:
    """The tunnel already up when the capture started (the CONNECT before it: phase `before-capture`), read
    without keys: its CSTP frames by size, and any tunnel connection the capture shows being made later (a
    reconnect)."""
    if not early or cstp.status != "before-capture":
        return
    ts = [_tunnel(r) for r in early] + [_tunnel(r) for r in live if r.connect is not None]
    r0 = early[0]
    est = r0.estimate
    n = est.dirs["c2s"].control + est.dirs["s2c"].control
    cstp.inferred = PhaseInference(
        status="ok", confidence="high" if est.control_answered else "medium",
        basis=f"the tunnel was up when the capture started: tcp.stream {r0.conn.index} carries CSTP records "
              f"({n} of a control frame's size: DPD, keepalives)" + (f"; {len(ts)} tunnel connections"
                                                                     if len(ts) > 1 else ""),
        frames=[r0.conn.first_frame] + [e[1] for e in est.controls[:8]], tunnels=ts)


SMALL_ANSWER = 200  # plaintext bytes: an aggregate-auth answer or 200 CONNECTED is longer, an HTTP error shorter


def _small(rd) -> bool:
    return rd.response_records > 0 and rd.response_bytes < SMALL_ANSWER


#: plaintext bytes a re-posted init may add to the first: openconnect's `<group-select>NAME</group-select>` (and a
#: cookie the gateway set)
GROUP_REPOST_GROWTH = 150


def _init_rounds(login: list) -> int:
    """How many of the first login rounds ((connection, inference.Round) pairs) are the init (group selection): the
    first, and each next one that posts a little more than it (openconnect posts init again with the group chosen
    from the gateway's list) and whose answer ends with a record of exactly the size of the first's last one — the
    same form again (TLS 1.3 session tickets may come before the first). A wrong password's form carries the
    gateway's error (another size); an answer to credentials is another document."""
    first = login[0][1]
    form = [n for _t, d, n, _f in first.records if d == "s2c"]
    k = 1
    while k < len(login):
        rd = login[k][1]
        got = [n for _t, d, n, _f in rd.records if d == "s2c"]
        if not (form and got and got[-1] == form[-1]
                and 0 <= rd.request_bytes - first.request_bytes <= GROUP_REPOST_GROWTH):
            break
        k += 1
    return k


def _no_tunnel(grp: Phase, auth: Phase, cstp: Phase, live: list[ConnectionReading], rounds: list[InferredRound],
               closed: bool, inits: int = 1) -> None:
    """No tunnel came up: which request the gateway refused, from the size of its answers (an aggregate-auth
    answer is an XML document of several hundred bytes, a 200 CONNECTED carries the X-CSTP-* headers; an HTTP
    error — 404 to the first POST, 401/503 to a CONNECT — is a status line and a few headers) and from what the
    client did next (a new connection after the login rounds: it went on to the tunnel's)."""
    if not rounds:
        return
    first = rounds[0]
    every = sorted((rd for r in live for rd in r.rounds), key=lambda rd: rd.start)
    last = every[-1] if every else None
    if _small(first):
        why = (f"the gateway answered the first request with {first.response_bytes} bytes: an HTTP error, not an "
               "aggregate-auth form")
        fr = [first.frame] + ([first.response_frame] if first.response_frame else [])
        if grp.status == "undecrypted":
            grp.inferred = PhaseInference(status="failed", confidence="medium", basis=why, frames=fr,
                                          rounds=rounds[:1])
        if auth.status == "undecrypted" and len(rounds) == 1:
            auth.inferred = PhaseInference(status="absent", confidence="medium", basis=why, frames=fr)
        if cstp.status == "undecrypted":
            cstp.inferred = PhaseInference(status="absent", confidence="low", basis=why, frames=fr)
        return
    auth_rounds = rounds[inits:]
    frames = [x.frame for x in auth_rounds][:20]
    if last is not None and last.frame != first.frame and _small(last):
        why = (f"{len(auth_rounds) - 1} round(s) after the init answered with full documents, then the last request "
               f"(frame {last.frame}) got a {last.response_bytes}-byte answer: an HTTP error, a refused CONNECT "
               "(401/503) most likely")
        fr = [last.frame] + ([last.response_frame] if last.response_frame else [])
        if auth.status == "undecrypted":
            auth.inferred = PhaseInference(status="ok", confidence="low", basis=why, frames=frames[:-1],
                                           rounds=auth_rounds[:-1], auth_rounds=max(len(auth_rounds) - 1, 0))
        if cstp.status == "undecrypted":
            cstp.inferred = PhaseInference(status="failed", confidence="low", basis=why, frames=fr)
        return
    end = max((rd.end or rd.start) for rd in every) if every else None
    later = [r for r in live if end is not None and r.conn.first_ts > end]
    if auth.status == "undecrypted" and auth_rounds:
        if later:
            auth.inferred = PhaseInference(
                status="ok", confidence="low",
                basis=f"{len(auth_rounds)} round(s) after the init, then the client opened a new connection "
                      f"({', '.join(f'tcp.stream {r.conn.index}' for r in later[:3])}) that got no tunnel",
                frames=frames, rounds=auth_rounds, auth_rounds=len(auth_rounds))
        elif closed:
            auth.inferred = PhaseInference(
                status="failed", confidence="low",
                basis=f"{len(auth_rounds)} round(s) after the init answered, no new connection, no tunnel: the "
                      "connections closed",
                frames=frames, rounds=auth_rounds, auth_rounds=len(auth_rounds))
    if cstp.status == "undecrypted" and closed:
        cstp.inferred = PhaseInference(status="absent", confidence="low",
                                       basis="no connection with a CONNECT round followed by CSTP records or DTLS",
                                       frames=[])


def dtls_mode(f) -> tuple[str | None, str]:
    """The DTLS mode from the clear hellos of a flow (`DTLSFlowSummary`): (mode, why)."""
    sh = f.server_hello
    if f.version == "DTLS 0x0100" or any(h.version == 0x0100 for h in f.client_hellos[:4]):
        return "legacy-0x0100", "Cisco's pre-standard DTLS version 0x0100"
    if f.cipher_suite and "_PSK_" in f.cipher_suite:
        return "psk-negotiate", f"the ServerHello chose the PSK suite {f.cipher_suite}"
    if sh is not None and f.client_hellos and sh.session_id and sh.session_id == f.client_hellos[0].session_id:
        return "legacy", "the ServerHello resumes the ClientHello's session id (X-DTLS-Session-ID)"
    return None, ""


def reading(p: Phase, confident: bool = True) -> str:
    """The phase's status, or — when it was not read (`undecrypted`) — the status the keyless reading gives
    (with ``confident``, only a `high`-confidence one)."""
    inf = p.inferred
    if p.status == "undecrypted" and inf is not None and (not confident or inf.confidence == "high"):
        return inf.status
    return p.status


def tunnels(session) -> list[InferredTunnel]:
    """The tunnel connections the keyless reading found (empty when the session was decrypted)."""
    inf = session.phase("cstp-connect").inferred
    return list(inf.tunnels or []) if inf is not None else []
