"""Renderers: the session model → terminal text, JSON, HTML (and the inner-traffic pcapng writer).

Every renderer takes `show_secrets`; without it, every `Secret`/`Redactable` in the model is redacted.
"""
from __future__ import annotations


def render(analysis, fmt: str, *, version: str, verbose: bool = False, show_secrets: bool = False,
           to_terminal: bool = False, tz=None, width: int | None = None, summary: bool = False,
           filters: dict | None = None) -> str:
    """`tz`: the zone of absolute times (analyzer/timefmt.py, default UTC); `width`: the terminal's columns (None:
    the real terminal's, else COLUMNS, else 100); `summary`: one line per session (terminal only); `filters`: the
    session filters applied, said in every format."""
    if fmt == "json":
        from .json_report import render_json  # noqa: PLC0415

        return render_json(analysis, version=version, show_secrets=show_secrets, tz=tz, filters=filters)
    if fmt == "html":
        from .html import render_html  # noqa: PLC0415

        return render_html(analysis, version=version, show_secrets=show_secrets, tz=tz, filters=filters)
    from .terminal import render_summary, render_terminal  # noqa: PLC0415

    if summary:
        return render_summary(analysis, color=to_terminal, tz=tz, width=width, filters=filters)
    return render_terminal(analysis, version=version, verbose=verbose, show_secrets=show_secrets,
                           color=to_terminal, tz=tz, width=width, filters=filters)


def render_pieces(analysis, fmt: str, **kw):
    """`render`'s text in pieces to write one after the other: JSON one session at a time (its whole document is
    never in memory: `json_report.iter_json`), the other formats whole."""
    if fmt == "json":
        from .json_report import iter_json  # noqa: PLC0415

        return iter_json(analysis, version=kw["version"], show_secrets=kw.get("show_secrets", False),
                         tz=kw.get("tz"), filters=kw.get("filters"))
    return iter((render(analysis, fmt, **kw),))
