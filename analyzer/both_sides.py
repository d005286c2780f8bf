"""`acflow analyze CAPTURE --other-side OTHER`: the sessions of one capture, and what the path did to their packets
as a second capture of the same traffic, taken at another point, shows it (analyzer/path.py).

The edge between the analysis and the comparison: reads both files (`path_read.read_side`), compares them, and
puts each path finding (analyzer/path_findings.py) with the session whose flow it is about — the flow's addresses
as the analysed capture shows them — or, when no session has that flow, with the capture-wide findings. The
comparison itself goes into the report as `path` (docs/json-schema.md). The verdicts are made again afterwards:
a path finding can be the proof a verdict rests on.
"""
from __future__ import annotations

import os

from .model import Analysis
from .path import PathReport, compare
from .path_findings import path_findings
from .path_read import read_side
from .rules import finding_order
from .verdict import apply_verdicts


def _endpoint(text: str | None) -> str | None:
    return text.strip() if isinstance(text, str) else None


def attach_other_side(analysis: Analysis, capture, other) -> PathReport:
    """Compare ``capture`` (the analysed one: "a") with ``other`` ("b"); findings into ``analysis``."""
    report = compare(read_side(capture, str(capture)), read_side(other, str(other)))
    short = {"a": os.path.basename(str(capture)), "b": os.path.basename(str(other))}
    names = short if short["a"] != short["b"] else {"a": str(capture), "b": str(other)}
    # each session's flows in the analysed capture, by (client endpoint, protocol)
    owner: dict[tuple[str, int], object] = {}
    for s in analysis.sessions:
        for c in s.connections:
            proto = 17 if str(getattr(c, "connection", "")).startswith("udp") else 6
            ep = _endpoint(getattr(c, "client", None))
            if ep:
                owner.setdefault((ep, proto), s)
    touched = {id(analysis.findings): analysis.findings}
    def session_of(pair):
        return owner.get((pair.a.label()["client"], pair.a.proto)) if pair is not None and pair.a is not None else None

    for pair in report.pairs:
        s = session_of(pair)
        if s is not None:
            pair.roles = {"session": s.id}
    for pair, finding in path_findings(report, names, group_of=lambda p: getattr(session_of(p), "id", None)):
        session = session_of(pair)
        found = session.findings if session is not None else analysis.findings
        found.append(finding)
        touched[id(found)] = found
    for found in touched.values():
        found.sort(key=finding_order)
    analysis.path = report
    apply_verdicts(analysis)
    return report
