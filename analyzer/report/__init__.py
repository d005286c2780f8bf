"""Renderers: the session model → terminal text, JSON, HTML (and the inner-traffic pcapng writer).

Every renderer takes `show_secrets`; without it, every `Secret`/`Redactable` in the model is redacted.
"""
from __future__ import annotations


def render(analysis, fmt: str, *, version: str, verbose: bool = False, show_secrets: bool = False,
           to_terminal: bool = False) -> str:
    if fmt == "json":
        from .json_report import render_json  # noqa: PLC0415

        return render_json(analysis, version=version, show_secrets=show_secrets)
    if fmt == "html":
        from .html import render_html  # noqa: PLC0415

        return render_html(analysis, version=version, show_secrets=show_secrets)
    from .terminal import render_terminal  # noqa: PLC0415

    return render_terminal(analysis, version=version, verbose=verbose, show_secrets=show_secrets,
                           color=to_terminal)
