"""From connection trackers to VPN sessions: the public face of the session builder (analyzer/phases/).

`reconstruct(pipe, gateways)` → (sessions, other-traffic summary, the other traffic's failed connects), as
analyzer/driver.py calls it;
`build_sessions(pipe, gateways)` → the sessions only. Grouping is analyzer/phases/grouping.py, each phase is
built by its own module of analyzer/phases/ (typed details, see analyzer/phases/__init__.py).
"""
from __future__ import annotations

from .model import Session
from .phases.grouping import DOWNLOADER_PATHS, JOIN_WINDOW, group_connections
from .phases.session import reconstruct

__all__ = ["DOWNLOADER_PATHS", "JOIN_WINDOW", "build_sessions", "group_connections", "reconstruct"]


def build_sessions(pipe, gateways=None) -> list[Session]:
    """The VPN sessions of the capture (see `reconstruct` for the other traffic too)."""
    return reconstruct(pipe, gateways)[0]
