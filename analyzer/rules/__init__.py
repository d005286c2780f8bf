"""Findings rules: one module per rule (or small family), each reading the session model, never raw packets.

A rule module defines `RULE_IDS` (the finding ids it may emit: part of the public JSON contract, see
docs/findings.md) and `check(session, ctx) -> list[Finding]`. `ctx` gives capture-wide facts the session model
keeps outside sessions (ICMP unreachables, pipeline statistics). Rules are listed in `RULE_MODULES`, in the
order their findings are shown.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ..model import Analysis, Finding

RULE_MODULES = [
    "tls_cert",
    "tls_client_cert",
    "tls_alert",
    "aggauth",
    "auth_failed",
    "downloader",
    "connect_rejected",
    "mtu",
    "dtls_handshake",
    "dtls_backoff",
    "dtls_path",
    "dpd",
    "tcp_retransmissions",
    "reconnect",
    "session_end",
    "keys_missing",
]

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Context:
    icmp_unreachable: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def load_rules():
    return [importlib.import_module(f"{__name__}.{m}") for m in RULE_MODULES]


def apply_rules(analysis: Analysis, pipe) -> None:
    ctx = Context(icmp_unreachable=list(getattr(pipe, "icmp_unreachable", [])))
    rules = load_rules()
    for s in analysis.sessions:
        found: list[Finding] = []
        for rule in rules:
            try:
                found += rule.check(s, ctx) or []
            except Exception as e:  # noqa: BLE001 - a broken rule must not hide the others' findings
                found.append(Finding(id="ACFLOW_RULE_ERROR", severity="warning",
                                     message=f"rule {rule.__name__.rsplit('.', 1)[-1]} failed: {e!r}",
                                     remedy="report this as a bug in acflow, with the capture if you can share it"))
        found.sort(key=lambda f: (_SEVERITY_ORDER.get(f.severity, 3), f.time or 0))
        s.findings = found
