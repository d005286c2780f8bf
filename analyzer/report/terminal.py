"""Terminal renderer (rich): one screen per session — phase timeline, findings, tunnel statistics.

`--verbose` adds the HTTP headers and the aggregate-auth XML of phases 2, 3 and 5 (secrets redacted unless
`--show-secrets`).
"""
from __future__ import annotations

import datetime as _dt
import io
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..model import reveal
from ..phases.cstp_connect import connect_details
from ..phases.group_selection import GroupSelectionDetails
from ..phases.record import opt
from ..phases.user_auth import UserAuthDetails

STATUS_STYLE = {"ok": "green", "failed": "bold red", "absent": "dim", "undecrypted": "yellow",
                "before-capture": "blue", "incomplete": "blue"}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _iso(ts: float | None) -> str:
    if ts is None:
        return "?"
    if not -62135596800 <= ts < 253402300800:  # outside years 1..9999 (damaged capture): fromtimestamp raises
        return str(ts)
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _rel(ts: float | None, t0: float | None) -> str:
    if ts is None or t0 is None:
        return ""
    return f"+{ts - t0:.3f}s"


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


def render_terminal(analysis, *, version: str, verbose: bool = False, show_secrets: bool = False,
                    color: bool = False) -> str:
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=color, no_color=not color, width=140, highlight=False)
    for ci in analysis.captures:
        con.print(f"[bold]acflow {version}[/] — {ci.path}: {ci.frames} frames, {_iso(ci.first)} … {_iso(ci.last)}")
        keys = ci.keys or {}
        con.print(f"  keys: {len(keys.get('keylog_files', []))} key log(s), {len(keys.get('rsa_keys', []))} RSA "
                  f"key(s), {keys.get('entries', 0)} entries"
                  + (f", {keys['embedded_secrets']} embedded secrets block(s)" if keys.get("embedded_secrets") else ""))
        for e in ci.errors[:10]:
            con.print(f"  [yellow]capture problem:[/] {e}")
        for e in (keys.get("keylog_errors") or [])[:5]:
            con.print(f"  [yellow]key log:[/] {e}")
    if not analysis.sessions:
        con.print("\nNo AnyConnect-protocol session found: no flow in this capture shows evidence of the protocol "
                  "(use --gateway ADDR[:PORT] if you know the gateway).")
    for s in analysis.sessions:
        _session(con, s, verbose, show_secrets, several_captures=len(analysis.captures) > 1)
    _other_traffic(con, getattr(analysis, "other_traffic", None) or {})
    for f in analysis.findings:
        con.print(f"[{SEVERITY_STYLE.get(f.severity, '')}]{f.severity.upper()} {f.id}[/]: {f.message}")
    return buf.getvalue()


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
    con.print(f"[bold]Other traffic[/] (not AnyConnect): {o['flows']} flow(s), {_bytes(o.get('bytes', 0))}")
    rows = o.get("by_protocol") or []
    parts = [f"{r['protocol']}/{r['server_port']} ×{r['flows']} ({_bytes(r['bytes'])})" for r in rows[:12]]
    more = len(rows) - 12 + (o.get("more_protocols") or 0)
    con.print("  " + ", ".join(parts) + (f", and {more} more" if more > 0 else ""))
    talkers = o.get("top_talkers") or []
    if talkers:
        con.print("  top talkers: " + ", ".join(f"{t['client']} ↔ {t['server']} {_bytes(t['bytes'])}"
                                                 for t in talkers))


def _session(con: Console, s, verbose: bool, show_secrets: bool, several_captures: bool = False) -> None:
    con.print()
    con.rule(f"[bold]Session {s.id}[/]  client {s.client} → gateway {s.gateway}", align="left")
    if several_captures and s.captures:
        # stream numbers count per capture file, as in Wireshark: say which file they are of
        con.print(f"  capture{'s' if len(s.captures) > 1 else ''}: " + ", ".join(s.captures), highlight=False,
                  markup=False)
    flows = [c.connection + (f" ({Path(c.capture).name})" if len(s.captures) > 1 and c.capture else "")
             for c in s.connections[:8]]
    con.print(f"  start {_iso(s.start)}, duration {_dur(s.start, s.end)}, "
              f"{len(s.connections)} flow(s): " + ", ".join(flows))
    ev = getattr(s, "evidence", None) or []
    if ev:
        conf = getattr(s, "confidence", "confirmed")
        # the codes (docs/json-schema.md); a session recognised without keys also says why in words
        con.print(f"  AnyConnect evidence ({conf}): " + ", ".join(e["code"] for e in ev))
        if conf != "confirmed":
            con.print("    " + "; ".join(e["text"] for e in ev[:3]))
    sw = getattr(s, "client_software", None) or {}
    if sw:
        con.print("  client: " + (f"{sw['name']}" + (f" {sw['version']}" if sw.get("version") else "")
                                  if sw.get("name") != "unknown" else "unknown") + f" ({sw.get('evidence')})")
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col, kw in (("#", {"justify": "right"}), ("phase", {}), ("t", {"justify": "right"}),
                    ("duration", {"justify": "right"}), ("status", {}), ("frames", {}), ("what happened", {})):
        t.add_column(col, **kw)
    for i, p in enumerate(s.phases, 1):
        status, summary = Text(p.status, style=STATUS_STYLE.get(p.status, "")), p.summary
        inf = getattr(p, "inferred", None)
        if inf is not None:  # the keyless reading (analyzer/phases/inferred.py): said to be inferred, and how sure
            status.append(f" → {inf.status}?", style=STATUS_STYLE.get(inf.status, ""))
            summary = f"{summary}; inferred ({inf.confidence}): {inf.basis}"
        t.add_row(str(i), p.phase, _rel(p.start, s.start), _dur(p.start, p.end), status, _frames(p.frames), summary)
    con.print(t)
    if any(getattr(p, "inferred", None) is not None for p in s.phases):
        con.print("  [dim]x → y?: status y inferred without keys from record sizes and timing (not read)[/]")
    if s.findings:
        con.print("[bold]Findings[/]")
        for f in s.findings:
            con.print(Text.assemble((f"  {f.severity.upper():7} ", SEVERITY_STYLE.get(f.severity, "")),
                                    (f"{f.id}", "bold"), " (inferred)" if getattr(f, "inferred", False) else "",
                                    f"  {_rel(f.time, s.start)}",
                                    f"  frames {_frames(f.frames)}" if f.frames else ""))
            con.print(f"           {f.message}")
            if f.remedy:
                con.print(f"           [dim]→ {f.remedy}[/]")
            if f.id == "DTLS_BACKOFF":
                _backoff_table(con, f.evidence)
    else:
        con.print("[bold]Findings[/]: none")
    _tunnel(con, s)
    if verbose:
        _verbose(con, s, show_secrets)


def _tunnel(con: Console, s) -> None:
    t = s.tunnel
    if t is None or not (t.cstp or t.dtls or t.tls_undecrypted):
        return
    con.print("[bold]Tunnel[/]")
    hidden = t.tls_undecrypted
    if hidden:
        r = hidden.records
        con.print(f"  TLS  not decrypted: {r['c2s'] + r['s2c']} records on {hidden.connection} (client→gateway "
                  f"{r['c2s']}, gateway→client {r['s2c']})")
        _cstp_estimate(con, s)
    for ch, c in (("cstp", t.cstp), ("dtls", t.dtls)):
        if not c:
            continue
        ip, ib = c.inner_packets, c.inner_bytes
        und = c.undecrypted_records if ch == "dtls" else {}
        if sum(und.values()) and not sum(ip.values()):
            con.print(f"  {ch.upper():4} not decrypted: {sum(und.values())} records (client→gateway "
                      f"{und.get('c2s', 0)}, gateway→client {und.get('s2c', 0)})")
            if ch == "dtls":
                _dtls_estimate(con, s)
            continue
        line = (f"  {ch.upper():4} inner packets client→gateway {ip['c2s']} ({ib['c2s']} B), "
                f"gateway→client {ip['s2c']} ({ib['s2c']} B)")
        if ch == "cstp":
            line += f"; DPD req {c.dpd['c2s']}/{c.dpd['s2c']}, keepalives {c.keepalives['c2s']}/{c.keepalives['s2c']}"
        con.print(line)
    end = t.end
    if end:
        who = "client" if end.direction == "c2s" else "gateway"
        con.print(f"  ended: {end.type} from the {who} over {end.channel.upper()} at {_rel(end.ts, s.start)}"
                  + (f", reason {end.reason!r}" if end.reason else "") + f" (frame {end.frame})")


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
    probes = sum((opt(e.c2s.mtu_probes) or 0) + (opt(e.s2c.mtu_probes) or 0) for e in ests)
    con.print(f"       estimated from record sizes: client→gateway {side('c2s')}, gateway→client {side('s2c')}; "
              f"control packets {answered} answered (DPD), {unanswered} unanswered (keepalives or lost DPD)"
              + (f"; MTU probes {probes}" if probes else ""))


def _cstp_estimate(con: Console, s) -> None:
    """The keyless reading of the tunnel connections (analyzer/phases/inferred.py): when each came up and ended,
    its CSTP frames by class from record sizes."""
    inf = s.phase("cstp-connect").inferred
    for t in (inf.tunnels or []) if inf is not None else []:
        ended = {None: "still up at the capture's end", "close": "connection closed"}.get(t.ended_by, t.ended_by)
        con.print(f"  CSTP inferred on {t.connection}: up at {_rel(t.established_time, s.start)} (frame "
                  f"{t.established_frame}), ended {_rel(t.end_time, s.start)} ({ended})")
        e = t.estimate
        if e is None:
            continue

        def side(k, e=e):
            d = getattr(e, k)
            lo, hi = d.inner_bytes_least, d.inner_bytes_most
            return f"{d.data} data packets ({lo} B)" if lo == hi else f"{d.data} data packets ({lo}–{hi} B)"

        cls = {k: e.frame_classes["c2s"].get(k, 0) + e.frame_classes["s2c"].get(k, 0)
               for k in ("DPD_REQ", "DPD_RESP", "KEEPALIVE", "DISCONNECT", "TERMINATE")}
        con.print(f"       estimated from record sizes: client→gateway {side('c2s')}, gateway→client {side('s2c')}; "
                  + ", ".join(f"{k} {n}" for k, n in cls.items() if n))


def _verbose(con: Console, s, show_secrets: bool) -> None:
    g = s.phase("group-selection").details
    for post in g.posts if isinstance(g, GroupSelectionDetails) else []:
        con.print(f"[bold]POST {post.target}[/] (frame {post.frame}) → {opt(post.status)}")
        for k, v in reveal(post.headers, show_secrets) or []:
            con.print(f"    {k}: {v}", markup=False)
    a = s.phase("user-auth").details
    for r in a.rounds if isinstance(a, UserAuthDetails) else []:
        con.print(f"[bold]POST {r.target}[/] {r.type} (frame {r.frame}) → {opt(r.status)} "
                  f"{r.response_type or ''}")
        con.print("    " + str(reveal(r.xml, show_secrets)), markup=False)
    c = connect_details(s.phase("cstp-connect"))
    for cx in c.connects if c is not None else []:
        con.print(f"[bold]CONNECT {cx.target}[/] (frame {cx.frame}) → {opt(cx.status)} {cx.reason or ''}")
        for k, v in reveal(cx.request_headers, show_secrets) or []:
            con.print(f"  > {k}: {v}", markup=False)
        for k, v in reveal(cx.response_headers, show_secrets) or []:
            con.print(f"  < {k}: {v}", markup=False)


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
    con.print(t)
