"""Terminal renderer (rich): one screen per session — the verdict first, then the phase timeline, findings
(repeated ones grouped), tunnel statistics.

The layout follows the terminal's width (`width`; the real terminal's, else COLUMNS): at 140 columns and more the
phases are a table, below that each phase takes two lines, and every long line wraps with a hanging indent. Times
show relative (+s from the session start) and absolute (in the `--tz` zone). `--verbose` adds the HTTP headers
and the aggregate-auth XML of phases 2, 3 and 5 (secrets redacted unless `--show-secrets`). `--summary`
(`render_summary`) gives one line per session.
"""
from __future__ import annotations

import io
import shutil
import textwrap
from pathlib import Path

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..capture_point import describe_interface, tunnel_devices
from ..model import reveal
from ..phases.cstp_connect import connect_details
from ..phases.dtls import records_lost_line
from ..phases.group_selection import GroupSelectionDetails
from ..phases.record import opt
from ..phases.user_auth import UserAuthDetails
from ..selection import usernames
from ..timefmt import UTC, clock, stamp
from ..verdict import text_with_clock
from ..wording import captive_portals_line, plural, tls_servers_line

STATUS_STYLE = {"ok": "green", "failed": "bold red", "absent": "dim", "undecrypted": "yellow",
                "before-capture": "blue", "incomplete": "blue",
                "not-captured": "blue"}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
OUTCOME_STYLE = {"healthy": "bold green", "degraded": "bold yellow", "tunnel-lost": "bold red",
                 "failed": "bold red", "inconclusive": "bold blue"}
WIDE = 140  # from this many columns the phases are a table with a "what happened" column
GROUP_MIN = 3  # this many findings with one id and severity in a session are shown as one group
DEFAULT_WIDTH = 100  # no terminal and no COLUMNS


def terminal_width(width: int | None = None) -> int:
    """The columns to lay out for: `width` if given, else the terminal's (COLUMNS first), at least 40."""
    if width is None:
        width = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return max(40, int(width))


def _iso(ts: float | None, tz=None) -> str:
    return stamp(ts, tz)


def _rel(ts: float | None, t0: float | None) -> str:
    """Seconds from the session's start, signed ("-0.005s": a packet just before it, seen in another flow)."""
    if ts is None or t0 is None:
        return ""
    d = round(ts - t0, 3)
    return f"{'-' if d < 0 else '+'}{abs(d):.3f}s"


def _when(ts: float | None, t0: float | None, tz) -> str:
    """'+4.355s (07:13:26.042)': relative and absolute."""
    r, c = _rel(ts, t0), clock(ts, tz)
    return f"{r} ({c})" if r and c else r or c


def _dur(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return ""
    d = b - a
    return f"{d * 1000:.0f} ms" if d < 1 else f"{d:.1f} s"


def _frames(frames: list[int], limit: int = 6) -> str:
    fs = sorted(set(frames))
    if not fs:
        return ""
    if len(fs) <= limit:
        return ",".join(map(str, fs))
    return f"{fs[0]}…{fs[-1]} ({len(fs)})"


def _wrap(con: Console, text: str, indent: int, hang: int | None = None, style: str = "",
          prefix: Text | None = None) -> None:
    """Print `text` wrapped to the console width: the first line at `indent` — or right after `prefix` (styled),
    which then takes the first columns —, the following ones at `hang` (default: `indent`). Plain text: never read
    as markup."""
    width = con.width - 1
    hang = indent if hang is None else hang
    if prefix is not None:
        indent = len(prefix.plain)
    first = " " * indent
    lines = textwrap.wrap(text, width=max(20, width), initial_indent=first, subsequent_indent=" " * hang,
                          break_on_hyphens=False, break_long_words=True) or [first]
    for i, line in enumerate(lines):
        t = Text()
        if i == 0 and prefix is not None:
            t.append_text(prefix)
            line = line[indent:]
        t.append(line, style=style)
        con.print(t, soft_wrap=True)


def _console(color: bool, width: int | None) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=color, no_color=not color, width=terminal_width(width),
                  highlight=False, emoji=False)
    return con, buf


def _filters_line(con: Console, filters: dict | None) -> None:
    if not filters:
        return
    parts = [f"--{k} " + (" ".join(map(str, v)) if isinstance(v, list) else stamp(v, UTC) if k in ("since", "until")
                          else str(v)) for k, v in filters.items()
             if k not in ("shown", "total", "gateway_addresses", "user_unknown")]
    for name, addrs in (filters.get("gateway_addresses") or {}).items():  # --gateway NAME, as the capture resolved it
        parts.append(f"{name} = {' '.join(addrs)}" if addrs else f"{name} not found in the capture")
    unread = filters.get("user_unknown")
    _wrap(con, f"filters {', '.join(parts)}: {filters['shown']} of {plural(filters['total'], 'session')} "
               "shown" + (f" ({plural(unread, 'session')} whose login was not read — no keys, single sign-on, a "
                          "certificate — cannot match --user)" if unread else ""), 2, 4)


def render_terminal(analysis, *, version: str, verbose: bool = False, show_secrets: bool = False,
                    color: bool = False, tz=None, width: int | None = None, filters: dict | None = None) -> str:
    tz = tz or UTC
    con, buf = _console(color, width)
    for ci in analysis.captures:
        _wrap(con, f"— {ci.path}: {plural(ci.frames, 'frame')}, {_iso(ci.first, tz)} … {_iso(ci.last, tz)}", 0, 4,
              prefix=Text(f"acflow {version} ", style="bold"))
        keys = ci.keys or {}
        line = (f"keys: {plural(len(keys.get('keylog_files', [])), 'key log')}, "
                f"{plural(len(keys.get('rsa_keys', [])), 'RSA key')}, {plural(keys.get('entries', 0), 'entry')}")
        if keys.get("embedded_secrets"):
            line += f", {plural(keys['embedded_secrets'], 'embedded secrets block')}"
        _wrap(con, line, 2, 4)
        for e in ci.errors[:10]:
            _wrap(con, f"capture problem: {e}", 2, 4, style="yellow")
        for e in (keys.get("keylog_errors") or [])[:5]:
            _wrap(con, f"key log: {e}", 2, 4, style="yellow")
    _filters_line(con, filters)
    _path_line(con, getattr(analysis, "path", None))
    if not analysis.sessions:
        con.print()
        tun = tunnel_devices(analysis.captures)
        _wrap(con, ("No session matches the filters." if filters and filters.get("total") else
                    f"No AnyConnect-protocol session found: the capture was taken on "
                    f"{describe_interface(tun[0][1])}, the VPN's tunnel device, which carries the traffic inside "
                    "the tunnel, not the VPN's connection: capture on the interface that reaches the gateway."
                    if tun else
                    "No AnyConnect-protocol session found: no flow in this capture shows evidence of the protocol "
                    "(use --gateway ADDR[:PORT] or --gateway NAME if you know the gateway)."), 0, 2)
    for s in analysis.sessions:
        _session(con, s, verbose, show_secrets, several_captures=len(analysis.captures) > 1, tz=tz)
    _other_traffic(con, getattr(analysis, "other_traffic", None) or {})
    for f in analysis.findings:
        _wrap(con, f"{f.message}", 2, 4, prefix=Text(f"{f.severity.upper()} {f.id}: ",
                                                     style=SEVERITY_STYLE.get(f.severity, "")))
    return _trim(buf.getvalue())


def _path_line(con: Console, path) -> None:
    """`--other-side`: the comparison in one sentence (`PathReport.summary`), the other capture's problems."""
    if path is None:
        return
    _wrap(con, path.summary(), 2, 4)
    for e in path.b.errors[:5]:
        _wrap(con, f"other side's capture problem: {e}", 2, 4, style="yellow")


def _trim(text: str) -> str:
    """No trailing blanks (rich pads table cells to the column width)."""
    return "\n".join(line.rstrip(" ") for line in text.split("\n"))


def render_summary(analysis, *, color: bool = False, tz=None, width: int | None = None,
                   filters: dict | None = None) -> str:
    """`--summary`: one line per session — id, client, user (the login's username, when read), gateway, start, duration,
    outcome, worst severity, verdict
    (cut to the width with '…'; the full verdict is in the normal report and the JSON)."""
    tz = tz or UTC
    con, buf = _console(color, width)
    _filters_line(con, filters)
    rows = []
    for s in analysis.sessions:
        v = s.verdict
        worst = (v.worst_severity if v is not None else None) or "none"
        rows.append((s.id, s.client, ",".join(usernames(s)) or "-", s.gateway, _iso(s.start, tz).rsplit(".", 1)[0],
                     _dur(s.start, s.end) or "?", v.outcome if v is not None else "?", worst,
                     v.text if v is not None else ""))
    if not rows:
        con.print("no session" + (" matches the filters" if filters else ""))
        return buf.getvalue()
    zone = next((_iso(s.start, tz).rsplit(" ", 1)[-1] for s in analysis.sessions if s.start is not None), "UTC")
    heads = ("id", "client", "user", "gateway", f"start ({zone})", "duration", "outcome", "worst", "verdict")
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads[:-1])]
    fixed = sum(w) + 2 * len(w)
    room = con.width - 1 - fixed
    below = room < 30  # a narrow terminal: the verdict goes on its own line under the session's fields
    if below:
        if fixed - w[2] - 2 > con.width - 1:  # not even the fields fit: the user goes to the verdict's line
            heads = heads[:2] + heads[3:]
            rows = [r[:2] + r[3:-1] + ((f"{r[2]}: " if r[2] != "-" else "") + r[-1],) for r in rows]
            w = w[:2] + w[3:]
        room = con.width - 1 - 4
    cells = "  ".join(h.ljust(w[i]) for i, h in enumerate(heads[:-1]))
    con.print(Text(cells.rstrip() if below else cells + "  verdict", style="bold"), soft_wrap=True)
    last = len(heads) - 2  # the worst severity's cell, the last before the verdict
    for r in rows:
        verdict = r[-1] if len(r[-1]) <= room else r[-1][:room - 1] + "…"
        t = Text()
        for i, cell in enumerate(r[:-1]):
            style = (OUTCOME_STYLE.get(cell, "") if i == last - 1 else SEVERITY_STYLE.get(cell, "") if i == last
                     else "")
            t.append(cell.ljust(w[i]) if i < last or not below else cell, style=style)
            if i < last or not below:
                t.append("  ")
        if below:
            con.print(t, soft_wrap=True)
            con.print(Text("    " + verdict), soft_wrap=True)
        else:
            t.append(verdict)
            con.print(t, soft_wrap=True)
    if len(rows) > 1:
        con.print()
        _wrap(con, tally(analysis.sessions), 0, 2)
    return _trim(buf.getvalue())


#: the order outcomes are counted in (analyzer/verdict.py OUTCOMES, the worst first)
_OUTCOME_ORDER = ("failed", "tunnel-lost", "degraded", "inconclusive", "healthy")


def tally(sessions) -> str:
    """One line over many sessions (a gateway's capture): how many ended each way, and the findings with the number
    of sessions that have each — errors and warnings first, the commonest first (`--summary`)."""
    outcomes: dict[str, int] = {}
    found: dict[tuple[str, str], int] = {}
    for s in sessions:
        o = s.verdict.outcome if s.verdict is not None else "?"
        outcomes[o] = outcomes.get(o, 0) + 1
        for key in {(f.severity, f.id) for f in s.findings}:
            found[key] = found.get(key, 0) + 1
    order = {o: i for i, o in enumerate(_OUTCOME_ORDER)}
    text = (f"{plural(len(sessions), 'session')}: "
            + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items(), key=lambda kv: order.get(kv[0], 9))))
    rank = {"error": 0, "warning": 1, "info": 2}
    top = sorted(found.items(), key=lambda kv: (rank.get(kv[0][0], 3), -kv[1], kv[0][1]))
    if top:
        shown = [f"{fid} {n}" for (_sev, fid), n in top[:10]]
        text += ("; sessions with each finding: " + ", ".join(shown)
                 + (f", and {len(top) - 10} more" if len(top) > 10 else ""))
    return text


def _bytes(n: int) -> str:
    for unit, k in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} B"


def _other_traffic(con: Console, o: dict) -> None:
    """One short block for every flow that is not a VPN session (never a session, never a finding)."""
    if not o.get("flows"):
        return
    con.print()
    con.print(Text.assemble(("Other traffic", "bold"), f" (not AnyConnect): {plural(o['flows'], 'flow')}, "
                                                      f"{_bytes(o.get('bytes', 0))}"))
    rows = o.get("by_protocol") or []
    parts = [f"{r['protocol']}/{r['server_port']} ×{r['flows']} ({_bytes(r['bytes'])})" for r in rows[:12]]
    more = len(rows) - 12 + (o.get("more_protocols") or 0)
    _wrap(con, ", ".join(parts) + (f", and {more} more" if more > 0 else ""), 2, 4)
    if o.get("ipsec"):
        from ..ipsec import describe  # noqa: PLC0415

        _wrap(con, describe(o["ipsec"]), 2, 4)
    talkers = o.get("top_talkers") or []
    if talkers:
        _wrap(con, "top talkers: " + ", ".join(f"{t['client']} ↔ {t['server']} {_bytes(t['bytes'])}"
                                               for t in talkers), 2, 4)
    if o.get("tls_servers"):
        _wrap(con, "TLS servers: " + tls_servers_line(o["tls_servers"]), 2, 4)
    if o.get("captive_portal"):
        _wrap(con, captive_portals_line(o["captive_portal"]), 2, 4)


def _session(con: Console, s, verbose: bool, show_secrets: bool, several_captures: bool = False, tz=None) -> None:
    con.print()
    con.rule(Text.assemble((f"Session {s.id}", "bold"), f"  client {s.client} → gateway {s.gateway}"), align="left")
    v = getattr(s, "verdict", None)
    if v is not None:
        _wrap(con, text_with_clock(v, s.start, lambda ts: clock(ts, tz)), 0, 4,
              prefix=Text.assemble("  ", (v.outcome.upper(), OUTCOME_STYLE.get(v.outcome, "bold")), "  "))
    if several_captures and s.captures:
        # stream numbers count per capture file, as in Wireshark: say which file they are of
        _wrap(con, f"capture{'s' if len(s.captures) > 1 else ''}: " + ", ".join(s.captures), 2, 4)
    flows = [c.connection + (f" ({Path(c.capture).name})" if len(s.captures) > 1 and c.capture else "")
             + (" (never connected)" if getattr(c, "failed_connect", False) else "") for c in s.connections[:8]]
    _wrap(con, f"start {_iso(s.start, tz)}, duration {_dur(s.start, s.end) or '?'}, "
               f"{plural(len(s.connections), 'flow')}: " + ", ".join(flows), 2, 4)
    for n in getattr(s, "notes", None) or []:
        _wrap(con, n, 2, 4)
    for c in s.connections:
        px = getattr(c, "proxy", None)
        if px:  # the gateway named above is the proxy the client went through
            refused = "; after " + ", ".join(r["response"] for r in px["refused"]) if px.get("refused") else ""
            _wrap(con, f"through the HTTP proxy {s.gateway}: {px.get('request') or 'CONNECT ?'} → "
                       f"{px.get('response') or 'no answer in the capture'} (frame {px.get('frame')}, "
                       f"{c.connection}{refused})", 2, 4)
    ev = getattr(s, "evidence", None) or []
    if ev:
        conf = getattr(s, "confidence", "confirmed")
        # the codes (docs/json-schema.md); a session recognised without keys also says why in words
        _wrap(con, f"AnyConnect evidence ({conf}): " + ", ".join(e["code"] for e in ev), 2, 4)
        if conf != "confirmed":
            _wrap(con, "; ".join(e["text"] for e in ev[:3]), 4, 4)
    sw = getattr(s, "client_software", None) or {}
    users = usernames(s)
    if sw:
        _wrap(con, "client: " + (f"{sw['name']}" + (f" {sw['version']}" if sw.get("version") else "")
                                 if sw.get("name") != "unknown" else "unknown") + f" ({sw.get('evidence')})"
              + (f"; user {', '.join(users)}" if users else ""), 2, 4)
    if con.width >= WIDE:
        _phase_table(con, s, tz)
    else:
        _phase_lines(con, s, tz)
    if s.findings:
        con.print(Text("Findings", style="bold"))
        for group in _groups(s.findings):
            _finding(con, group, s.start, tz)
    else:
        con.print(Text.assemble(("Findings", "bold"), ": none"))
    _tunnel(con, s)
    if verbose:
        _verbose(con, s, show_secrets)


def _phase_table(con: Console, s, tz) -> None:
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col, kw in (("#", {"justify": "right"}), ("phase", {"no_wrap": True}), ("t", {"justify": "right"}),
                    ("at", {"no_wrap": True}), ("duration", {"justify": "right", "no_wrap": True}),
                    ("status", {"no_wrap": True}), ("frames", {"no_wrap": True}), ("what happened", {})):
        t.add_column(col, **kw)
    for i, p in enumerate(s.phases, 1):
        status, summary = _status_and_summary(p)
        t.add_row(str(i), p.phase, _rel(p.start, s.start), clock(p.start, tz), _dur(p.start, p.end), status,
                  _frames(p.frames), Text(summary))
    con.print(t)
    _inferred_note(con, s)


def _status_and_summary(p) -> tuple[Text, str]:
    """A phase's status and what happened; a keyless reading (`Phase.inferred`, when the analysis made one) is
    added as 'status → inferred?' with its confidence and basis."""
    status, summary = Text(p.status, style=STATUS_STYLE.get(p.status, "")), p.summary
    inf = getattr(p, "inferred", None)
    if inf is not None:
        status.append(f" → {inf.status}?", style=STATUS_STYLE.get(inf.status, ""))
        summary = f"{summary}; inferred ({inf.confidence}): {inf.basis}"
    return status, summary


def _inferred_note(con: Console, s) -> None:
    if any(getattr(p, "inferred", None) is not None for p in s.phases):
        _wrap(con, "x → y?: status y inferred without keys from record sizes and timing (not read)", 2, 4,
              style="dim")


def _phase_lines(con: Console, s, tz) -> None:
    """The phases on a narrow terminal: a line of numbers per phase, then what happened, indented."""
    rows = [(p, *_status_and_summary(p)) for p in s.phases]
    sw = max((len(st.plain) for _, st, _ in rows), default=0) + 2
    for i, (p, status, summary) in enumerate(rows, 1):
        head = Text(f"  {i} {p.phase:<16}")
        head.append_text(status)
        head.append(" " * (sw - len(status.plain)))
        when = " ".join(x for x in (_rel(p.start, s.start), clock(p.start, tz), _dur(p.start, p.end)) if x)
        head.append(when)
        con.print(head, soft_wrap=True)
        frames = _frames(p.frames)
        text = summary + (f" — frames {frames}" if frames else "")
        if text.strip():
            _wrap(con, text, 6, 6)
    _inferred_note(con, s)


def _groups(findings: list) -> list[list]:
    """Findings in their order, those sharing an id and severity at least GROUP_MIN times as one group (placed
    where the first of them was)."""
    count: dict = {}
    for f in findings:
        count[(f.id, f.severity)] = count.get((f.id, f.severity), 0) + 1
    out: list[list] = []
    where: dict = {}
    for f in findings:
        k = (f.id, f.severity)
        if count[k] >= GROUP_MIN:
            if k in where:
                out[where[k]].append(f)
                continue
            where[k] = len(out)
        out.append([f])
    return out


def _finding(con: Console, group: list, t0, tz) -> None:
    f = group[0]
    head = Text.assemble((f"  {f.severity.upper():7} ", SEVERITY_STYLE.get(f.severity, "")), (f.id, "bold"),
                         " (inferred)" if getattr(f, "inferred", False) else "")
    if len(group) == 1:
        head.append(f"  {_when(f.time, t0, tz)}" if f.time is not None else "")
        head.append(f"  frames {_frames(f.frames)}" if f.frames else "")
        con.print(head, soft_wrap=True)
        _wrap(con, f.message, 11, 11)
    else:
        times = [x.time for x in group if x.time is not None]
        frames = sorted({fr for x in group for fr in x.frames})
        head.append(f" ×{len(group)}", style="bold")
        con.print(head, soft_wrap=True)
        span = (f"first {_when(min(times), t0, tz)}, last {_when(max(times), t0, tz)}" if times else "")
        _wrap(con, "; ".join(x for x in (span, f"frames {_frames(frames, limit=8)}" if frames else "") if x),
              11, 11)
        _wrap(con, f"first: {f.message}", 11, 13)
        if group[-1].message != f.message:
            _wrap(con, f"last: {group[-1].message}", 11, 13)
    if f.remedy:
        _wrap(con, f"→ {f.remedy}", 11, 13, style="dim")
    if f.id == "DTLS_BACKOFF":
        _backoff_table(con, f.evidence)


def _tunnel(con: Console, s) -> None:
    t = s.tunnel
    if t is None or not (t.cstp or t.dtls or t.tls_undecrypted):
        return
    con.print(Text("Tunnel", style="bold"))
    hidden = t.tls_undecrypted
    if hidden:
        r = hidden.records
        _wrap(con, f"TLS  not decrypted: {plural(r['c2s'] + r['s2c'], 'record')} on {hidden.connection} "
                   f"(client→gateway {r['c2s']}, gateway→client {r['s2c']})", 2, 7)
        _cstp_estimate(con, s)
    for ch, c in (("cstp", t.cstp), ("dtls", t.dtls)):
        if not c:
            continue
        ip, ib = c.inner_packets, c.inner_bytes
        und = c.undecrypted_records if ch == "dtls" else {}
        if sum(und.values()) and not sum(ip.values()):
            _wrap(con, f"{ch.upper():4} not decrypted: {plural(sum(und.values()), 'record')} (client→gateway "
                       f"{und.get('c2s', 0)}, gateway→client {und.get('s2c', 0)})", 2, 7)
            if ch == "dtls":
                _dtls_estimate(con, s)
            continue
        line = (f"{ch.upper():4} inner packets client→gateway {ip['c2s']} ({ib['c2s']} B), "
                f"gateway→client {ip['s2c']} ({ib['s2c']} B)")
        if ch == "cstp":
            line += f"; DPD req {c.dpd['c2s']}/{c.dpd['s2c']}, keepalives {c.keepalives['c2s']}/{c.keepalives['s2c']}"
        _wrap(con, line, 2, 7)
    _dtls_records_lost(con, s)
    dev = opt(t.device)
    if dev is not None:
        _wrap(con, f"VPN adapter's packets ({dev.interface}" + (f", {dev.capture}" if dev.capture else "")
                   + f"): {plural(dev.packets, 'packet')} inside the tunnel in the clear, tunnel address "
                     f"{dev.address}, frames {dev.first_frame}–{dev.last_frame}"
                   + (f" (spanning {dev.shared_by} sessions: each reads those of its own time)"
                      if opt(dev.shared_by) else ""), 2, 7)
    end = t.end
    if end:
        who = "client" if end.direction == "c2s" else "gateway"
        _wrap(con, f"ended: {end.type} from the {who} over {end.channel.upper()} at {_rel(end.ts, s.start)}"
                   + (f", reason {end.reason!r}" if end.reason else "") + f" (frame {end.frame})", 2, 4)


def _dtls_records_lost(con: Console, s) -> None:
    """The DTLS records that never reached the capture point, per direction (below DTLS_RECORDS_LOST's threshold
    too)."""
    line = records_lost_line(s.phase("dtls").details)
    if line:
        _wrap(con, f"DTLS records lost before the capture point (their record numbers skip): {line}", 2, 7)


def _dtls_estimate(con: Console, s) -> None:
    """The keyless estimate of the DTLS channel (record sizes), summed over the session's flows."""
    d = s.phase("dtls").details
    ests = [f.estimate for f in getattr(d, "flow_list", []) if f.estimate]
    if not ests:
        return

    def side(k):
        data = sum(getattr(e, k).data for e in ests)
        lo, hi = sum(getattr(e, k).inner_bytes_least for e in ests), sum(getattr(e, k).inner_bytes_most for e in ests)
        return f"{data} data packets ({lo} B)" if lo == hi else f"{data} data packets ({lo}–{hi} B)"

    answered = sum(e.control_answered for e in ests)
    unanswered = sum(e.control_unanswered for e in ests)
    probes = sum((opt(getattr(e.c2s, "mtu_probes", None)) or 0) + (opt(getattr(e.s2c, "mtu_probes", None)) or 0)
                 for e in ests)
    _wrap(con, f"estimated from record sizes: client→gateway {side('c2s')}, gateway→client {side('s2c')}; "
               f"control packets {answered} answered (DPD), {unanswered} unanswered (keepalives or lost DPD)"
               + (f"; MTU probes {probes}" if probes else ""), 7, 9)


def _cstp_estimate(con: Console, s) -> None:
    """The keyless reading of the tunnel connections (`Phase.inferred` of cstp-connect, when the analysis made
    one): when each came up and ended, its CSTP frames by class from record sizes."""
    inf = getattr(s.phase("cstp-connect"), "inferred", None)
    for t in (getattr(inf, "tunnels", None) or []) if inf is not None else []:
        ended = {None: "still up at the capture's end", "close": "connection closed"}.get(t.ended_by, t.ended_by)
        up = (f"up at {_rel(t.established_time, s.start)} (frame {t.established_frame})"
              if t.established_time is not None else "up before the capture started")
        _wrap(con, f"CSTP inferred on {t.connection}: {up}, ended {_rel(t.end_time, s.start)} ({ended})", 2, 7)
        e = t.estimate
        if e is None:
            continue

        def side(k, e=e):
            d = getattr(e, k)
            lo, hi = d.inner_bytes_least, d.inner_bytes_most
            return f"{d.data} data packets ({lo} B)" if lo == hi else f"{d.data} data packets ({lo}–{hi} B)"

        cls = {k: e.frame_classes["c2s"].get(k, 0) + e.frame_classes["s2c"].get(k, 0)
               for k in ("DPD_REQ", "DPD_RESP", "KEEPALIVE", "DISCONNECT", "TERMINATE", "END")}
        _wrap(con, f"estimated from record sizes: client→gateway {side('c2s')}, gateway→client {side('s2c')}; "
                   + ", ".join(f"{k} {n}" for k, n in cls.items() if n), 7, 9)


def _verbose(con: Console, s, show_secrets: bool) -> None:
    """Headers and XML as they were sent: each line whole (soft wrap: the terminal folds a long line, copying or
    grepping it gives it intact; an element is never cut in two by the layout)."""
    g = s.phase("group-selection").details
    for post in g.posts if isinstance(g, GroupSelectionDetails) else []:
        con.print(f"[bold]POST {post.target}[/] (frame {post.frame}) → {opt(post.status)}")
        for k, v in reveal(post.headers, show_secrets) or []:
            con.print(f"    {k}: {v}", markup=False, soft_wrap=True)
    a = s.phase("user-auth").details
    for r in a.rounds if isinstance(a, UserAuthDetails) else []:
        con.print(f"[bold]POST {r.target}[/] {r.type} (frame {r.frame}) → {opt(r.status)} "
                  f"{r.response_type or ''}")
        con.print("    " + str(reveal(r.xml, show_secrets)), markup=False, soft_wrap=True)
    c = connect_details(s.phase("cstp-connect"))
    for cx in c.connects if c is not None else []:
        con.print(f"[bold]CONNECT {cx.target}[/] (frame {cx.frame}) → {opt(cx.status)} {cx.reason or ''}")
        for k, v in reveal(cx.request_headers, show_secrets) or []:
            con.print(f"  > {k}: {v}", markup=False, soft_wrap=True)
        for k, v in reveal(cx.response_headers, show_secrets) or []:
            con.print(f"  < {k}: {v}", markup=False, soft_wrap=True)


def _backoff_table(con: Console, ev: dict) -> None:
    """Measured DTLS retry intervals next to the openconnect and AnyConnect schedules."""
    t = Table(box=box.SIMPLE, show_edge=False, pad_edge=False, title=None)
    for col in ("attempt", "retry", "measured", "openconnect", "AnyConnect"):
        t.add_column(col, justify="right")
    ac = {i: row for i, row in enumerate((ev.get("anyconnect") or {}).get("intervals") or [])}
    oc_rows = (ev.get("openconnect") or {}).get("intervals") or []
    k = 0
    for a, intervals in enumerate(ev.get("retransmit_intervals") or [], 1):
        for i, m in enumerate(intervals):
            oc = oc_rows[a - 1][i] if a - 1 < len(oc_rows) and i < len(oc_rows[a - 1]) else {}
            acr = ac.get(k, {}) if a == 1 else {}
            k += 1

            def cell(row):
                if not row or row.get("expected") is None:
                    return "—"
                return f"{row['expected']:g}s " + ("✓" if row.get("within_tolerance") else "✗")

            t.add_row(str(a), str(i + 1), f"{m:g}s", cell(oc), cell(acr))
    for i, b in enumerate(ev.get("between_attempts") or [], 1):
        exp = (ev.get("openconnect") or {}).get("expected_between_attempts")
        t.add_row(f"{i}→{i + 1}", "new attempt", f"{b:g}s", f"~{exp:g}s" if exp else "—", "—")
    con.print(Padding(t, (0, 0, 0, 11), expand=False))  # under its finding, at the message's indent
