"""`acflow analyze CAPTURE --other-side OTHER`: the sessions of one capture, and what the path did to their packets
as a second capture of the same traffic, taken at another point, shows it (analyzer/path.py).

The edge between the analysis and the comparison: reads both files (`path_read.read_side`), compares them, and
puts each path finding (analyzer/path_findings.py) with the session whose flow it is about — the flow's addresses
as the analysed capture shows them — or, when no session has that flow, with the capture-wide findings. The
comparison itself goes into the report as `path` (docs/json-schema.md). The verdicts are made again afterwards:
a path finding can be the proof a verdict rests on.

One file can hold both points too: a firewall or router captured on two interfaces (`two_points`). Its interface
nearer the client is analysed (the other's frames left out: `analyze.feed_capture`'s ``skip_interfaces``), the
other compared with it, and CAPTURE_TWO_POINTS says so.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from dissectors.pcapfile import Interface

from .capture import CaptureFormatError, read_capture_batches
from .model import Analysis, Finding
from .path import PathReport, compare, merged
from .path_findings import path_findings
from .path_read import MAX_PACKETS, read_side, read_sides
from .rules import finding_order
from .verdict import apply_verdicts


def _endpoint(text: str | None) -> str | None:
    return text.strip() if isinstance(text, str) else None


def attach_other_side(analysis: Analysis, capture, other) -> PathReport:
    """Compare ``capture`` (the analysed one: "a") with ``other`` ("b": a capture, or the files of one — a ring
    buffer's, in the order they were written — compared as one, its frames numbered on through them); findings into
    ``analysis``."""
    others = list(other) if isinstance(other, (list, tuple)) else [other]
    if len(others) == 1:
        side_b = read_side(others[0], str(others[0]))
        b_short, b_full = os.path.basename(str(others[0])), str(others[0])
    else:
        left = MAX_PACKETS
        parts = []
        unread = []
        for path in others:
            try:
                part = read_side(path, os.path.basename(str(path)), limit=max(left, 0))
            except (OSError, CaptureFormatError) as e:  # one bad file of many: said, the others compared
                if len(unread) + 1 == len(others):
                    raise
                unread.append(f"{os.path.basename(str(path))}: not read ({getattr(e, 'strerror', None) or e})")
                continue
            left -= len(part.packets)
            parts.append(part)
        names = [os.path.basename(str(p)) for p in others]
        b_short = f"{names[0]} … {names[-1]} ({len(names)} files)"
        side_b = merged(parts, b_short)
        side_b.files = [str(p) for p in others]
        side_b.errors[:0] = unread
        b_full = b_short
    report = compare(read_side(capture, str(capture)), side_b)
    short = {"a": os.path.basename(str(capture)), "b": b_short}
    attach_path(analysis, report, short if short["a"] != short["b"] else {"a": str(capture), "b": b_full})
    return report


def attach_path(analysis: Analysis, report: PathReport, names: dict) -> None:
    """Put the findings of ``report`` with the sessions of ``analysis`` (the analysed capture is its "a"; ``names``
    how messages call the two), `Analysis.path`, the verdicts made again."""
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


# -- one file, two points: a capture of a firewall's (a router's) two interfaces -------------------------------------

MIN_SHARED = 5  # packets seen on both interfaces, at least (the same 20 bytes or more at both: the same traffic), and
MIN_SHARED_SHARE = 0.05  # this share of the smaller interface's TCP/UDP packets
HEAD_BYTES = 1 << 20  # where the interfaces are looked for before reading the whole file
DETECT_PACKETS = 20_000  # TCP/UDP packets read to tell whether two interfaces hold the same traffic


@dataclass
class TwoPoints:
    """A capture whose two interfaces hold the same traffic: `near` (the interface nearer the client: the sessions
    are read from it) and `far` (compared with it), interface ids; `report` their comparison (a = near)."""
    near: int
    far: int
    report: PathReport
    names: dict


def _interfaces_in_head(path) -> int:
    """The pcapng interfaces declared in the first HEAD_BYTES of the capture (a pcap file: 0)."""
    seen, read = 0, 0
    try:
        for batch in read_capture_batches(path, chunk_size=1 << 16):
            seen += sum(1 for ev in batch if type(ev) is Interface)
            read += 1 << 16
            if read >= HEAD_BYTES:
                break
    except (OSError, CaptureFormatError, ValueError):
        return 0
    return seen


def two_points(path) -> TwoPoints | None:
    """When the capture at ``path`` holds the same traffic on two of its interfaces (a firewall or router captured
    on its inside and outside: FTD, Palo Alto, dumpcap -i A -i B, Wireshark on two interfaces): the two busiest
    interfaces, paired as `analyzer.path` pairs two captures, share at least MIN_SHARED packets and MIN_SHARED_SHARE
    of the smaller one's. None otherwise (one interface; a VPN adapter beside the physical interface holds other
    packets: the tunnel's inside)."""
    if _interfaces_in_head(path) < 2:
        return None
    base = os.path.basename(str(path))

    def label(itf) -> str:
        if itf is None:
            return base
        return f"{base} interface {itf.id}" + (f" ({itf.name})" if itf.name else "")

    # told from the first DETECT_PACKETS packets (a capture of a physical interface and the VPN's adapter is not
    # read twice to the end), then compared whole
    sides = read_sides(path, name_of=label, limit=DETECT_PACKETS)
    busiest = sorted(sides.items(), key=lambda kv: (-len(kv[1].packets), kv[0]))[:2]
    if len(busiest) < 2:
        return None
    (i, a), (j, b) = sorted(busiest)
    report = compare(a, b)
    if report.matched < MIN_SHARED or report.matched < MIN_SHARED_SHARE * min(len(a.packets), len(b.packets)):
        return None
    if sum(len(x.packets) for x in sides.values()) >= DETECT_PACKETS:
        sides = read_sides(path, name_of=label)
        a, b = sides[i], sides[j]
        report = compare(a, b)
    if report.nearer_client == "b":
        i, j, a, b = j, i, b, a
        report = compare(a, b)
    return TwoPoints(i, j, report, {"a": a.name, "b": b.name})


def two_points_finding(tp: TwoPoints) -> Finding:
    r = tp.report
    where = "nearer the client" if r.nearer_client == "a" else "the first"
    return Finding(
        id="CAPTURE_TWO_POINTS", severity="info", time=None, frames=[],
        message=f"The capture holds the same traffic at two points: {tp.names['a']} and {tp.names['b']} "
                f"({r.matched} packets seen on both). The sessions are read from interface {tp.near} ({where}), and "
                f"interface {tp.far} is compared with it (PATH_* findings); the flows' tcp.stream / udp.stream "
                f"numbers count interface {tp.near}'s packets only.",
        remedy="Nothing to do: acflow reads one side and tells what happened between the two. To see the same flow "
               "numbers in Wireshark, keep one interface first: tshark -r FILE -Y 'frame.interface_id == "
               f"{tp.near}' -w ONE.pcapng.",
        evidence={"near_interface": tp.near, "far_interface": tp.far, "packets_paired": r.matched,
                  "nearer_client": r.nearer_client})
