"""HTML renderer: one self-contained page (no JavaScript, no network, no external CSS) per analysis.

Per session: a header (client, gateway, start, duration), the phase timeline, the findings, a client↔gateway
sequence diagram of the six phases, plots of the inner traffic per channel and of the DTLS ClientHello times
(all inline SVG), the tunnel statistics and collapsible sections with the verbose data.

The header, phase timeline, sequence diagram, plots and tunnel table read the typed session model
(analyzer/phases/: `Phase.details` records, `Session.tunnel`), none of whose secret-bearing fields (cookies,
tokens, headers, XML) they show. What shows data as it is — findings with their evidence, the verbose sections,
captures and other traffic — reads `json_report.to_document()`, so secrets there are redacted unless
`show_secrets`.
Every string that comes from a capture is hostile input: it is written only through `_e()` (html.escape), in
element content or in double-quoted attribute values; the page also forbids scripts with a CSP meta tag.
"""
from __future__ import annotations

import contextvars
import html
import itertools
import json
import math
import re

from ..capture_point import describe_interface, tunnel_devices
from ..phases.cstp_connect import connect_details
from ..phases.dtls import DTLSDetails, records_lost_line
from ..phases.record import UNSET, opt
from ..phases.tls_handshake import TLSHandshakeDetails
from ..selection import usernames
from ..timefmt import UTC, clock, stamp
from ..verdict import text_with_clock
from ..wording import captive_portals_line, plural, tls_servers_line
from .json_report import to_document

#: the --tz zone of the page being rendered (render_html sets it)
_TZ: contextvars.ContextVar = contextvars.ContextVar("acflow_html_tz", default=UTC)
OUTCOME_COLOR = {"healthy": "#1a7f37", "degraded": "#bf8700", "tunnel-lost": "#cf222e", "failed": "#cf222e",
                 "inconclusive": "#0969da"}
GROUP_MIN = 3  # findings sharing an id and severity this many times in a session: one row

PHASE_TITLES = {
    "tls-handshake": "SSL/TLS handshake",
    "group-selection": "POST — group selection",
    "user-auth": "POST — user authentication",
    "downloader": "VPN downloader",
    "cstp-connect": "CSTP CONNECT",
    "dtls": "DTLS connection",
}
STATUS_COLOR = {"ok": "#1a7f37", "failed": "#cf222e", "absent": "#8c959f", "undecrypted": "#bf8700",
                "before-capture": "#0969da", "incomplete": "#0969da",
                "not-captured": "#0969da"}
SEVERITY_COLOR = {"error": "#cf222e", "warning": "#bf8700", "info": "#0969da"}
PHASE_FILL = ("#f6f8fa", "#eef4fb")
CHANNEL_COLOR = {("cstp", "c2s"): "#0969da", ("cstp", "s2c"): "#54aeff",
                 ("dtls", "c2s"): "#1a7f37", ("dtls", "s2c"): "#4ac26b"}
DIRECTION_NAME = {"c2s": "client → gateway", "s2c": "gateway → client"}

MAX_SEQ_ROWS_PER_GROUP = 60  # a phase with more messages (DTLS retries…) shows the first 50 and the last 5
MAX_HELLO_ROWS = 40  # DTLS flows drawn in the ClientHello plot
MAX_LIST_ITEMS = 100  # verbose sections: items shown per list
MAX_TEXT = 20000  # verbose sections: characters shown per string

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--soft:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;padding:24px 32px 48px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:var(--fg);background:var(--bg);max-width:1180px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:19px;margin:0 0 10px}h3{font-size:15px;margin:22px 0 8px}
a{color:#0969da}
.muted{color:var(--muted)}
.mono,pre,code{font-family:ui-monospace,"SFMono-Regular","DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:8px 12px;border-radius:6px;margin:10px 0}
section.session{border-top:3px solid var(--fg);margin-top:28px;padding-top:14px}
table{border-collapse:collapse;width:100%;margin:4px 0 8px}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
table.findings td:last-child,table.timeline td:last-child,dl.facts dd,.warn{overflow-wrap:anywhere}
td.frames{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;white-space:nowrap}
.badge{display:inline-block;padding:0 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600;
 line-height:20px;white-space:nowrap}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:6px 0 10px}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
.gantt{position:relative;height:10px;min-width:120px;background:var(--soft);border-radius:3px;margin-top:5px}
.gantt span{position:absolute;top:0;bottom:0;min-width:2px;border-radius:3px}
svg{display:block;max-width:100%;height:auto;margin:6px 0 4px;font-family:system-ui,"DejaVu Sans",sans-serif}
details{border:1px solid var(--line);border-radius:6px;margin:6px 0;padding:0 10px}
details[open]{padding-bottom:8px}
summary{cursor:pointer;padding:6px 0;font-weight:600}
table.kv{width:auto;max-width:100%}
table.kv>tbody>tr>th{width:1%;font-weight:500;color:var(--muted);background:none}
table.kv td{word-break:break-word}
table.hdr td{padding:2px 8px}table.hdr td:first-child{white-space:nowrap;color:#8250df}
pre{background:var(--soft);padding:8px;border-radius:6px;white-space:pre-wrap;word-break:break-all;margin:2px 0}
.item{border-left:3px solid var(--line);padding-left:8px;margin:4px 0}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.remedy{color:var(--muted)}
.verdict{border-left:6px solid var(--vc,#59636e);background:var(--soft);padding:8px 12px;border-radius:4px;
 margin:8px 0 12px;font-size:15px;overflow-wrap:anywhere}
.verdict .badge{margin-right:8px}
.abs{color:var(--muted);font-size:12px;white-space:nowrap}
@media print{details{border:none}details>summary{display:none}}
@media (max-width:760px){
 body{padding:12px 10px 32px}
 table.reflow,table.reflow>tbody,table.reflow>tbody>tr,table.reflow>tbody>tr>td{display:block;width:100%}
 table.reflow>thead{display:none}
 table.reflow>tbody>tr{border-bottom:2px solid var(--line);padding:4px 0}
 table.reflow>tbody>tr>td{border:none;padding:1px 4px;text-align:left;white-space:normal;overflow-wrap:anywhere}
 table.reflow>tbody>tr>td[data-label]::before{content:attr(data-label) ": ";color:var(--muted);font-weight:600}
 dl.facts{grid-template-columns:1fr}dl.facts dd{margin-bottom:4px}
 .gantt{min-width:0}
}
"""


# ---------------------------------------------------------------------------------------------- formatting
def _e(v) -> str:
    """Escape anything for HTML element content or a double-quoted attribute value."""
    return html.escape("" if v is None or v is UNSET else str(v), quote=True)


def _num(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _iso(ts) -> str:
    """The date and time in the --tz zone (`_TZ`, set by render_html)."""
    t = _num(ts)
    if t is None:
        return "?"
    return stamp(t, _TZ.get())


def _clock(ts) -> str:
    """The time of day in the --tz zone: shown beside relative times."""
    t = _num(ts)
    return "" if t is None else clock(t, _TZ.get())


def _rel(ts, t0) -> str:
    a, b = _num(ts), _num(t0)
    if a is None or b is None:
        return ""
    return f"+{a - b:.3f}s"


def _dur(a, b) -> str:
    a, b = _num(a), _num(b)
    if a is None or b is None:
        return ""
    d = b - a
    return f"{d * 1000:.0f} ms" if d < 1 else f"{d:.1f} s"


def _frames(frames, limit: int = 8) -> str:
    """Frame numbers as runs: '8,10,15–16' or '24–30, 55, … (120 frames)'."""
    fs = sorted({f for f in (frames or []) if isinstance(f, int) and not isinstance(f, bool)})
    if not fs:
        return ""
    runs: list[list[int]] = []
    for f in fs:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    parts = [str(a) if a == b else f"{a}–{b}" for a, b in runs]
    if len(parts) > limit:
        return ",".join(parts[:limit - 1]) + f",…{fs[-1]} ({len(fs)} frames)"
    return ",".join(parts)


def _bytes(n) -> str:
    v = _num(n)
    if v is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(v) < 1000 or unit == "GB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1000
    return f"{v:.1f} GB"


def _short(text, n: int) -> str:
    s = "" if text is None else " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _abs(ts) -> str:
    """The absolute time of day beside a relative time (a second line in the cell)."""
    c = _clock(ts)
    return f'<br><span class="abs">{_e(c)}</span>' if c else ""


def _outcome_badge(outcome) -> str:
    return _badge(str(outcome or "?").upper(), OUTCOME_COLOR.get(outcome, "#59636e"))


def _verdict_block(v, s) -> str:
    """The session's verdict (analyzer/verdict.py), before everything else: `v` its JSON object, `s` the session
    (the typed verdict gives the text with the absolute time beside the relative one)."""
    if not isinstance(v, dict) or not v.get("text"):
        return ""
    color = OUTCOME_COLOR.get(v.get("outcome"), "#59636e")
    typed = getattr(s, "verdict", None)
    text = text_with_clock(typed, _num(s.start), _clock) if typed is not None else v.get("text")
    # the date and time, unless the text already says when (the time of day beside "at +4.4 s")
    when = f' <span class="abs">at {_e(_iso(v.get("time")))}</span>' if v.get("outcome") != "healthy" and \
        _num(v.get("time")) is not None and text == v.get("text") else ""
    return (f'<div class="verdict" style="--vc:{color}">{_outcome_badge(v.get("outcome"))}{_e(text)}'
            f"{when}</div>")


def _badge(text: str, color: str) -> str:
    return f'<span class="badge" style="background:{color}">{_e(text)}</span>'


def _status_badge(status) -> str:
    return _badge(str(status), STATUS_COLOR.get(status, "#59636e"))


def _sev_badge(sev) -> str:
    return _badge(str(sev).upper(), SEVERITY_COLOR.get(sev, "#59636e"))


def _nice_step(span: float, target: int = 8) -> float:
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _fmt_t(v: float, step: float) -> str:
    if step >= 1:
        return f"{v:.0f}s"
    digits = max(0, -math.floor(math.log10(step)))
    return f"{v:.{digits}f}s"


# ---------------------------------------------------------------------------------------------- entry point
def render_html(analysis, *, version: str, show_secrets: bool = False, tz=None, filters: dict | None = None) -> str:
    token = _TZ.set(tz or UTC)
    try:
        return _render_html(analysis, version=version, show_secrets=show_secrets, tz=tz, filters=filters)
    finally:
        _TZ.reset(token)


def _render_html(analysis, *, version: str, show_secrets: bool, tz, filters: dict | None) -> str:
    doc = to_document(analysis, version=version, show_secrets=show_secrets, tz=tz, filters=filters)
    out = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
           # no script, no network: even a markup injection could not run or fetch anything
           ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
           "style-src 'unsafe-inline'; img-src data:\">"),
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>acflow report — {_e(', '.join(c.get('path', '') for c in doc['captures']))}</title>",
           f"<style>{CSS}</style></head><body>",
           (f'<h1>acflow report</h1><div class="muted">acflow {_e(doc.get("acflow"))}, '
           f'JSON schema {_e(doc.get("schema"))} — AnyConnect-protocol SSL VPN sessions, phase by phase</div>')]
    if show_secrets:
        out.append('<div class="warn"><b>Secrets are shown</b> (<code>--show-secrets</code>): passwords, cookies '
                   "and master secrets appear in this page. Treat it as confidential.</div>")
    out.append(_captures(doc))
    if getattr(analysis, "path", None) is not None:  # --other-side, or two points in one file
        out.append(_path(analysis.path))
    if filters:
        shown = ", ".join(f"--{k} " + _e(" ".join(map(str, v)) if isinstance(v, list) else
                                         _iso(v) if k in ("since", "until") else v)
                          for k, v in filters.items() if k not in ("shown", "total"))
        out.append(f'<p class="muted">Filters {shown}: {_e(filters.get("shown"))} of '
                   f'{_e(plural(filters.get("total") or 0, "session"))} shown.</p>')
    sessions = doc.get("sessions") or []
    tun = tunnel_devices(analysis.captures) if not sessions else []
    if tun:
        out.append(f"<p><b>No AnyConnect-protocol session found</b>: the capture was taken on "
                   f"<code>{_e(describe_interface(tun[0][1]))}</code>, the VPN's tunnel device, which carries the "
                   "traffic inside the tunnel, not the VPN's connection: capture on the interface that reaches the "
                   "gateway.</p>")
    elif not sessions:
        out.append("<p><b>No AnyConnect-protocol session found</b>: no flow in this capture shows evidence of "
                   "the protocol (use <code>--gateway ADDR[:PORT]</code> if you know the gateway).</p>")
    elif len(sessions) > 1:
        from .terminal import tally  # noqa: PLC0415 - the same line as `--summary`'s

        out.append(f'<h3>Sessions</h3><p>{_e(tally(analysis.sessions))}</p><ul>' + "".join(
            f'<li><a href="#session-{i}">Session {_e(s.get("id"))}</a>: {_e(s.get("client"))} → '
            f'{_e(s.get("gateway"))}, {_e(_iso(s.get("start")))}'
            + (f' — {_outcome_badge(s["verdict"].get("outcome"))} {_e(s["verdict"].get("text"))}'
               if isinstance(s.get("verdict"), dict) else "") + "</li>" for i, s in enumerate(sessions, 1)) + "</ul>")
    for i, (s, sd) in enumerate(zip(analysis.sessions, sessions), 1):
        out.append(_session(i, s, sd, several_captures=len(doc.get("captures") or []) > 1))
    out.append(_other_traffic(doc.get("other_traffic") or {}))
    if doc.get("findings"):
        out.append('<section class="session"><h2>Capture-wide findings</h2>')
        out.append(_findings_table(doc["findings"], None))
        out.append("</section>")
    out.append(f'<p class="muted" style="margin-top:32px">Generated by acflow {_e(version)}. Self-contained '
               "page: no script, no external resource.</p></body></html>\n")
    return "\n".join(out)


def _other_traffic(o: dict) -> str:
    """Flows that are not VPN sessions: one short table, never a session, never a finding."""
    if not o.get("flows"):
        return ""
    rows = "".join(f"<tr><td data-label=\"protocol\">{_e(r.get('protocol'))}</td>"
                   f"<td class=\"num\" data-label=\"server port\">{_e(r.get('server_port'))}</td>"
                   f"<td class=\"num\" data-label=\"flows\">{_e(r.get('flows'))}</td>"
                   f"<td class=\"num\" data-label=\"bytes\">{_e(_bytes(r.get('bytes')))}</td>"
                   "</tr>" for r in (o.get("by_protocol") or [])[:20])
    talkers = ", ".join(f"{_e(t.get('client'))} ↔ {_e(t.get('server'))} ({_e(_bytes(t.get('bytes')))})"
                        for t in o.get("top_talkers") or [])
    return (f'<section class="session" id="other-traffic"><h2>Other traffic</h2><p class="muted">'
            f"{_e(plural(o.get('flows') or 0, 'flow'))} without evidence of the AnyConnect protocol, "
            f"{_e(_bytes(o.get('bytes')))}.</p><table class=\"reflow\"><thead><tr><th>protocol</th><th>server port</th>"
            f"<th>flows</th><th>bytes</th></tr></thead><tbody>{rows}</tbody></table>"
            + (f"<p>{_e(_ipsec_line(o['ipsec']))}</p>" if o.get("ipsec") else "")
            + (f"<p>Top talkers: {talkers}</p>" if talkers else "")
            + (f"<p>TLS servers: {_e(tls_servers_line(o['tls_servers']))}</p>" if o.get("tls_servers") else "")
            + (f"<p>{_e(captive_portals_line(o['captive_portal']))}</p>" if o.get("captive_portal") else "")
            + "</section>")


def _ipsec_line(items: list) -> str:
    from ..ipsec import describe  # noqa: PLC0415

    return describe(items) or ""


def _captures(doc: dict) -> str:
    rows = []
    for c in doc.get("captures") or []:
        keys = c.get("keys") or {}
        k = (f"{plural(len(keys.get('keylog_files') or []), 'key log')}, "
             f"{plural(len(keys.get('rsa_keys') or []), 'RSA key')}, {plural(keys.get('entries', 0), 'entry')}")
        if keys.get("embedded_secrets"):
            k += f", {plural(keys['embedded_secrets'], 'embedded secrets block')}"
        problems = [*(c.get("errors") or [])[:10], *((keys.get("keylog_errors") or [])[:5])]
        rows.append(f"<tr><td class=\"mono\" data-label=\"file\">{_e(c.get('path'))}</td>"
                    f"<td class=\"num\" data-label=\"frames\">{_e(c.get('frames'))}</td>"
                    f"<td data-label=\"time span\">{_e(_iso(c.get('first')))} … {_e(_iso(c.get('last')))}</td>"
                    f"<td data-label=\"keys\">{_e(k)}</td>"
                    f"<td data-label=\"problems\">{'<br>'.join(_e(p) for p in problems) or '—'}</td></tr>")
    return ("<h3>Capture</h3><table class=\"reflow\"><thead><tr><th>file</th><th>frames</th><th>time span</th>"
            "<th>keys</th><th>problems</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _path(path) -> str:
    """The comparison with the other capture point: its sentence, its problems, then a row per flow seen between
    (the flow as this capture shows it; each way: packets compared, arrived, lost, added)."""
    head = (f'<h3>Between the capture points</h3><p class="muted">{_e(path.summary())}</p>'
            + "".join(f'<p class="muted">other side\'s capture problem: {_e(e)}</p>' for e in path.b.errors[:5]))
    rows = []
    for p in path.pairs:
        if not p.seen_between():
            continue
        f = (p.a or p.b).label()
        ways = []
        for r in (p.c2s, p.s2c):
            ways.append("—" if r is None else f"{r.sent} / {r.arrived} / {len(r.lost)} / {len(r.added)}")
        moved = "; ".join(f"{k} {v['a']} → {v['b']}" for k, v in (p.translated() or {}).items()) or "—"
        rows.append(f'<tr><td class="mono" data-label="flow">{_e(f["protocol"])} {_e(f["client"])} → '
                    f'{_e(f["server"])}{"" if p.a else " (other side only)"}</td>'
                    f'<td data-label="session">{_e((p.roles or {}).get("session", "—"))}</td>'
                    f'<td data-label="paired by">{_e(p.paired_by or "—")}</td>'
                    f'<td class="num" data-label="client → gateway">{_e(ways[0])}</td>'
                    f'<td class="num" data-label="gateway → client">{_e(ways[1])}</td>'
                    f'<td class="mono" data-label="translated">{_e(moved)}</td></tr>')
    if not rows:
        return head
    return (head + '<table class="reflow"><thead><tr><th>flow</th><th>session</th><th>paired by</th>'
            "<th>client → gateway<br>compared / arrived / lost / added</th>"
            "<th>gateway → client<br>compared / arrived / lost / added</th><th>translated</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


# ---------------------------------------------------------------------------------------------- one session
def _session(idx: int, s, sd: dict, several_captures: bool = False) -> str:
    """One session: `s` the typed model (analyzer.model.Session), `sd` its JSON object (redacted)."""
    t0 = _num(s.start)
    tls = _tls(s)
    cstp = connect_details(s.phase("cstp-connect"))
    dtls = s.phase("dtls")
    params = (cstp.parameters or None) if cstp is not None else None
    sni = tls.client_hello.sni if tls is not None and tls.client_hello else None
    sw = s.client_software or {}
    out = [f'<section class="session" id="session-{idx}">',
           f"<h2>Session {_e(s.id)}: {_e(s.client)} ⇄ {_e(s.gateway)}</h2>",
           _verdict_block(sd.get("verdict"), s),
           '<dl class="facts">',
           f"<dt>client</dt><dd>{_e((tls.client if tls is not None else None) or s.client)}"
           + (f" (user {_e(', '.join(users))})" if (users := usernames(s)) else "") + "</dd>",
           # stream numbers count per capture file, as in Wireshark: say which file they are of
           (f"<dt>capture{'s' if len(s.captures) > 1 else ''}</dt><dd>"
            + ", ".join(_e(c) for c in s.captures) + "</dd>")
           if several_captures and s.captures else "",
           f"<dt>gateway</dt><dd>{_e(s.gateway)}" + (f" (SNI {_e(sni)})" if sni else "") + "</dd>",
           "".join(f"<dt>HTTP proxy</dt><dd>{_e(s.gateway)} is the proxy the client went through: "
                   f"{_e(px.get('request') or 'CONNECT ?')} → {_e(px.get('response') or 'no answer in the capture')}"
                   + "".join(f"; before: {_e(r['response'])}" for r in px.get("refused") or [])
                   + f" ({_e(c.connection)}, frame {_e(px.get('frame'))})</dd>"
                   for c in s.connections if (px := getattr(c, "proxy", None))),
           (f"<dt>AnyConnect evidence</dt><dd>{_e(s.confidence)}: "
            + "; ".join(_e(e.get("text")) for e in s.evidence[:6]) + "</dd>")
           if s.evidence else "",
           (f"<dt>client software</dt><dd>{_e(sw.get('name'))} "
            f"{_e(sw.get('version') or '')} "
            f"<span class=\"muted\">({_e(sw.get('evidence'))})</span></dd>")
           if sw else "",
           f"<dt>start</dt><dd>{_e(_iso(s.start))}</dd>",
           (f"<dt>duration</dt><dd>{_e(_dur(s.start, s.end) or '?')}"
           f" (until {_e(_iso(s.end))})</dd>")]
    conns = s.connections
    if conns:
        out.append("<dt>flows</dt><dd>" + ", ".join(
            f"{_e(c.connection)} ({_e(c.client)}"
            + (f", {_e(c.capture)}" if len(s.captures) > 1 and c.capture else "")
            + (", never connected" if getattr(c, "failed_connect", False) else "") + ")"
            for c in conns[:12])
            + (f", … ({len(conns)} in all)" if len(conns) > 12 else "") + "</dd>")
    if params is not None and (params.address or params.address_ip6):
        addrs = ", ".join(_e(a) for a in (params.address, params.address_ip6) if a)
        out.append(f"<dt>tunnel address</dt><dd>{addrs}" + (f"; MTU {_e(params.mtu)}" if params.mtu else "")
                   + "</dd>")
    if dtls.status:
        out.append(f"<dt>DTLS</dt><dd>{_status_badge(dtls.status)} {_e(dtls.summary or '')}</dd>")
    inf = getattr(s.phase("cstp-connect"), "inferred", None)
    for tn in (getattr(inf, "tunnels", None) or []) if inf is not None else []:
        # the keyless reading of a tunnel connection (analyzer/phases/inferred.py): labelled inferred/estimated
        est = tn.estimate
        sizes = "" if est is None else (
            f"; estimated from record sizes: client→gateway {est.c2s.data} data packets, gateway→client "
            f"{est.s2c.data}; " + ", ".join(f"{k} {n}" for k, n in sorted(
                {c: est.frame_classes['c2s'].get(c, 0) + est.frame_classes['s2c'].get(c, 0)
                 for c in ("DPD_REQ", "DPD_RESP", "KEEPALIVE", "DISCONNECT", "TERMINATE", "END")}.items()) if n))
        up = _rel(tn.established_time, t0) if tn.established_time is not None else "before the capture started"
        out.append(f"<dt>tunnel (inferred)</dt><dd>{_e(tn.connection)}: up {_e(up)}, "
                   f"ended {_e(_rel(tn.end_time, t0))} ({_e(tn.ended_by or 'still up')}){_e(sizes)}</dd>")
    out.append("</dl>")
    for n in s.notes:
        out.append(f'<div class="warn">{_e(n)}</div>')
    out.append("<h3>Phase timeline</h3>" + _timeline(s, t0))
    out.append("<h3>Findings</h3>" + (_findings_table(sd.get("findings") or [], t0)
                                      if sd.get("findings") else '<p class="muted">No findings.</p>'))
    out.append("<h3>Sequence diagram</h3>" + _sequence_svg(idx, s, t0))
    series = list(s.tunnel.series) if s.tunnel is not None else []
    out.append("<h3>Inner traffic over time</h3>" + _traffic_svg(series, t0, s.end))
    out.append("<h3>DTLS ClientHello times</h3>" + _hello_svg(s, t0))
    out.append("<h3>Tunnel</h3>" + _tunnel_table(s.tunnel, t0, s.phase("dtls").details))
    out.append("<h3>Verbose data</h3>" + _verbose(sd))
    out.append("</section>")
    return "\n".join(out)


def _tls(s) -> TLSHandshakeDetails | None:
    d = s.phase("tls-handshake").details
    return d if isinstance(d, TLSHandshakeDetails) else None


def _timeline(s, t0) -> str:
    t_end = _num(s.end)
    span = (t_end - t0) if (t0 is not None and t_end is not None and t_end > t0) else None
    rows = []
    for i, p in enumerate(s.phases, 1):
        a, b = _num(p.start), _num(p.end)
        bar = ""
        if span and a is not None:
            left = min(100.0, max(0.0, (a - t0) / span * 100))
            width = min(100.0 - left, max(0.0, ((b if b is not None else a) - a) / span * 100))
            color = STATUS_COLOR.get(p.status, "#59636e")
            bar = (f'<div class="gantt"><span style="left:{left:.2f}%;width:{width:.2f}%;background:{color}">'
                   "</span></div>")
        name = p.phase
        inf = getattr(p, "inferred", None)
        # the keyless reading (analyzer/phases/inferred.py), when the analysis made one: the inferred status next
        # to the phase's own, with how sure and on what it rests
        badge = _status_badge(p.status) + (f' → {_status_badge(inf.status)}<br><span class="muted">inferred, '
                                           f"{_e(inf.confidence)}</span>" if inf is not None else "")
        why = f'<div class="muted">inferred: {_e(inf.basis)}</div>' if inf is not None else ""
        rows.append(f'<tr class="phase-row"><td class="num" data-label="#">{i}</td><td data-label="phase">'
                    f'<b>{_e(name)}</b><br><span class="muted">{_e(PHASE_TITLES.get(name, ""))}</span></td>'
                    f'<td class="num" data-label="t">{_e(_rel(a, t0))}{_abs(a)}</td>'
                    f'<td class="num" data-label="duration">{_e(_dur(a, b))}</td>'
                    f'<td data-label="status">{badge}</td>'
                    f'<td class="frames" data-label="frames">{_e(_frames(sorted(set(p.frames))))}</td>'
                    f'<td data-label="what happened">{_e(p.summary)}{why}{bar}</td></tr>')
    return ('<table class="timeline reflow"><thead><tr><th>#</th><th>phase</th><th>t</th><th>duration</th>'
            "<th>status</th><th>frames</th><th>what happened</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


def _finding_groups(findings: list) -> list[list[dict]]:
    """Findings in order; those sharing an id and severity GROUP_MIN or more times as one group (where the first
    was)."""
    items = [f for f in findings if isinstance(f, dict)]
    count: dict = {}
    for f in items:
        k = (f.get("id"), f.get("severity"))
        count[k] = count.get(k, 0) + 1
    out: list[list[dict]] = []
    where: dict = {}
    for f in items:
        k = (f.get("id"), f.get("severity"))
        if count[k] >= GROUP_MIN and k in where:
            out[where[k]].append(f)
            continue
        where[k] = len(out)
        out.append([f])
    return out


def _findings_table(findings: list, t0) -> str:
    rows = []
    for group in _finding_groups(findings):
        f = group[0]
        ev = f.get("evidence")
        evidence = (f"<details><summary>evidence</summary>{_value(ev)}</details>" if ev and len(group) == 1
                    else "")
        if len(group) == 1:
            when = (_e(_rel(f.get("time"), t0)) + _abs(f.get("time")) if t0 is not None
                    else _e(_iso(f.get("time"))))
            frames = f.get("frames")
            message = _e(f.get("message"))
            title = f"<b>{_e(f.get('id'))}</b>"
        else:
            times = [x.get("time") for x in group if _num(x.get("time")) is not None]
            when = (f"first {_e(_rel(min(times), t0))}{_abs(min(times))}<br>last {_e(_rel(max(times), t0))}"
                    f"{_abs(max(times))}" if times and t0 is not None else
                    f"first {_e(_iso(min(times)))}<br>last {_e(_iso(max(times)))}" if times else "")
            frames = sorted({fr for x in group for fr in (x.get("frames") or []) if isinstance(fr, int)})
            message = (f"<b>×{len(group)}</b> — first: {_e(f.get('message'))}"
                       + (f"<br>last: {_e(group[-1].get('message'))}"
                          if group[-1].get("message") != f.get("message") else ""))
            title = f"<b>{_e(f.get('id'))} ×{len(group)}</b>"
        rows.append(f'<tr class="finding"><td data-label="severity">{_sev_badge(f.get("severity"))}</td>'
                    f'<td data-label="id">{title}<br><span class="muted">{_e(f.get("phase") or "")}'
                    + (" · inferred" if f.get("inferred") else "") + "</span></td>"
                    f'<td class="num" data-label="time">{when}</td>'
                    f'<td class="frames" data-label="frames">{_e(_frames(frames))}</td>'
                    f'<td data-label="message">{message}'
                    + (f'<div class="remedy">→ {_e(f.get("remedy"))}</div>' if f.get("remedy") else "")
                    + f"{evidence}</td></tr>")
    return ('<table class="findings reflow"><thead><tr><th>severity</th><th>id</th><th>time</th><th>frames</th>'
            "<th>message / remedy</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _tunnel_table(t, t0, dtls_details=None) -> str:
    rows = []
    for ch, c in (("cstp", t.cstp if t is not None else None), ("dtls", t.dtls if t is not None else None)):
        if not c:
            continue
        ip, ib = c.inner_packets, c.inner_bytes
        extra = ""
        if ch == "cstp":
            dpd, ka = c.dpd, c.keepalives
            extra = (f"DPD requests {_e(dpd.get('c2s'))}/{_e(dpd.get('s2c'))}, keepalives "
                     f"{_e(ka.get('c2s'))}/{_e(ka.get('s2c'))} (client/gateway)")
        elif ch == "dtls":
            lost = records_lost_line(dtls_details)
            extra = f"records lost before the capture point: {_e(lost)}" if lost else ""
        rows.append(f"<tr><td data-label=\"channel\"><b>{ch.upper()}</b></td>"
                    f"<td class=\"num\" data-label=\"client→gateway\">{_e(ip.get('c2s'))} "
                    f"({_e(_bytes(ib.get('c2s')))})</td><td class=\"num\" data-label=\"gateway→client\">"
                    f"{_e(ip.get('s2c'))} ({_e(_bytes(ib.get('s2c')))})</td><td>{extra}</td></tr>")
    dev = opt(t.device) if t is not None else None
    seen = (f"<p>VPN adapter's packets (<code>{_e(dev.interface)}</code>" + (f", {_e(dev.capture)}" if dev.capture
                                                                              else "")
            + f"): {_e(dev.packets)} packets inside the tunnel in the clear, tunnel address {_e(dev.address)}, frames "
              f"{_e(dev.first_frame)}–{_e(dev.last_frame)}.</p>") if dev is not None else ""
    if not rows:
        return seen or '<p class="muted">No tunnel (no successful CONNECT, or not decrypted).</p>'
    out = seen + ("<table class=\"reflow\"><thead><tr><th>channel</th><th>inner packets client→gateway</th>"
           "<th>inner packets gateway→client</th><th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    end = t.end
    if end is not None:
        who = "client" if end.direction == "c2s" else "gateway"
        out += (f"<p>Ended: <b>{_e(end.type)}</b> from the {who} over {_e(str(end.channel or '').upper())}"
                f" at {_e(_rel(end.ts, t0))}{_abs(end.ts)}" + (f", reason “{_e(end.reason)}”" if end.reason else "")
                + f" (frame {_e(end.frame)}).</p>")
    return out


# ---------------------------------------------------------------------------------------------- sequence diagram
def _msg(direction: str, label, ts, frame, kind: str = "", title: str = "") -> dict:
    return {"type": "msg", "dir": direction, "label": str(label), "ts": _num(ts),
            "frame": frame if isinstance(frame, int) and not isinstance(frame, bool) else None,
            "kind": kind, "title": title}


def _note(label, ts=None, frame=None, kind: str = "") -> dict:
    r = _msg("", label, ts, frame, kind)
    r["type"] = "note"
    return r


def _sorted_rows(rows: list) -> list:
    # by time, then notes that open a connection before its messages, then by frame; stable otherwise
    return sorted(rows, key=lambda r: (r["ts"] if r["ts"] is not None else math.inf, r["kind"] != "conn",
                                       r["frame"] if r["frame"] is not None else math.inf))


def _conn_index(tls: TLSHandshakeDetails | None) -> dict:
    return {c.connection: c for c in tls.connections} if tls is not None else {}


def _new_conn_note(name, conns: dict, seen: set) -> list:
    if not name or name in seen:
        return []
    seen.add(name)
    c = conns.get(name)
    if c is None:
        return [_note(f"new TCP+TLS connection {name}", None, None, "conn")]
    label = f"new TCP+TLS connection {name}" + (f" from {c.client}" if c.client else "")
    if c.version:
        label += f" ({c.version})"
    return [_note(label, c.start, c.first_frame, "conn")]


def _seq_groups(s) -> list[tuple[str, str, str, list]]:
    """(phase, status, summary, rows) per phase in order, then the session end."""
    tls = _tls(s)
    conns = _conn_index(tls)
    seen = {tls.connection if tls is not None else None}
    groups = []
    for p in s.phases:
        name = p.phase
        d = p.details
        rows: list[dict] = []
        if d is None:
            pass
        elif name == "tls-handshake":
            ch, sh = d.client_hello or None, d.server_hello or None
            if ch is not None:
                rows.append(_msg("c2s", f"TLS ClientHello (SNI {ch.sni or '—'}, up to {ch.max_version})",
                                 ch.time, ch.frame))
            if sh is not None:
                rows.append(_msg("s2c", f"ServerHello {sh.version or ''} {sh.cipher_suite or ''}"
                                 + (" (resumed)" if sh.resumed else ""), sh.time, sh.frame))
                if d.certificates:
                    rows.append(_msg("s2c", f"Certificate {d.certificates[0].get('subject') or ''} "
                                     f"({len(d.certificates)} in chain)", sh.time, None))
            if d.certificate_request:
                cr = d.certificate_request
                rows.append(_msg("s2c", "CertificateRequest", cr.time, cr.frame))
            if d.client_certificate:
                cc = d.client_certificate
                rows.append(_msg("c2s", f"client Certificate ({cc.count})", sh.time if sh is not None else None,
                                 cc.frame))
            for a in d.alerts:
                rows.append(_msg(a.direction, f"TLS Alert {a.name}", a.time, a.frame, "bad"))
        elif name == "group-selection":
            for post in d.posts:
                label = f"POST {post.target}"
                if post.group_select:
                    label += f" group-select={post.group_select}"
                else:
                    label += f" (aggregate-auth v{post.aggregate_auth_version or '?'}, init)"
                rows.append(_msg("c2s", label, post.time, post.frame))
                status = opt(post.status)
                if status is not None or post.response_frame:
                    ans = f"{status} {post.response_type or ''}".strip()
                    if post.group_list:
                        ans += f"; groups: {', '.join(str(g) for g in post.group_list)}"
                    rows.append(_msg("s2c", ans, opt(post.response_time), opt(post.response_frame),
                                     "" if status == 200 else "bad"))
        elif name == "user-auth":
            rounds = d.rounds
            for i, r in enumerate(rounds):
                label = f"POST {r.target} {r.type or ''}"
                if r.fields:
                    label += f" ({', '.join(str(f) for f in r.fields)})"
                rows.append(_msg("c2s", label, r.time, r.frame))
                status = opt(r.status)
                if status is not None or r.response_frame:
                    ans = f"{status} {r.response_type or ''}"
                    if r.auth_id:
                        ans += f" auth id={r.auth_id}"
                    if r.error or r.message:
                        ans += f": {r.error or r.message}"
                    bad = (status != 200 or r.error or r.auth_id == "failure"
                           or (i == len(rounds) - 1 and (d.result == "failure" or p.status == "failed")))
                    rows.append(_msg("s2c", ans, opt(r.response_time), opt(r.response_frame), "bad" if bad else ""))
        elif name == "downloader":
            for g in d.gets:
                rows += _new_conn_note(g.connection, conns, seen)
                rows.append(_msg("c2s", f"GET {g.target}", g.time, g.frame))
                status = opt(g.status)
                if status is not None or g.response_frame:
                    ans = f"{status}" + (f" ({_bytes(g.size)})" if opt(g.size) is not None else "")
                    rows.append(_msg("s2c", ans, None, opt(g.response_frame), "" if status == 200 else "bad"))
                    rows[-1]["ts"] = rows[-2]["ts"]  # answer drawn right after its GET
        elif name == "cstp-connect":
            cd = connect_details(p)
            for cx in cd.connects if cd is not None else []:
                rows += _new_conn_note(cx.connection, conns, seen)
                rows.append(_msg("c2s", f"CONNECT {cx.target}", cx.time, cx.frame,
                                 "bad" if cx.cookie_matches_session is False else ""))
                status = opt(cx.status)
                if status is not None or cx.response_frame:
                    ans = f"{status} {cx.reason or ''}".strip()
                    prm = cx.parameters
                    if status == 200 and prm:
                        granted = [a for a in (prm.address, prm.address_ip6) if a]
                        granted += [f"MTU {prm.mtu}"] if prm.mtu else []
                        granted += [f"DTLS port {prm.dtls_port}"] if prm.dtls_port else []
                        ans += (": " + ", ".join(granted)) if granted else ""
                    if cx.x_reason:
                        ans += f" — X-Reason: {cx.x_reason}"
                    rows.append(_msg("s2c", ans, opt(cx.response_time), opt(cx.response_frame),
                                     "" if status == 200 else "bad"))
            ch = cd.channel if cd is not None else None
            te = cd.tunnel_established if cd is not None else None
            if ch:
                ip = ch.inner_packets
                dpd = ch.dpd.requests
                rows.append(_note(f"CSTP tunnel over TLS: {ip.get('c2s', 0)} inner packets ↑, {ip.get('s2c', 0)} ↓; "
                                  f"DPD {dpd.get('c2s', 0)}/{dpd.get('s2c', 0)}", te.time if te else None,
                                  te.frame if te else None, "tunnel"))
        elif name == "dtls":
            for fl in d.flow_list:
                hellos = fl.client_hellos
                rows.append(_note(f"UDP {fl.connection} {fl.client} → {fl.gateway}"
                                  + (f" ({fl.mode})" if fl.mode else ""),
                                  hellos[0].ts if hellos else None, None, "conn"))
                prev = None
                for n, h in enumerate(hellos, 1):
                    ts = _num(h.ts)
                    label = f"DTLS ClientHello #{n}" + (" (retransmission)" if h.retransmission else "")
                    if h.cookie:
                        label += " with cookie"
                    if prev is not None and ts is not None:
                        label += f" +{ts - prev:.1f}s"
                    rows.append(_msg("c2s", label, ts, h.frame, "dtls retrans" if h.retransmission else "dtls"))
                    prev = ts if ts is not None else prev
                more = (fl.client_hello_count or 0) - len(hellos)
                if more > 0:
                    rows.append(_note(f"… {more} more ClientHello(s) not recorded", prev, None))
                if fl.hello_verify_requests:
                    rows.append(_note(f"{fl.hello_verify_requests} HelloVerifyRequest(s) from the gateway",
                                      (hellos[0].ts if hellos else None), None))
                shl = fl.server_hello
                if shl is not None:
                    rows.append(_msg("s2c", f"DTLS ServerHello {fl.version or ''} {fl.cipher_suite or ''}"
                                     .strip(), shl.ts, shl.frame, "dtls"))
                if fl.established:
                    hs = _num(fl.handshake_duration)
                    took = f" (handshake {hs * 1000:.0f} ms)" if hs is not None else ""
                    rows.append(_note("DTLS established" + took
                                      + "; tunnel data moves to DTLS", fl.established_time,
                                      fl.established_frame, "tunnel"))
                for a in fl.alerts:
                    rows.append(_msg(a.get("direction"), f"DTLS Alert {a.get('name') or a.get('description')}",
                                     a.get("ts"), a.get("frame"), "dtls bad"))
        rows = _sorted_rows(rows)
        if len(rows) > MAX_SEQ_ROWS_PER_GROUP:
            hidden = len(rows) - 55
            rows = rows[:50] + [_note(f"… {hidden} more messages not drawn (see the verbose data)")] + rows[-5:]
        groups.append((name, str(p.status or ""), str(p.summary or ""), rows))
    end = s.tunnel.end if s.tunnel is not None else None
    if end is not None:
        label = f"{end.type} over {str(end.channel or '').upper()}"
        if end.reason:
            label += f" (reason “{end.reason}”)"
        groups.append(("end", "", "", [_msg(end.direction, label, end.ts, end.frame, "end")]))
    return groups


def _sequence_svg(idx: int, s, t0) -> str:
    groups = _seq_groups(s)
    W, xc, xg, row_h, top = 1060, 360, 940, 26, 64
    y = top + 8
    body: list[str] = []
    n_msgs = 0
    for gi, (name, status, summary, rows) in enumerate(groups):
        if not rows:
            rows = [_note(f"{status or 'absent'}: {summary}" if summary else (status or "absent"), kind="absent")]
        g_top = y
        g_h = len(rows) * row_h + 10
        fill = PHASE_FILL[gi % 2] if name != "end" else "#fff"
        body.append(f'<rect x="4" y="{g_top}" width="{W - 8}" height="{g_h}" fill="{fill}"/>')
        color = STATUS_COLOR.get(status, "#59636e")
        if name != "end":
            num = list(PHASE_TITLES).index(name) + 1 if name in PHASE_TITLES else ""
            body.append(f'<rect x="4" y="{g_top}" width="5" height="{g_h}" fill="{color}"/>')
            body.append(f'<text x="120" y="{g_top + 17}" font-size="13" font-weight="600">{num}. {_e(name)}</text>')
            body.append(f'<text x="120" y="{g_top + 33}" font-size="11" fill="{color}">{_e(status)}</text>')
        else:
            body.append(f'<text x="120" y="{g_top + 17}" font-size="13" font-weight="600">session end</text>')
        y += 5
        for r in rows:
            cy = y + row_h - 8
            tt = []
            if r["ts"] is not None and t0 is not None:
                tt.append(_rel(r["ts"], t0))
            if r["frame"] is not None:
                tt.append(f"#{r['frame']}")
            if tt:
                body.append(f'<text x="12" y="{cy + 3}" font-size="11" fill="#59636e" class="mono">'
                            f'{_e(" ".join(tt))}</text>')
            label = _short(r["label"], 84)
            title = f"<title>{_e(r['label'])}" + (f" — frame {r['frame']}" if r["frame"] else "") + "</title>"
            kind = r["kind"]
            if r["type"] == "note" or r["dir"] not in ("c2s", "s2c"):
                fillc = {"absent": "#ffffff", "conn": "#fff8c5", "tunnel": "#dafbe1"}.get(kind, "#ffffff")
                body.append(f'<g class="seq-note">{title}<rect x="{xc - 10}" y="{y + 2}" width="{xg - xc + 20}" '
                            f'height="{row_h - 6}" rx="4" fill="{fillc}" stroke="#8c959f" stroke-dasharray="'
                            f'{"4 3" if kind == "absent" else "none"}"/><text x="{(xc + xg) / 2}" y="{cy}" '
                            f'font-size="12" text-anchor="middle" fill="#1f2328">{_e(label)}</text></g>')
            else:
                n_msgs += 1
                x1, x2 = (xc, xg) if r["dir"] == "c2s" else (xg, xc)
                col = "#cf222e" if "bad" in kind else ("#bf5700" if "retrans" in kind else
                                                       "#1a7f37" if "dtls" in kind else "#8250df" if kind == "end"
                                                       else "#1f2328")
                dash = ' stroke-dasharray="6 4"' if "dtls" in kind else ""
                ah = x2 - 9 if x2 > x1 else x2 + 9
                hello = " dtls-hello" if "dtls" in kind and "ClientHello" in r["label"] else ""
                body.append(f'<g class="seq-msg {_e(r["dir"])}{hello}">'
                            f'{title}<line x1="{x1}" y1="{cy + 4}" x2="{ah}" y2="{cy + 4}" stroke="{col}" '
                            f'stroke-width="1.6"{dash}/><polygon points="{x2},{cy + 4} {ah},{cy} {ah},{cy + 8}" '
                            f'fill="{col}"/><text x="{(xc + xg) / 2}" y="{cy}" font-size="12" text-anchor="middle" '
                            f'fill="{col}">{_e(label)}</text></g>')
            y += row_h
        y = g_top + g_h + 4
    height = y + 10
    tls = _tls(s)
    client = (tls.client if tls is not None else None) or s.client
    head = [(f'<svg class="sequence" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" '
            f'height="{height}" role="img" aria-label="client-gateway sequence diagram of session {idx}">'),
            f'<line x1="{xc}" y1="{top - 8}" x2="{xc}" y2="{height - 6}" stroke="#8c959f" stroke-width="1.2"/>',
            f'<line x1="{xg}" y1="{top - 8}" x2="{xg}" y2="{height - 6}" stroke="#8c959f" stroke-width="1.2"/>']
    for x, who, what in ((xc, "Client", client), (xg, "Gateway", s.gateway)):
        head.append(f'<rect x="{x - 105}" y="6" width="210" height="44" rx="6" fill="#1f2328"/>'
                    f'<text x="{x}" y="24" font-size="13" font-weight="600" fill="#fff" '
                    f'text-anchor="middle">{who}</text>'
                    f'<text x="{x}" y="41" font-size="11" fill="#d1d9e0" '
                    f'text-anchor="middle">{_e(_short(what, 32))}</text>')
    head.append('<text x="12" y="24" font-size="11" fill="#59636e">t since session start</text>'
                '<text x="12" y="38" font-size="11" fill="#59636e"># frame</text>')
    # lifelines first, then phase bands would hide them: draw the bands, then the lifelines again on top
    return ("\n".join(head[:1] + body + head[1:]) + "</svg>"
            f'<div class="muted">{n_msgs} message(s); solid arrows: TCP/TLS, dashed: UDP/DTLS; '
            "hover an arrow for its full label.</div>")


# ---------------------------------------------------------------------------------------------- plots
def _axis_x(px0: float, px1: float, y: float, t_lo: float, t_hi: float) -> list[str]:
    """Ticks and labels of a time axis from t_lo to t_hi (seconds since session start) drawn at px0..px1."""
    out = [f'<line x1="{px0}" y1="{y}" x2="{px1}" y2="{y}" stroke="#59636e"/>']
    span = t_hi - t_lo
    step = _nice_step(span)
    v = math.ceil(t_lo / step) * step
    for _ in range(200):  # (bounded: with times so large that adding a step no longer moves v, once)
        if v > t_hi + 1e-9:
            break
        px = px0 + (v - t_lo) / span * (px1 - px0) if span > 0 else px0
        out.append(f'<line x1="{px:.1f}" y1="{y}" x2="{px:.1f}" y2="{y + 5}" stroke="#59636e"/>'
                   f'<text x="{px:.1f}" y="{y + 17}" font-size="11" text-anchor="middle" fill="#59636e">'
                   f"{_e(_fmt_t(v, step))}</text>")
        if v + step == v:
            break
        v += step
    return out


def _traffic_svg(series: list, t0, t_end) -> str:
    buckets: dict[tuple[str, str, int], list[int]] = {}
    for item in series:
        try:
            ch, d, sec, nbytes, npk = item
            sec, nbytes, npk = int(sec), int(nbytes), int(npk)
        except (TypeError, ValueError):
            continue
        if (ch, d) not in CHANNEL_COLOR:
            continue
        b = buckets.setdefault((ch, d, sec), [0, 0])
        b[0] += nbytes
        b[1] += npk
    if not buckets:
        return ('<p class="muted traffic-empty">No inner traffic in the tunnel (no data packets, or the tunnel was '
                "not decrypted).</p>")
    secs = [k[2] for k in buckets]
    base = math.floor(t0) if t0 is not None else min(secs)
    lo = min(min(secs), base)
    hi = max(max(secs) + 1, math.ceil(_num(t_end) or 0))
    nbins_max = 400
    width_s = max(1, math.ceil((hi - lo) / nbins_max))
    agg: dict[tuple[str, str, int], list[int]] = {}
    for (ch, d, sec), (nb, npk) in buckets.items():
        a = agg.setdefault((ch, d, (sec - lo) // width_s), [0, 0])
        a[0] += nb
        a[1] += npk
    stacks = {"c2s": {}, "s2c": {}}
    for (_ch, d, i), (nb, _) in agg.items():
        stacks[d][i] = stacks[d].get(i, 0) + nb
    peak = max([v for st in stacks.values() for v in st.values()] + [1]) / width_s
    W, L, R, top, half = 1060, 130, 1040, 28, 110
    mid = top + half
    H = top + 2 * half + 40
    # the buckets are whole epoch seconds; the plot spans the session, bars clipped to it
    a_abs = t0 if t0 is not None and t0 >= lo else float(lo)
    end = _num(t_end)
    b_abs = end if end is not None and end >= max(secs) else float(max(secs) + 1)
    span = b_abs - a_abs
    if not span >= 1e-3:  # (a single instant; or times so large that a millisecond is lost in the float)
        span = 1e-3 if a_abs + 1e-3 > a_abs else 1.0

    def xpx(t: float) -> float:
        return L + min(max(t - a_abs, 0.0), span) / span * (R - L)

    def ypx(rate: float) -> float:
        return rate / peak * (half - 6)

    out = [(f'<svg class="traffic" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
           'role="img" aria-label="inner traffic over time">'),
           f'<rect x="{L}" y="{top}" width="{R - L}" height="{2 * half}" fill="#f6f8fa"/>',
           f'<text x="{L - 8}" y="{top + 12}" font-size="11" text-anchor="end" '
           f'fill="#59636e">{_e(_bytes(peak))}/s</text>',
           (f'<text x="{L - 8}" y="{top + 2 * half}" font-size="11" text-anchor="end" fill="#59636e">'
           f"{_e(_bytes(peak))}/s</text>"),
           f'<text x="{L - 8}" y="{mid - 8}" font-size="11" text-anchor="end" fill="#59636e">↑ client→gateway</text>',
           (f'<text x="{L - 8}" y="{mid + 17}" font-size="11" text-anchor="end" fill="#59636e">↓ gateway→client'
            "</text>")]
    for (d, sign) in (("c2s", -1), ("s2c", 1)):
        for i in sorted({k[2] for k in agg if k[1] == d}):
            acc = 0.0
            for ch in ("cstp", "dtls"):
                v = agg.get((ch, d, i))
                if not v:
                    continue
                rate = v[0] / width_s
                h = max(1.0, ypx(rate))
                y0 = mid - ypx(acc) - h if sign < 0 else mid + ypx(acc)
                x = xpx(lo + i * width_s)
                w = max(1.5, xpx(lo + (i + 1) * width_s) - x - 0.6)
                x = min(x, R - w)
                t_rel = lo + i * width_s - (t0 if t0 is not None else lo)
                tip = (f"{ch.upper()} {DIRECTION_NAME[d]}, t+{t_rel:.0f}s"
                       + (f"…+{t_rel + width_s:.0f}s" if width_s > 1 else "")
                       + f": {v[0]} bytes in {v[1]} packet(s)")
                out.append(f'<rect class="traffic-bar {ch} {d}" x="{x:.2f}" y="{y0:.2f}" '
                           f'width="{w:.2f}" height="{h:.2f}" '
                           f'fill="{CHANNEL_COLOR[(ch, d)]}"><title>{_e(tip)}</title></rect>')
                acc += rate
    out.append(f'<line x1="{L}" y1="{mid}" x2="{R}" y2="{mid}" stroke="#59636e" stroke-width="0.8"/>')
    ref = t0 if t0 is not None else a_abs
    out += _axis_x(L, R, top + 2 * half, a_abs - ref, b_abs - ref)
    out.append(f'<text x="{(L + R) / 2}" y="{H - 2}" font-size="11" text-anchor="middle" fill="#59636e">'
               "time since session start</text></svg>")
    legend = ('<div class="legend muted">' + "".join(
        f'<span><i style="background:{CHANNEL_COLOR[k]}"></i>{k[0].upper()} {DIRECTION_NAME[k[1]]}</span>'
        for k in CHANNEL_COLOR) + f"<span>bytes of inner IP packets per {'second' if width_s == 1 else f'{width_s} s'}"
        "</span></div>")
    return "\n".join(out) + legend


def _hello_svg(s, t0) -> str:
    """A dot per DTLS ClientHello on a time axis, one row per UDP flow: shows the retry/backoff pattern.

    When the flows are far apart (a second attempt a minute later), each row is drawn relative to its own first
    ClientHello so that the backoff intervals stay readable; otherwise on the session's time axis."""
    dtls = s.phase("dtls")
    all_flows = dtls.details.flow_list if isinstance(dtls.details, DTLSDetails) else []
    flows = all_flows[:MAX_HELLO_ROWS]
    points = []  # (row, ts, frame, retrans, n)
    server = []  # (row, ts, frame)
    est = []  # (row, ts)
    for row, fl in enumerate(flows):
        for n, h in enumerate(fl.client_hellos, 1):
            ts = _num(h.ts)
            if ts is not None:
                points.append((row, ts, h.frame, bool(h.retransmission), n))
        sh = fl.server_hello
        if sh is not None and _num(sh.ts) is not None:
            server.append((row, _num(sh.ts), sh.frame))
        if fl.established and _num(fl.established_time) is not None:
            est.append((row, _num(fl.established_time)))
    if not points:
        why = dtls.summary or "no DTLS"
        return f'<p class="muted hello-empty">No DTLS ClientHello captured ({_e(why)}).</p>'
    ref = t0 if t0 is not None else min(p[1] for p in points)
    connect_ts = None
    cd = connect_details(s.phase("cstp-connect"))
    for c in cd.connects if cd is not None else []:
        if c.status == 200 and _num(c.response_time) is not None:
            connect_ts = _num(c.response_time)
            break
    row_times: dict[int, list[float]] = {}
    for row, ts, *_ in points + server + est:
        row_times.setdefault(row, []).append(ts)
    all_times = [t for v in row_times.values() for t in v] + ([connect_ts] if connect_ts is not None else [])
    abs_span = max(all_times) - min(all_times)
    flow_span = max(max(v) - min(v) for v in row_times.values())
    relative = len(row_times) > 1 and abs_span > 3 * max(flow_span, 1.0)
    if relative:
        row_ref = {row: min(v) for row, v in row_times.items()}
        lo, hi = 0.0, flow_span
        connect_ts = None
    else:
        row_ref = dict.fromkeys(row_times, ref)
        lo, hi = min(all_times) - ref, max(all_times) - ref
    pad = max((hi - lo) * 0.04, 0.05)
    lo, hi = lo - pad, hi + pad
    W, L, R, top, row_h = 1060, 170, 1040, 26, 44
    H = top + row_h * len(flows) + 46
    span = hi - lo

    def xpx(ts: float, row: int) -> float:
        return L + ((ts - row_ref.get(row, ref)) - lo) / span * (R - L)

    out = [(f'<svg class="hellos" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
            f'height="{H}" role="img" aria-label="DTLS ClientHello times">')]
    for row, fl in enumerate(flows):
        yy = top + row * row_h + row_h / 2
        sub = (f"first hello {_rel(row_ref[row], ref)}" if relative and row in row_ref
               else _short(fl.client, 24))
        out.append(f'<rect x="{L}" y="{yy - row_h / 2 + 3}" width="{R - L}" height="{row_h - 6}" fill="#f6f8fa"/>')
        out.append(f'<text x="{L - 8}" y="{yy - 2}" font-size="12" text-anchor="end">{_e(fl.connection)}</text>'
                   f'<text x="{L - 8}" y="{yy + 12}" font-size="11" text-anchor="end" fill="#59636e">{_e(sub)}</text>')
    if connect_ts is not None:
        x = xpx(connect_ts, -1)
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + row_h * len(flows)}" stroke="#8250df" '
                   f'stroke-dasharray="3 3"/><text x="{x + 3:.1f}" y="{top - 8}" font-size="11" fill="#8250df">'
                   "CONNECT answered 200</text>")
    by_row: dict[int, list] = {}
    for p in points:
        by_row.setdefault(p[0], []).append(p)
    for row, pts in by_row.items():
        yy = top + row * row_h + row_h / 2
        pts.sort(key=lambda p: p[1])
        for a, b in itertools.pairwise(pts):
            xa, xb = xpx(a[1], row), xpx(b[1], row)
            out.append(f'<line x1="{xa:.1f}" y1="{yy}" x2="{xb:.1f}" y2="{yy}" stroke="#afb8c1"/>')
            if xb - xa > 34:
                out.append(f'<text x="{(xa + xb) / 2:.1f}" y="{yy - 9}" font-size="10" text-anchor="middle" '
                           f'fill="#59636e">+{b[1] - a[1]:.1f}s</text>')
    for row, ts, frame, retrans, n in points:
        yy = top + row * row_h + row_h / 2
        color = "#bf5700" if retrans else "#0969da"
        tip = (f"ClientHello #{n}{' (retransmission)' if retrans else ''} at {_rel(ts, ref)}"
               + (f", frame {frame}" if frame is not None else ""))
        out.append(f'<circle class="hello-marker{" retrans" if retrans else ""}" cx="{xpx(ts, row):.2f}" cy="{yy}" '
                   f'r="5.5" fill="{color}" stroke="#fff" stroke-width="1"><title>{_e(tip)}</title></circle>')
    for row, ts, frame in server:
        yy = top + row * row_h + row_h / 2
        x = xpx(ts, row)
        tip = f"ServerHello at {_rel(ts, ref)}" + (f", frame {frame}" if frame is not None else "")
        out.append(f'<polygon class="server-hello-marker" points="{x:.1f},{yy - 7} {x + 7:.1f},{yy} {x:.1f},{yy + 7} '
                   f'{x - 7:.1f},{yy}" fill="#1a7f37"><title>{_e(tip)}</title></polygon>')
    for row, ts in est:
        yy = top + row * row_h + row_h / 2
        x = xpx(ts, row)
        out.append(f'<line x1="{x:.1f}" y1="{yy - 11}" x2="{x:.1f}" y2="{yy + 11}" stroke="#1a7f37" stroke-width="2">'
                   f"<title>DTLS established at {_e(_rel(ts, ref))}</title></line>")
    out += _axis_x(L, R, top + row_h * len(flows) + 4, lo, hi)
    axis = "time since each flow's first ClientHello" if relative else "time since session start"
    out.append(f'<text x="{(L + R) / 2}" y="{H - 2}" font-size="11" text-anchor="middle" fill="#59636e">'
               f"{axis}</text></svg>")
    n_all = sum(f.client_hello_count or 0 for f in all_flows)
    intervals = [f"{f.connection}: " + ", ".join(f"{v}s" for v in f.hello_intervals)
                 for f in flows if f.hello_intervals]
    legend = ('<div class="legend muted"><span><i style="background:#0969da;border-radius:6px"></i>ClientHello</span>'
              '<span><i style="background:#bf5700;border-radius:6px"></i>retransmission</span>'
              '<span><i style="background:#1a7f37"></i>ServerHello / established</span>'
              f"<span>{len(points)} ClientHello(s) drawn" + (f" of {n_all}" if n_all > len(points) else "")
              + "</span></div>")
    if len(all_flows) > len(flows):
        legend += f'<div class="muted">Only the first {len(flows)} of {len(all_flows)} DTLS flows are drawn.</div>'
    if intervals:
        legend += f'<div class="muted">Intervals between ClientHellos — {_e("; ".join(intervals[:20]))}</div>'
    return "\n".join(out) + legend

# ---------------------------------------------------------------------------------------------- verbose data
_TIME_KEYS = {"time", "ts", "start", "end", "response_time", "answered_ts", "first", "last", "established_time",
              "not_before", "not_after", "data_moved_to_dtls"}


def _pretty_xml(text: str) -> str:
    return re.sub(r">\s*<", ">\n<", text.strip())


def _is_header_list(v) -> bool:
    return (isinstance(v, list) and bool(v) and
            all(isinstance(x, (list, tuple)) and len(x) == 2 and all(isinstance(y, str) for y in x) for x in v))


def _value(v, key: str | None = None, depth: int = 0) -> str:
    """Generic, escaped rendering of a JSON value (dict → table, list → items, XML → pre)."""
    if v is None:
        return '<span class="muted">—</span>'
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        if key in _TIME_KEYS and isinstance(v, (int, float)) and v > 1e8:
            return f"{_e(_iso(v))} <span class=\"muted\">({_e(v)})</span>"
        return _e(v)
    if isinstance(v, str):
        text = v if len(v) <= MAX_TEXT else v[:MAX_TEXT] + f"… ({len(v)} characters)"
        if text.lstrip().startswith("<") and len(text) > 40:
            return f'<pre class="xml">{_e(_pretty_xml(text))}</pre>'
        if "\n" in text:
            return f"<pre>{_e(text)}</pre>"
        return _e(text)
    if depth > 8:
        return f"<pre>{_e(json.dumps(v, default=str)[:MAX_TEXT])}</pre>"
    if isinstance(v, dict):
        if not v:
            return '<span class="muted">—</span>'
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_value(x, str(k), depth + 1)}</td></tr>" for k, x in v.items())
        return f'<table class="kv"><tbody>{rows}</tbody></table>'
    if isinstance(v, (list, tuple)):
        if not v:
            return '<span class="muted">—</span>'
        more = (f'<div class="muted">… {len(v) - MAX_LIST_ITEMS} more</div>' if len(v) > MAX_LIST_ITEMS else "")
        items = list(v)[:MAX_LIST_ITEMS]
        if _is_header_list(items):
            rows = "".join(f"<tr><td>{_e(a)}</td><td>{_e(b)}</td></tr>" for a, b in items)
            return f'<table class="hdr kv mono"><tbody>{rows}</tbody></table>{more}'
        if all(not isinstance(x, (dict, list, tuple)) for x in items):
            return ", ".join(_value(x, key, depth + 1) for x in items) + more
        return "".join(f'<div class="item">{_value(x, key, depth + 1)}</div>' for x in items) + more
    return _e(v)


def _exchange(title: str, parts: list[tuple[str, object]]) -> str:
    body = "".join(f"<h4 style=\"margin:8px 0 2px\">{_e(label)}</h4>{_value(val)}" for label, val in parts
                   if val not in (None, [], {}, ""))
    body = body or '<p class="muted">—</p>'
    return f"<details><summary>{_e(title)}</summary>{body}</details>"


_BULKY = ("headers", "request_headers", "response_headers", "xml", "response_xml", "parameters", "requested")


def _rest(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _BULKY}


def _verbose(s: dict) -> str:
    """The session's JSON object (secrets redacted unless shown), section by section."""
    ph = {p.get("phase"): p for p in s.get("phases") or [] if isinstance(p, dict)}
    out = []
    g = (ph.get("group-selection") or {}).get("details") or {}
    for post in g.get("posts") or []:
        if isinstance(post, dict):
            out.append(_exchange(f"POST {post.get('target')} (frame {post.get('frame')}) → {post.get('status')} "
                                 f"{post.get('response_type') or ''}",
                                 [("exchange", _rest(post)),
                                  ("request headers", post.get("headers")), ("request XML", post.get("xml")),
                                  ("response headers", post.get("response_headers")),
                                  ("response XML", post.get("response_xml"))]))
    a = (ph.get("user-auth") or {}).get("details") or {}
    for r in a.get("rounds") or []:
        if isinstance(r, dict):
            out.append(_exchange(f"POST {r.get('target')} {r.get('type') or ''} (frame {r.get('frame')}) → "
                                 f"{r.get('status')} {r.get('response_type') or ''}",
                                 [("exchange", _rest(r)),
                                  ("request headers", r.get("headers")), ("request XML", r.get("xml")),
                                  ("response headers", r.get("response_headers")),
                                  ("response XML", r.get("response_xml"))]))
    if a.get("complete_xml"):
        out.append(_exchange("aggregate-auth “complete” answer (XML)", [("XML", a.get("complete_xml"))]))
    dl = (ph.get("downloader") or {}).get("details") or {}
    for gt in dl.get("gets") or []:
        if isinstance(gt, dict):
            out.append(_exchange(f"GET {gt.get('target')} (frame {gt.get('frame')}) → {gt.get('status')}",
                                 [("exchange", gt)]))
    c = (ph.get("cstp-connect") or {}).get("details") or {}
    for cx in c.get("connects") or []:
        if isinstance(cx, dict):
            out.append(_exchange(f"CONNECT {cx.get('target')} (frame {cx.get('frame')}) → {cx.get('status')} "
                                 f"{cx.get('reason') or ''}",
                                 [("exchange", _rest(cx)),
                                  ("request headers", cx.get("request_headers")),
                                  ("response headers", cx.get("response_headers")),
                                  ("parameters granted", cx.get("parameters")),
                                  ("parameters requested", cx.get("requested"))]))
    shown = {"posts", "rounds", "complete_xml", "gets", "connects"}  # drawn as exchanges above
    for i, p in enumerate(s.get("phases") or [], 1):
        if isinstance(p, dict):
            det = p.get("details")
            rest = {k: v for k, v in det.items() if k not in shown} if isinstance(det, dict) else det
            note = ('<p class="muted">The HTTP exchanges of this phase are in the sections above.</p>'
                    if isinstance(det, dict) and shown & det.keys() else "")
            out.append(f'<details class="phase-details"><summary>Phase {i} {_e(p.get("phase"))}: all details'
                       f"</summary>{note}{_value(rest)}</details>")
    tunnel = {k: v for k, v in (s.get("tunnel") or {}).items() if k != "series"}
    flows = _value({"tunnel": tunnel, "connections": s.get("connections")})
    out.append(f"<details><summary>Tunnel and flows</summary>{flows}</details>")
    return "\n".join(out)
