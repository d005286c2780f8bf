"""What `acflow live` shows while the capture runs (I/O edge: writes to a terminal or a stream).

The capture loop (analyzer/live.py) takes a snapshot of the session model now and then (`Analyzer.snapshot`, the
JSON document of `analyzer.report.json_report.to_document`) and hands it here with the capture's state (frames,
key logs, connections waiting for keys). `EventDiffer` compares it with the previous snapshot and makes events:

* ``phase``: a phase of a session changed status or summary (phases that stay "absent" are told at the end only;
  a phase that looks failed or incomplete is told once it has stayed so for HOLD seconds: until then its answer
  may still come, and the terminal view shows it "in progress");
* ``finding``: a finding was raised (once per session, id and phase, once it has held for HOLD seconds; the final
  report has its last wording), or withdrawn (``status``: "raised" / "withdrawn");
* ``keys``: a connection waits for its keys ("waiting for keys for ClientHello frame 12"), got them, or cannot get
  them (its ClientHello was before the capture).

Three ways of showing them: `RichView` (a terminal: rich Live, one block per session with its six phases, its
findings, tunnel counters and the key log state, redrawn on each snapshot), `LineView` (a pipe: one line per
event, ``time session phase status summary``), `JsonlView` (``--format jsonl``: one JSON object per event, for
other tools; the last line holds the final report).
"""
from __future__ import annotations

import json
import time

from .model import PHASES

_PHASE_ORDER = {name: i for i, name in enumerate(PHASES)}


def _clock(ts: float | None) -> str:
    if ts is None:
        return "--:--:--.---"
    t = time.gmtime(ts)
    return time.strftime("%H:%M:%S", t) + f".{int((ts % 1) * 1000):03d}"


#: statuses a phase may show only while it is still happening ("CONNECT sent, no answer in the capture" is a
#: failure once the capture has ended, not while the answer may still come)
UNSETTLED = ("failed", "incomplete")
#: seconds a failed/incomplete phase or a finding must stay the same in the snapshots before it is told
HOLD = 2.0


#: capture-wide findings told as live events (analyzer/rules/__init__.py `capture_findings`)
LIVE_CAPTURE_WIDE = frozenset({"CAPTIVE_PORTAL", "DNS_LOOKUP_FAILED", "TCP_CONNECT_FAILED"})


class EventDiffer:
    """Snapshots in, events out (dicts; ``wall``: the wall-clock time the event was made).

    A snapshot is the model of a capture that has not ended: a phase waiting for its answer looks failed in it. So
    a failed or incomplete phase, and a finding, are told once they have stayed so for ``HOLD`` seconds (and at the
    end); until then the phase shows as "in progress". A finding told that later disappears (the answer came) is
    told again as withdrawn."""

    def __init__(self, hold: float = HOLD) -> None:
        self.hold = hold
        self.phases: dict[tuple[str, str], tuple] = {}  # what was told
        self.findings: dict[tuple, dict] = {}  # told findings by (session, id, phase)
        self.since: dict[tuple, tuple] = {}  # (kind, key) -> (value, wall first seen)
        self.keys: dict[str, str] = {}  # connection -> what was last said about its keys
        self.display: dict[tuple[str, str], str] = {}  # (session, phase) -> the status to show now

    def _settled(self, kind: str, key, value, wall: float, final: bool) -> bool:
        seen = self.since.get((kind, key))
        if seen is None or seen[0] != value:
            self.since[(kind, key)] = (value, wall)
            return final or self.hold <= 0
        return final or wall - seen[1] >= self.hold

    def diff(self, doc: dict, key_state: dict[str, tuple[str, str, float | None]], *, final: bool = False,
             wall: float | None = None) -> list[dict]:
        """``key_state``: connection -> (state, text, time) with state "waiting" / "decrypting" / "unmatchable"."""
        wall = time.time() if wall is None else wall
        out: list[dict] = []
        for conn, (state, text, ts) in key_state.items():
            if self.keys.get(conn) != state:
                if state == "decrypting" and conn not in self.keys:
                    continue  # keys there from the start: nothing to tell
                self.keys[conn] = state
                out.append({"event": "keys", "wall": wall, "time": ts, "session": None, "connection": conn,
                            "status": state, "summary": text})
        present: set = set()
        for s in doc.get("sessions", ()):
            sid = s["id"]
            for p in sorted(s["phases"], key=lambda p: _PHASE_ORDER.get(p["phase"], 99)):
                key = (sid, p["phase"])
                cur = (p["status"], p["summary"])
                self.display[key] = p["status"]
                if p["status"] in UNSETTLED and not self._settled("phase", key, cur, wall, final):
                    self.display[key] = "in progress"
                    continue
                if self.phases.get(key) == cur:
                    continue
                if p["status"] == "absent" and key not in self.phases and not final:
                    continue
                self.phases[key] = cur
                out.append({"event": "phase", "wall": wall, "time": p.get("start") or p.get("end"), "session": sid,
                            "phase": p["phase"], "status": p["status"], "summary": p["summary"]})
            for f in s.get("findings", ()):
                self._finding(sid, f, present, out, wall, final)
        # the capture-wide findings that say why no session began, as they happen (a captive portal, the gateway's
        # name not resolved, its port not answering); NO_VPN_SESSION is the report's, not an event
        for f in doc.get("findings", ()):
            if f["id"] in LIVE_CAPTURE_WIDE:
                self._finding(None, f, present, out, wall, final)
        for key in [k for k in self.findings if k not in present]:
            f = self.findings.pop(key)
            out.append({"event": "finding", "wall": wall, "time": f.get("time"), "session": key[0], "id": key[1],
                        "severity": f["severity"], "phase": key[2], "message": f["message"], "status": "withdrawn"})
        for key in [k for k in self.since if k[0] == "finding" and k[1] not in present]:
            del self.since[key]
        return out

    def _finding(self, sid: str | None, f: dict, present: set, out: list, wall: float, final: bool) -> None:
        """Tell finding ``f`` of session ``sid`` (None: capture-wide) once it has held, and only once."""
        key = (sid, f["id"], f.get("phase"))  # once: a message may count packets as they come
        present.add(key)
        if key in self.findings:
            self.findings[key] = f
            return
        if not self._settled("finding", key, True, wall, final):
            return
        self.findings[key] = f
        out.append({"event": "finding", "wall": wall, "time": f.get("time"), "session": sid, "id": f["id"],
                    "severity": f["severity"], "phase": f.get("phase"), "message": f["message"], "status": "raised"})

    def shown_findings(self, session_id: str | None) -> list[dict]:
        return [f for k, f in self.findings.items() if k[0] == session_id]


def tunnel_counters(session: dict) -> dict:
    """CSTP / DTLS packets and bytes per direction, the last DPD round trip, and the channel that carried the
    latest data ("cstp" / "dtls" / None), read from a session of the JSON document."""
    out = {"cstp": _zero(), "dtls": _zero(), "dpd_rtt": None, "channel": None}
    last = {"cstp": None, "dtls": None}
    channels = []
    for p in session.get("phases", ()):
        det = p.get("details") or {}
        if p["phase"] == "cstp-connect" and isinstance(det.get("channel"), dict):
            channels.append(("cstp", det["channel"]))
        elif p["phase"] == "dtls":
            channels += [("dtls", f["channel"]) for f in det.get("flows") or () if isinstance(f.get("channel"), dict)]
    for name, ch in channels:
        for d in ("c2s", "s2c"):
            for c in (ch.get("frames") or {}).get(d, {}).values():
                out[name][d][0] += c.get("count", 0)
                out[name][d][1] += c.get("bytes", 0)
        rtt = (ch.get("dpd") or {}).get("rtt_median")
        if rtt is not None:
            out["dpd_rtt"] = rtt
        ts = [t for t in (ch.get("last_data") or {}).values() if t is not None]
        if ts and (last[name] is None or max(ts) > last[name]):
            last[name] = max(ts)
    if last["cstp"] is not None or last["dtls"] is not None:
        out["channel"] = "dtls" if (last["dtls"] or 0) >= (last["cstp"] or 0) else "cstp"
    return out


def _zero() -> dict:
    return {"c2s": [0, 0], "s2c": [0, 0]}


class LineView:
    """One line per event: ``time session phase status summary`` (a finding: ``time session finding id severity
    message``; keys: ``time - keys status text``)."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def started(self, capture: str) -> None:
        self.stream.write(f"acflow live: capturing ({capture}); Ctrl-C ends and reports\n")
        self.stream.flush()

    def show(self, events: list[dict], doc: dict, state: dict) -> None:
        for ev in events:
            self.stream.write(format_line(ev) + "\n")
        if events:
            self.stream.flush()

    def close(self, report: dict | None = None) -> None:
        self.stream.flush()


def format_line(ev: dict) -> str:
    t = _clock(ev.get("time"))
    if ev["event"] == "phase":
        return f"{t}  {ev['session']}  {ev['phase']}  {ev['status']}  {ev['summary']}"
    if ev["event"] == "finding":
        who = ev["session"] or "-"  # (a capture-wide finding: no session)
        if ev.get("status") == "withdrawn":
            return f"{t}  {who}  finding  {ev['id']} withdrawn (no longer holds)"
        return f"{t}  {who}  finding  {ev['id']} ({ev['severity']})  {ev['message']}"
    return f"{t}  -  keys  {ev['status']}  {ev['summary']}"


class JsonlView:
    """One JSON object per event; ``close(report)`` writes the final report as {"event": "report", ...}."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def started(self, capture: str) -> None:
        self.stream.write(json.dumps({"event": "capture", "wall": time.time(), "capture": capture,
                                      "status": "started"}) + "\n")
        self.stream.flush()

    def show(self, events: list[dict], doc: dict, state: dict) -> None:
        for ev in events:
            self.stream.write(json.dumps(ev, sort_keys=True, default=str) + "\n")
        if events:
            self.stream.flush()

    def close(self, report: dict | None = None) -> None:
        if report is not None:
            self.stream.write(json.dumps({"event": "report", "wall": time.time(), "report": report},
                                         sort_keys=True, default=str) + "\n")
        self.stream.flush()


_STATUS_STYLE = {"ok": "green", "failed": "bold red", "absent": "dim", "undecrypted": "yellow",
                 "before-capture": "blue", "incomplete": "blue", "not-captured": "blue",
                 "in progress": "cyan"}
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


class RichView:
    """rich Live on a terminal: the capture state, then one block per session (six phases, findings, tunnel)."""

    def __init__(self, console) -> None:
        from rich.live import Live  # noqa: PLC0415

        self.console = console
        self.live = Live(console=console, auto_refresh=False, transient=False, redirect_stdout=False,
                         redirect_stderr=False)
        self.live.start()
        self.stopped = False

    def started(self, capture: str) -> None:
        from rich.text import Text  # noqa: PLC0415

        self.live.update(Text(f"acflow live: capturing ({capture}); Ctrl-C ends and reports"), refresh=True)

    def show(self, events: list[dict], doc: dict, state: dict) -> None:
        self.live.update(self.render(doc, state), refresh=True)

    def close(self, report: dict | None = None) -> None:
        if not self.stopped:
            self.stopped = True
            self.live.stop()

    @staticmethod
    def render(doc: dict, state: dict):
        from rich.console import Group  # noqa: PLC0415
        from rich.panel import Panel  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        head = Text(f"acflow live: {state.get('capture', '')}  {state.get('frames', 0)} frames", style="bold")
        parts = [head]
        for line in state.get("keylogs", ()):
            parts.append(Text(f"  key log {line}"))
        for _conn, (st, text, _ts) in sorted(state.get("key_state", {}).items()):
            if st != "decrypting":
                parts.append(Text(f"  {text}", style="yellow" if st == "waiting" else "red"))
        if state.get("held"):
            parts.append(Text(f"  {state['held']} DTLS datagram(s) held until the keys arrive", style="yellow"))
        for s in doc.get("sessions", ()):
            t = Table(show_header=False, box=None, pad_edge=False, expand=False)
            t.add_column("phase", style="bold")
            t.add_column("status")
            t.add_column("time")
            t.add_column("summary", overflow="fold")
            display = state.get("display") or {}
            for p in s["phases"]:
                status = display.get((s["id"], p["phase"]), p["status"])
                t.add_row(p["phase"], Text(status, style=_STATUS_STYLE.get(status, "")),
                          _clock(p.get("start")), p["summary"] or "")
            rows: list = [t]
            c = tunnel_counters(s)
            if c["channel"] or any(c[ch][d][0] for ch in ("cstp", "dtls") for d in ("c2s", "s2c")):
                rtt = f"{c['dpd_rtt'] * 1000:.1f} ms" if c["dpd_rtt"] is not None else "-"
                rows.append(Text(
                    f"tunnel: CSTP {_pb(c['cstp'])}  DTLS {_pb(c['dtls'])}  DPD RTT {rtt}  "
                    f"channel {c['channel'] or '-'}"))
            shown = state.get("findings")
            for f in (s.get("findings", ()) if shown is None else shown(s["id"])):
                rows.append(Text(f"{f['severity']:<7} {f['id']}: {f['message']}",
                                 style=_SEVERITY_STYLE.get(f["severity"], "")))
            parts.append(Panel(Group(*rows), title=f"{s['id']}  {s['client']} → {s['gateway']}", title_align="left"))
        if not doc.get("sessions"):
            parts.append(Text("  no VPN session seen yet", style="dim"))
            shown = state.get("findings")
            for f in (doc.get("findings", ()) if shown is None else shown(None)):
                if f["id"] in LIVE_CAPTURE_WIDE:  # why no session began: a captive portal, DNS, the gateway's port
                    parts.append(Text(f"  {f['severity']:<7} {f['id']}: {f['message']}",
                                      style=_SEVERITY_STYLE.get(f["severity"], "")))
        return Group(*parts)


def _pb(c: dict) -> str:
    return f"↑{c['c2s'][0]} pkts/{c['c2s'][1]} B ↓{c['s2c'][0]} pkts/{c['s2c'][1]} B"
