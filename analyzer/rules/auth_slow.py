"""AUTH_SLOW and AUTH_NO_ANSWER: phase 3, the gateway's answer to the client's credentials took long, or never came.

A gateway answers a login once its authentication server has: a RADIUS or LDAP server answers in well under a
second, one that sends a multi-factor push (Duo, Microsoft Authenticator through NPS) only once the user approves it
on the phone. The client does not wait for ever: AnyConnect gives up after its authentication timeout — 12 s before
4.8.02045, 30 s since (profile: Authentication Timeout, up to 120 s); an ASA itself sends its RADIUS request again
after its aaa-server timeout (10 s by default), and with a push server that means a second push before the user
answered the first.

* AUTH_SLOW: an auth round (the credentials, or an answer to a challenge) answered `SLOW` seconds or more after it
  was sent — info below `OLD_CLIENT_GIVES_UP` (an approved push), warning from it (the older client gives up; at
  `CLIENT_GIVES_UP` and beyond the current one too);
* AUTH_NO_ANSWER: the last auth round got no answer — error when the client closed the connection (it gave up) or
  the gateway closed it without answering, info when the capture ended while the client waited (`SLOW` s or more).

Keyed from the user-auth rounds (request and answer times; `UserAuthDetails.unanswered`), without keys from the
inferred rounds (the client's request records, the gateway's answer records) and the connection's close. Scripted
cases `auth-mfa-slow` (answered after 20 s) and `auth-client-gives-up` (the client gives up after 13 s).
"""
from __future__ import annotations

from ..model import Finding
from ..phases.record import opt
from ..phases.user_auth import UserAuthDetails, unanswered_end

RULE_IDS = ("AUTH_SLOW", "AUTH_NO_ANSWER")

SLOW = 5.0  # s: a password check takes well under a second; this long is a push waiting, or a slow server
OLD_CLIENT_GIVES_UP = 12.0  # AnyConnect's authentication timeout before 4.8.02045
CLIENT_GIVES_UP = 30.0  # since

WHY = ("the gateway's authentication server took that long — a multi-factor push waiting for the user's approval on "
       "the phone, or a RADIUS/LDAP server slow to answer")
REMEDY = ("If the users approve a multi-factor push, give them the time: the client's Authentication Timeout (its "
          "profile; AnyConnect before 4.8.02045 waits 12 s, later 30 s, at most 120 s) and the gateway's timeout for "
          "its authentication server (ASA: aaa-server … timeout, 10 s by default — past it the ASA asks again, and the "
          "user gets a second push) must both be longer than a user takes to answer. Otherwise find why the "
          "authentication server is slow (ASA: test aaa-server authentication, debug radius).")


def _rounds(session) -> list[dict]:
    """The session's auth rounds: {time, frame, answer_time, answer_frame, connection, inferred}."""
    p = session.phase("user-auth")
    d = p.details if isinstance(p.details, UserAuthDetails) else None
    if d is not None and d.rounds:
        if opt(d.sso) is not None:
            return []  # a single sign-on's token post: the waiting was the browser's (AUTH_SSO_INCOMPLETE)
        return [{"time": r.time, "frame": r.frame, "answer_time": opt(r.response_time),
                 "answer_frame": opt(r.response_frame), "connection": None, "inferred": False} for r in d.rounds]
    inf = p.inferred
    if inf is None or opt(inf.sign_in) is not None:
        return []  # (another program's sign-in: the client's waits were the user's in a browser)
    return [{"time": r.time, "frame": r.frame, "answer_time": r.response_time, "answer_frame": r.response_frame,
             "connection": r.connection, "inferred": True} for r in opt(inf.rounds) or []]


def _unanswered(session, rd: dict) -> dict | None:
    """How an unanswered round ended: {waited, ended_by (client / gateway / capture), frame, time}."""
    d = session.phase("user-auth").details
    if not rd["inferred"]:
        return opt(d.unanswered) if isinstance(d, UserAuthDetails) else None
    conn = next((c for c in session.connections if c.connection == rd["connection"]), None)
    if conn is None:
        return None
    return unanswered_end(getattr(conn, "closed", None) or [], rd["time"],
                          conn.end if conn.end is not None else rd["time"], None)


def _clients(waited: float) -> str:
    if waited >= CLIENT_GIVES_UP:
        return (f"longer than AnyConnect waits by default ({OLD_CLIENT_GIVES_UP:g} s before 4.8.02045, "
                f"{CLIENT_GIVES_UP:g} s since)")
    if waited >= OLD_CLIENT_GIVES_UP:
        return (f"longer than AnyConnect before 4.8.02045 waits ({OLD_CLIENT_GIVES_UP:g} s; later versions "
                f"{CLIENT_GIVES_UP:g} s)")
    return ""


def check(session, ctx):
    rounds = _rounds(session)
    if not rounds:
        return []
    t0 = session.start if session.start is not None else rounds[0]["time"]
    out = []
    inferred = rounds[0]["inferred"]
    said = " (read from record timing: the client's request and the gateway's answer)" if inferred else ""
    slow = [r for r in rounds if r["answer_time"] is not None and r["answer_time"] - r["time"] >= SLOW]
    if slow:
        worst = max(slow, key=lambda r: r["answer_time"] - r["time"])
        waited = worst["answer_time"] - worst["time"]
        clients = _clients(waited)
        out.append(Finding(
            id="AUTH_SLOW", severity="warning" if clients else "info", phase="user-auth", time=worst["time"],
            frames=[worst["frame"], worst["answer_frame"]],
            message=f"The gateway took {waited:.1f} s to answer the client's login (request at "
                    f"+{worst['time'] - t0:.1f} s, frame {worst['frame']}; answer frame {worst['answer_frame']})"
                    f"{said}: {WHY}." + (f" That is {clients}: such a client gives up before the answer." if clients
                                          else "") + (f" {len(slow)} rounds were this slow." if len(slow) > 1 else ""),
            remedy=REMEDY, inferred=inferred,
            evidence={"waited": round(waited, 3), "rounds": len(slow), "request_frame": worst["frame"],
                      "answer_frame": worst["answer_frame"]}))
    last = rounds[-1]
    if last["answer_time"] is None:
        end = _unanswered(session, last)
        if end is not None and (end["ended_by"] != "capture" or end["waited"] >= SLOW):
            waited = end["waited"]
            at = f"+{last['time'] - t0:.1f} s, frame {last['frame']}"
            if end["ended_by"] == "client":
                clients = _clients(waited)
                what = (f"The client gave up waiting for the gateway's answer to its login after {waited:.1f} s "
                        f"(request at {at}; the client closed the connection, frame {end['frame']}){said}: {WHY}"
                        + (f" — {clients}" if clients else "") + ". The gateway never rejected the login.")
            elif end["ended_by"] == "gateway":
                what = (f"The gateway closed the connection {waited:.1f} s after the client's login (request at {at}; "
                        f"frame {end['frame']}) without answering it{said}: its authentication failed in a way it "
                        "does not report to the client (its authentication server unreachable, or an error), or "
                        "something between them ended the connection.")
            else:
                what = (f"The capture ended {waited:.1f} s after the client's login (request at {at}), still "
                        f"unanswered{said}: {WHY}.")
            out.append(Finding(
                id="AUTH_NO_ANSWER", severity="info" if end["ended_by"] == "capture" else "error",
                phase="user-auth", time=last["time"],
                frames=[f for f in (last["frame"], end["frame"]) if f is not None], message=what,
                remedy=REMEDY if end["ended_by"] != "gateway" else
                "Look at the gateway's authentication log for this user at that time (ASA: debug aaa, debug radius; "
                "syslog 113xxx): why the login ended without an answer.",
                inferred=inferred,
                evidence={"waited": round(waited, 3), "ended_by": end["ended_by"], "request_frame": last["frame"],
                          "end_frame": end["frame"]}))
    return out
