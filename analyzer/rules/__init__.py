"""Findings rules: one module per rule (or small family), each reading the session model, never raw packets.

A rule module defines `RULE_IDS` (the finding ids it may emit: part of the public JSON contract, see
docs/findings.md) and `check(session, ctx) -> list[Finding]`. `ctx` gives capture-wide facts the session model
keeps outside sessions (ICMP unreachables, pipeline statistics). Rules are listed in `RULE_MODULES`, in the
order their findings are shown.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ..capture_point import describe_interface, tunnel_devices
from ..model import Analysis, Finding
from ..wording import tls_servers_line

RULE_MODULES = [
    "captive_portal",
    "dns_slow",
    "tcp_connect",
    "tls_stalled",
    "tls_cert",
    "tls_client_cert",
    "tls_alert",
    "aggauth",
    "group_url",
    "auth_failed",
    "auth_slow",
    "auth_sso",
    "hostscan",
    "downloader",
    "connect_rejected",
    "connect_slow",
    "mtu",
    "dtls_handshake",
    "dtls_backoff",
    "dtls_cookie",
    "dtls_answers",
    "dtls_psk",
    "dtls_path",
    "dtls_loss",
    "dpd",
    "tunnel_silent",
    "inner",
    "dns_outside",
    "outside_tunnel",
    "tcp_retransmissions",
    "tcp_reset",
    "reconnect",
    "gateway_timeout",
    "session_end",
    "capture_quality",
    "keys_missing",
]

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Context:
    icmp_unreachable: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    capture_end: float | None = None  # time of the last frame of all captures
    # the key material given (key logs, embedded secrets, RSA keys): KEYS_MISSING says why it did not help
    keylog_entries: int = 0  # usable key log lines (files and Decryption Secrets Blocks)
    keylog_randoms: frozenset = frozenset()  # the ClientHello randoms they name
    rsa_keys: list = field(default_factory=list)  # the RSA key files given
    #: packets the capturing programs reported dropped, over every capture (CAPTURE_DROPPED): DTLS_RECORDS_LOST
    capture_dropped: int = 0
    udp_seen: bool = True  # the capture holds UDP (a capture filter of TCP only leaves DTLS out: nothing to say)
    #: address -> [(connection, first, last, pauses, the other end's address)] of every TCP/UDP flow with that address
    #: at one end (pauses: the flow's long ones, dissectors.flows.note_quiet, None when not kept): what else a host did
    #: at a time
    flows_by_host: dict = field(default_factory=dict)
    #: id(session) -> the silences TUNNEL_SILENT told of it (analyzer/rules/tunnel_silent.py `told`), kept for the
    #: rules after it (TCP_RETRANSMISSIONS) so that they are read once per session
    silences: dict = field(default_factory=dict)
    #: the captive portals the capture shows, per client (analyzer/captive_portal.py; "other traffic" captive_portal)
    captive_portals: list = field(default_factory=list)
    #: every DNS lookup of the capture (analyzer/dns_lookups.py `Lookups.entries` values): DNS_SLOW
    dns_lookups: list = field(default_factory=list)


def load_rules():
    return [importlib.import_module(f"{__name__}.{m}") for m in RULE_MODULES]


def apply_rules(analysis: Analysis, pipe) -> None:
    ends = [c.last for c in analysis.captures if c.last is not None]
    ctx = Context(icmp_unreachable=list(getattr(pipe, "icmp_unreachable", [])), capture_end=max(ends) if ends else None)
    store = getattr(pipe, "keys", None)
    if store is not None:
        entries = store.entries()
        ctx.keylog_entries = len(entries)
        ctx.keylog_randoms = frozenset(e.client_random for e in entries if e.client_random)
    ctx.udp_seen = bool(getattr(pipe, "udp", None) or getattr(pipe, "udp_other", None)
                        or getattr(pipe, "udp_other_overflow", 0))
    ctx.rsa_keys = sorted({k for c in analysis.captures for k in (c.keys or {}).get("rsa_keys", [])})
    ctx.flows_by_host = flows_by_host(pipe)
    ctx.capture_dropped = sum(n for ci in analysis.captures for _i, n in capture_dropped(ci))
    ctx.captive_portals = (analysis.other_traffic or {}).get("captive_portal") or []
    dns = getattr(pipe, "dns", None)
    ctx.dns_lookups = list(dns.entries.values()) if dns is not None else []
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
        found.sort(key=finding_order)
        s.findings = found
    analysis.findings = capture_findings(analysis, pipe)


def flows_by_host(pipe) -> dict:
    """`Context.flows_by_host` of a pipeline (its TCP trackers, DTLS flows and other UDP flows)."""
    out: dict = {}
    rows = [(f"tcp.stream {c.index}", c.client, c.server, c.first_ts, c.last_ts, c.quiet)
            for c in (getattr(pipe, "tcp", None) or {}).values()]
    rows += [(f"udp.stream {f.index}", f.client, f.server, f.first_ts, f.last_ts, f.quiet)
             for f in (getattr(pipe, "udp", None) or {}).values()]
    rows += [(f"udp.stream {idx}", e[0], e[1], e[2], e[3], None)
             for idx, e in (getattr(pipe, "udp_other", None) or {}).items()]
    for name, a, b, first, last, quiet in rows:
        for end, other in ((a, b), (b, a)):
            if end:
                out.setdefault(end[0], []).append((name, first, last, quiet, other[0] if other else None))
    return out


def finding_order(f: Finding) -> tuple:
    """The order a session's findings are reported in: the most severe first, then by time."""
    return (_SEVERITY_ORDER.get(f.severity, 3), f.time or 0)


def capture_findings(analysis: Analysis, pipe) -> list[Finding]:
    """Capture-wide findings: damaged files, flows dropped at the flow-table bound, undecodable frames.

    Ids CAPTIVE_PORTAL, DNS_LOOKUP_FAILED and TCP_CONNECT_FAILED (warning: no session, and the client was held at
    a captive portal, or could not resolve or reach a server: analyzer/rules/captive_portal.py, dns_lookup.py,
    tcp_connect.py), CAPTURE_DAMAGED (warning), CAPTURE_TRUNCATED
    (warning: packets cut short, when no session tells it), CAPTURE_DROPPED (warning: packets the capturing program
    reported dropped), CAPTURE_DUPLICATES (info: packets the capture holds
    twice), CAPTURE_ENCAPSULATED (info: packets read inside
    VXLAN, GENEVE, ERSPAN, GRE or IP in IP), ANALYSIS_LIMIT (warning), NO_VPN_SESSION (info) —
    see docs/findings.md.
    """
    out: list[Finding] = []
    for ci in analysis.captures:
        if ci.errors:
            out.append(Finding(id="CAPTURE_DAMAGED", severity="warning", time=ci.last, frames=[],
                               message=f"{ci.path}: " + "; ".join(ci.errors[:3]) + ".",
                               remedy="The file is truncated or damaged; everything before the damage was "
                                      "analysed. Copy the capture again (or repair it: editcap/pcapfix).",
                               evidence={"errors": ci.errors[:20], "frames_read": ci.frames}))
    for ci in analysis.captures:
        dropped = capture_dropped(ci)
        if dropped:
            out.append(_dropped(ci, dropped, len(analysis.captures) > 1))
    snapped = getattr(pipe, "snapped_frames", 0)
    if snapped and not any(f.id == "CAPTURE_TRUNCATED" for s in analysis.sessions for f in s.findings):
        from .capture_quality import TRUNCATED_REMEDY  # noqa: PLC0415

        cap, frame = pipe.snapped_first
        total = sum(c.frames for c in analysis.captures)
        out.append(Finding(id="CAPTURE_TRUNCATED", severity="warning", time=None, frames=[frame],
                           message=f"The capture cut {snapped} of its {total} packets short: at most "
                                   f"{pipe.snapped_max} bytes of each were captured (a snapshot length; the first is "
                                   f"frame {frame}" + (f" of {analysis.captures[cap].path}" if len(analysis.captures)
                                                       > 1 and cap < len(analysis.captures) else "")
                                   + "). TLS and DTLS records in cut packets cannot be read whole: a VPN session "
                                     "among them may not be recognised.",
                           remedy=TRUNCATED_REMEDY,
                           evidence={"truncated_frames": snapped, "snaplen": pipe.snapped_max}))
    copies = sum(getattr(t, "duplicates", 0) for table in (getattr(pipe, "tcp", {}), getattr(pipe, "udp", {}))
                 for t in table.values())
    if copies:
        out.append(Finding(id="CAPTURE_DUPLICATES", severity="info", time=None, frames=[],
                           message=f"{copies} TCP segment(s) and DTLS record(s) are in the capture twice (the same "
                                   "segment again within a millisecond, a DTLS record number repeated): copies the "
                                   "capture made — on two interfaces of the path, `tcpdump -i any` on a router, "
                                   "Windows pktmon on several components. Each was read once (Wireshark shows them "
                                   "as retransmissions).",
                           remedy="Nothing to fix in the VPN. To capture each packet once: one interface (not -i "
                                  "any), pktmon --comp nics; editcap -d removes such copies from a file.",
                           evidence={"duplicates": copies}))
    wrapped = getattr(pipe, "encapsulated", None)
    if wrapped:
        out.append(_encapsulated(wrapped, analysis))
    if getattr(pipe, "evicted", 0):
        out.append(Finding(id="ANALYSIS_LIMIT", severity="warning", time=None, frames=[],
                           message=f"{pipe.evicted} flow(s) were dropped because the capture holds more concurrent "
                                   "flows than acflow's flow-table bound.",
                           remedy="Filter the capture to the VPN gateway first (e.g. tshark -Y 'ip.addr==GW')",
                           evidence={"evicted": pipe.evicted}))
    from .captive_portal import capture_wide as portal_capture_wide  # noqa: PLC0415
    from .dns_lookup import capture_wide as dns_capture_wide  # noqa: PLC0415
    from .tcp_connect import capture_wide  # noqa: PLC0415

    # (the client's first steps first: the network it joined, its DNS lookups, its TCP connects)
    for wide in (portal_capture_wide(analysis), dns_capture_wide(analysis), capture_wide(analysis)):
        if wide is not None:
            out.append(wide)
    if not analysis.sessions and sum(c.frames for c in analysis.captures):
        from ..ipsec import describe  # noqa: PLC0415

        ipsec = describe((analysis.other_traffic or {}).get("ipsec") or [])
        portal_addresses = {i["portal_address"] for i in (analysis.other_traffic or {}).get("captive_portal") or []}
        refused = _refused_certificates(pipe, portal_addresses)
        servers = (analysis.other_traffic or {}).get("tls_servers") or []
        tun = tunnel_devices(analysis.captures)
        inside = ""
        if tun:
            inside = (f" The capture was taken on {describe_interface(tun[0][1])}, the VPN's own tunnel device: it "
                      "holds the traffic inside the tunnel (the applications' packets, from the tunnel address), "
                      "never the VPN's connection to the gateway.")
        out.append(Finding(id="NO_VPN_SESSION", severity="info", time=None, frames=[],
                           message="No AnyConnect-protocol session was found in the capture"
                                   + (f" ({analysis.other_traffic['flows']} other flow(s), see other traffic)"
                                      if (analysis.other_traffic or {}).get("flows") else "") + "."
                                   + inside
                                   + (f" {ipsec[0].upper()}{ipsec[1:]}." if ipsec else "")
                                   + refused,
                           remedy=("Capture again on the interface that reaches the gateway (the Wi-Fi or Ethernet "
                                   "adapter, not the VPN's: in Wireshark's interface list, or tcpdump -i eth0/en0) "
                                   "to see the connection's phases." if tun else
                                   "Check the capture was taken where the client's traffic to the gateway passes "
                                   "(TCP/UDP 443 by default); without keys a short TLS-only session shows no "
                                   "evidence of the protocol: supply the key log, or name the gateway with "
                                   "--gateway ADDR[:PORT] or its host name" + (
                                       f" (the capture's TLS servers: {tls_servers_line(servers, 4)})"
                                       if servers else "") + "."),
                           evidence={"frames": sum(c.frames for c in analysis.captures)}
                           | ({"tunnel_device": describe_interface(tun[0][1])} if tun else {})))
    return out


def capture_dropped(ci) -> list[tuple[dict, int]]:
    """(interface, packets dropped) of each interface of capture ``ci`` whose capturing program reported drops (its
    Interface Statistics Block: isb_ifdrop + isb_osdrop)."""
    out = []
    for itf in ci.interfaces:
        n = (itf.get("dropped") or 0) + (itf.get("os_dropped") or 0)
        if n > 0:
            out.append((itf, n))
    return out


def _dropped(ci, dropped: list, several: bool) -> Finding:
    """CAPTURE_DROPPED: the capturing program's own count of packets it could not keep."""
    total = sum(n for _i, n in dropped)
    parts = [f"{n} on {describe_interface(itf)}" + (f" (it kept {itf['received']})"
                                                    if itf.get("received") is not None else "")
             for itf, n in dropped[:5]]
    return Finding(
        id="CAPTURE_DROPPED", severity="warning", time=ci.last, frames=[],
        message=(f"{ci.path}: " if several else "") + f"The capturing program reported {total} packet(s) dropped: "
                + "; ".join(parts) + " — its buffer was full (the capture's Interface Statistics). The network "
                "carried them, the capture does not hold them: records or segments missing in the capture "
                "(CAPTURE_GAP, DTLS_RECORDS_LOST) may be these, not losses on the path.",
        remedy="Capture again so that nothing is dropped: a bigger capture buffer (dumpcap or Wireshark -B 64, "
               "tcpdump -B 65536), a capture filter for the gateway's address (host GW) so that less is kept, a "
               "fast local disk to write to, no name resolution while capturing (dumpcap: nothing to do; tcpdump "
               "-n).",
        evidence={"dropped": total, "interfaces": [{"interface": describe_interface(itf), "dropped": n,
                                                    "received": itf.get("received")} for itf, n in dropped[:20]]})


_ENCAP_NAMES = {"vxlan": ("VXLAN", "VNI"), "geneve": ("GENEVE", "VNI"), "erspan": ("ERSPAN", "session"),
                "gre": ("GRE", "key"), "ip-in-ip": ("IP in IP", None)}


def _encapsulated(wrapped: dict, analysis) -> Finding:
    """CAPTURE_ENCAPSULATED: the packets the capture holds inside an encapsulation, per outer pair and kind."""
    rows = sorted(wrapped.items(), key=lambda kv: kv[1][1])  # by first frame: the same in every way of running
    total = sum(n for _k, (n, _f) in rows)
    parts = []
    for (kind, src, dst, ident), (n, _first) in rows[:5]:
        name, id_name = _ENCAP_NAMES.get(kind, (kind, None))
        parts.append(f"{n} in {name}" + (f" ({id_name} {ident})" if id_name and ident is not None else "")
                     + f" between {src} and {dst}")
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    cap, frame = rows[0][1][1]
    return Finding(
        id="CAPTURE_ENCAPSULATED", severity="info", time=None, frames=[frame],
        message=f"{total} packet(s) of the capture are inside another packet: " + "; ".join(parts) + more
                + f" (the first: frame {frame}"
                + (f" of {analysis.captures[cap].path}" if len(analysis.captures) > 1 and cap < len(analysis.captures)
                   else "")
                + "). A traffic mirror (ERSPAN, a cloud's VXLAN or GENEVE mirroring) or an overlay network "
                  "delivered them so; acflow read the packets inside, and the sessions name their own addresses, "
                  "not the outer ones.",
        remedy="Nothing to fix in the VPN. In Wireshark the packets inside are shown under the outer headers "
               "(VXLAN on a port other than 4789: Decode As).",
        evidence={"encapsulated_frames": total,
                  "encapsulations": [{"kind": kind, "outer_addresses": [src, dst], "id": ident,
                                      "frames": n} for (kind, src, dst, ident), (n, _f) in rows[:20]]})


def _refused_certificates(pipe, portals: set = frozenset()) -> str:
    """A sentence on TLS connections whose client closed right after the server's certificate (no session was
    found: without an HTTP exchange nothing says they were VPN connections), else "". A server at a captive
    portal's address (``portals``: CAPTIVE_PORTAL) is said to be the portal, not offered as the gateway."""
    from ..evidence import fmt_endpoint  # noqa: PLC0415
    from ..phases.grouping import client_closed_in_handshake, server_stalled_in_handshake  # noqa: PLC0415

    seen = []
    stalled = []
    for c in getattr(pipe, "tcp", {}).values():
        gone = client_closed_in_handshake(c) if getattr(c, "is_tls", False) else None
        if gone is not None and (gone["after_certificate"] or gone["encrypted_flight"]):
            seen.append((gone["frame"], fmt_endpoint(*c.server)))
        st = server_stalled_in_handshake(c) if getattr(c, "is_tls", False) and c.server[1] == 443 else None
        if st is not None:
            stalled.append((st["since_frame"], fmt_endpoint(*c.server), st))
    text = ""
    if stalled:  # (analyzer/rules/tls_stalled.py: TLS_HANDSHAKE_STALLED once --gateway makes it a session)
        stalled.sort(key=lambda x: x[0])
        frame, server, st = stalled[0]
        more = f" (and {len(stalled) - 1} more)" if len(stalled) > 1 else ""
        how = (f"the server sent the rest of its handshake (the certificate) {st['retransmitted'] + 1} times after "
               f"its ServerHello (frame {frame}), never acknowledged, for {st['waited']:.1f} s{more} — a path MTU "
               "black hole (its full-size packets lost on the way to the client)" if st.get("retransmitted") else
               f"nothing came after {'the ServerHello' if st['server_hello'] else 'the ClientHello'} (frame "
               f"{frame}) for {st['waited']:.1f} s{more} — a path MTU black hole (the certificate's full-size "
               "packets lost) or a hung server")
        text = (f" The TLS handshake of the connection to {server} never reached the client: {how}. If {server} is "
                f"the VPN gateway, analyse again with --gateway {server} to read it as the session it began.")
    if not seen:
        return text
    seen.sort()
    frame, server = seen[0]
    more = f" (and {len(seen) - 1} more)" if len(seen) > 1 else ""
    if server.rsplit(":", 1)[0].strip("[]") in portals:
        return (f" The client closed its TLS connection to {server} right after the server's handshake messages (its "
                f"certificate), without an alert (frame {frame}){more}: that address is the captive portal's "
                "(CAPTIVE_PORTAL): the client refused the portal's certificate, not a gateway's." + text)
    return (f" The client closed its TLS connection to {server} right after the server's handshake messages (its "
            f"certificate), without an alert (frame {frame}){more}: a client that refuses the certificate does so. If "
            f"{server} is the VPN gateway, analyse again with --gateway {server} to read that connection as the "
            "session it began." + text)
