"""Which sessions a report shows and whether it fails a CI run (issue #17): the `--session`, `--client`,
`--user`, `--gateway`, `--since/--until` filters and `--fail-on`. Applied to the finished analysis, before
rendering."""
from __future__ import annotations

import ipaddress
import re

from .evidence import split_endpoint
from .model import Analysis
from .timefmt import parse_time

SEVERITY_LEVEL = {"info": 1, "warning": 2, "error": 3}


_USERNAME = re.compile(r"<username>([^<]*)</username>")


def usernames_in(documents) -> list[str]:
    """The usernames in these aggregate-auth reply documents (text; the redacted rendering shows them: a username is
    no secret, issue #17), in order, each once."""
    out: list[str] = []
    for text in documents:
        for name in _USERNAME.findall(text if isinstance(text, str) else ""):
            name = name.strip()
            if name and name != "«redacted»" and name not in out:
                out.append(name)
    return out


def usernames(session) -> list[str]:
    """The usernames the session's login sent (its aggregate-auth replies, decrypted), in order, each once; [] when
    the login was not read (no keys), or had none (single sign-on, a certificate)."""
    from .phases.user_auth import UserAuthDetails  # noqa: PLC0415 - the session model, only once there are sessions

    d = session.phase("user-auth").details
    return usernames_in(getattr(r.xml, "redacted", r.xml) for r in (d.rounds if isinstance(d, UserAuthDetails)
                                                                   else ()))


def select_sessions(analysis: Analysis, *, session_ids=(), clients=(), gateways=(), since=None,
                    until=None, tz=None, users=()) -> dict | None:
    """Keep the sessions that match every filter given (ids, client addresses, a time window the session overlaps);
    capture-wide findings and other traffic stay. `gateways` (GatewaySpec, --gateway) already chose the sessions
    during the analysis (its evidence role, analyzer/evidence.py); here it filters once more by the session's
    gateway address and port (a name by the addresses the analysis resolved it to: `Analysis.gateways`).
    `since`/`until`: epoch seconds or the text of --since/--until (read in `tz`; a
    time of day is on the day of the capture's first frame; ValueError when it is not a time). Returns what was
    applied (None: no filter). `users` (--user): the sessions whose login sent one of these usernames (case aside);
    a session whose login was not read cannot match (counted in `user_unknown`)."""
    if isinstance(since, str) or isinstance(until, str):
        firsts = [c.first for c in analysis.captures if c.first is not None]
        day = min(firsts) if firsts else None
        since, until = (parse_time(t, tz, day) if isinstance(t, str) else t for t in (since, until))
    if not (session_ids or clients or gateways or users or since is not None or until is not None):
        return None
    total = len(analysis.sessions)
    resolved = {g.name: g for g in analysis.gateways if g.name is not None}
    gateways = [resolved.get(g.name, g) if g.name is not None else g for g in gateways or ()]
    ids = {i.strip() for v in session_ids for i in v.split(",") if i.strip()}
    want = {_norm_addr(c) for c in clients}
    who = {u.strip().casefold() for u in users if u.strip()}
    unknown = sum(1 for s in analysis.sessions if not usernames(s)) if who else 0

    def keep(s) -> bool:
        if ids and s.id not in ids:
            return False
        if who and not who & {u.casefold() for u in usernames(s)}:
            return False
        if want and _norm_addr(split_endpoint(s.client)[0]) not in want:
            return False
        if gateways and not any(g.matches(*split_endpoint(s.gateway)) for g in gateways):
            return False
        a, b = s.start, s.end if s.end is not None else s.start
        if since is not None and (b is None or b < since):
            return False
        return not (until is not None and (a is None or a > until))

    analysis.sessions = [s for s in analysis.sessions if keep(s)]
    out: dict = {"shown": len(analysis.sessions), "total": total}
    if ids:
        out["session"] = sorted(ids)
    if clients:
        out["client"] = list(clients)
    if who:
        out["user"] = list(users)
        if unknown:  # logins not read (no keys, single sign-on, a certificate): they cannot match
            out["user_unknown"] = unknown
    if gateways:
        out["gateway"] = [g.text for g in gateways]
        names = {g.name: list(g.addresses) for g in gateways if g.name is not None}
        if names:  # --gateway NAME: the addresses the capture tied to it (DNS answers, TLS SNI)
            out["gateway_addresses"] = names
    if since is not None:
        out["since"] = since
    if until is not None:
        out["until"] = until
    return out


def _norm_addr(text: str) -> str:
    t = text.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(t))
    except ValueError:
        return t.lower()


def fails(analysis: Analysis, level: str | None) -> bool:
    """--fail-on: a finding (of a reported session, or capture-wide) at or above `level`."""
    if not level:
        return False
    floor = SEVERITY_LEVEL[level]
    found = [f for s in analysis.sessions for f in s.findings] + list(analysis.findings)
    return any(SEVERITY_LEVEL.get(f.severity, 0) >= floor for f in found)
