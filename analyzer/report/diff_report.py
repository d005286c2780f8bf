"""Renderers of `acflow diff` (analyzer/diff.py DiffResult): terminal text, JSON, one self-contained HTML page.

Values come from report documents whose secrets are already redacted; every string from a capture is still
hostile input: the HTML page writes it only through html.escape and forbids scripts (CSP meta tag).
"""
from __future__ import annotations

import html
import io
import json

from rich.console import Console
from rich.markup import escape


def _v(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, str) and "\n" not in x:
        return x
    return json.dumps(x, ensure_ascii=False)


def _line(c) -> str:
    where = f" [{c.where}]" if c.where else ""
    if c.kind == "added":
        return f"+ {c.field}{where}: {_v(c.new)}"
    if c.kind == "removed":
        return f"- {c.field}{where}: {_v(c.baseline)}"
    tol = f"  (tolerance {c.tolerance})" if c.tolerance else ""
    return f"~ {c.field}{where}: {_v(c.baseline)} → {_v(c.new)}{tol}"


_STYLE = {"added": "green", "removed": "red", "changed": "yellow"}


def render_terminal(result, *, version: str, color: bool = False) -> str:
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=color, no_color=not color, width=140, highlight=False, soft_wrap=True)
    con.print(f"[bold]acflow {escape(version)} diff[/]")
    con.print(f"  baseline: {escape(result.baseline['path'])} ({result.baseline['sessions']} session(s))")
    con.print(f"  new:      {escape(result.new['path'])} ({result.new['sessions']} session(s))")
    if result.ignore:
        con.print("  ignored fields: " + escape(", ".join(result.ignore)))
    for n in result.notes:
        con.print(f"  [yellow]note:[/] {escape(n)}")
    for p in result.pairs:
        con.print()
        con.print(f"[bold]Session {escape(p.label)}[/]: "
                  + (f"[red]{len(p.changes)} difference(s)[/]" if p.changes else "[green]same[/]"))
        for c in p.changes:
            con.print(f"  [{_STYLE[c.kind]}]{escape(_line(c))}[/]")
        if p.within_tolerance:
            con.print(f"  within tolerance ({len(p.within_tolerance)}):")
            for c in p.within_tolerance:
                con.print(f"    [dim]{escape(_line(c))}[/]")
        if p.ignored:
            con.print(f"  ignored ({len(p.ignored)}): " + escape(", ".join(sorted({c.field for c in p.ignored}))))
    if result.capture_changes:
        con.print()
        con.print("[bold]Capture-wide findings[/]")
        for c in result.capture_changes:
            con.print(f"  [{_STYLE[c.kind]}]{escape(_line(c))}[/]")
    con.print()
    con.print("[bold red]DIFFERS[/]" if result.differs else "[bold green]SAME[/] (nothing beyond tolerance differs)")
    return buf.getvalue()


def render_json(result, *, version: str) -> str:
    return json.dumps(result.to_json(version), indent=2, ensure_ascii=False, default=str) + "\n"


_CSS = """
body{margin:0;padding:24px 32px;font:14px/1.45 system-ui,sans-serif;color:#1f2328;max-width:1180px}
h1{font-size:22px}h2{font-size:17px;margin-top:26px}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #d1d9e0;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f6f8fa}.mono{font-family:ui-monospace,monospace;font-size:12px}
.added{color:#1a7f37}.removed{color:#cf222e}.changed{color:#9a6700}.same{color:#1a7f37}.differs{color:#cf222e}
.muted{color:#59636e}.note{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;border-radius:6px}
"""


def _e(x) -> str:
    return html.escape(_v(x), quote=True)


def _rows(changes) -> str:
    out = ["<table><tr><th>field</th><th>where</th><th>kind</th><th>baseline</th><th>new</th><th>tolerance</th></tr>"]
    for c in changes:
        out.append(f"<tr class=\"{_e(c.kind)}\"><td class=\"mono\">{_e(c.field)}</td><td class=\"mono\">"
                   f"{_e(c.where or '')}</td><td>{_e(c.kind)}</td><td class=\"mono\">{_e(c.baseline)}</td>"
                   f"<td class=\"mono\">{_e(c.new)}</td><td>{_e(c.tolerance or '')}</td></tr>")
    out.append("</table>")
    return "".join(out)


def render_html(result, *, version: str) -> str:
    verdict = "differs" if result.differs else "same"
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
             f"<title>acflow diff — {_e(verdict)}</title><style>{_CSS}</style></head><body>",
             f"<h1>acflow diff: <span class=\"{verdict}\">{verdict.upper()}</span></h1>",
             f"<p class=\"muted\">acflow {_e(version)} · baseline <span class=\"mono\">{_e(result.baseline['path'])}"
             f"</span> ({result.baseline['sessions']} session(s)) · new <span class=\"mono\">"
             f"{_e(result.new['path'])}</span> ({result.new['sessions']} session(s))</p>"]
    if result.ignore:
        parts.append(f"<p>Ignored fields: <span class=\"mono\">{_e(', '.join(result.ignore))}</span></p>")
    for n in result.notes:
        parts.append(f"<p class=\"note\">{_e(n)}</p>")
    for p in result.pairs:
        state = f"{len(p.changes)} difference(s)" if p.changes else "same"
        parts.append(f"<h2>Session {_e(p.label)}: <span class=\"{'differs' if p.changes else 'same'}\">"
                     f"{_e(state)}</span></h2>")
        if p.changes:
            parts.append(_rows(p.changes))
        if p.within_tolerance:
            parts.append(f"<details><summary>Within tolerance ({len(p.within_tolerance)})</summary>"
                         f"{_rows(p.within_tolerance)}</details>")
        if p.ignored:
            parts.append(f"<details><summary>Ignored ({len(p.ignored)})</summary>{_rows(p.ignored)}</details>")
    if result.capture_changes:
        parts.append("<h2>Capture-wide findings</h2>" + _rows(result.capture_changes))
    parts.append("</body></html>\n")
    return "".join(parts)


def render_diff(result, fmt: str, *, version: str, color: bool = False) -> str:
    if fmt == "json":
        return render_json(result, version=version)
    if fmt == "html":
        return render_html(result, version=version)
    return render_terminal(result, version=version, color=color)
