"""The reconstruction pipeline: frames → packets → flows → TLS/DTLS → HTTP/CSTP trackers.

`Pipeline.feed(frame)` takes one `dissectors.pcapfile.Frame` at a time (from a file or live capture) and keeps
only bounded per-connection summaries, so memory does not grow with the capture. `finish()` flushes the flow
table and returns the trackers, which `analyzer.sessions.build_sessions` turns into VPN sessions.

DTLS keys are derived here, from the decrypted CONNECT exchange: legacy resumption (X-DTLS-Session-ID +
X-DTLS-Master-Secret) or PSK-NEGOTIATE (RFC 5705 exporter of the CSTP TLS session, label
"EXPORTER-openconnect-psk", 32 bytes).
"""
from __future__ import annotations

from dissectors import flows as flows_mod
from dissectors import packet as packet_mod
from dissectors.dns import DNS_PORTS, read_dns
from dissectors.dtls import DTLSKeys
from dissectors.ike import IKE_PORTS, read_ike
from dissectors.pcapfile import Frame
from dissectors.quic import is_quic_long_header

from . import attempts
from .attempts import FailedConnect
from .dns_lookups import Lookups
from .dtlsflow import DTLSFlow, looks_like_dtls
from .dtlslane import open_dtls_lane
from .ipsec import new_ipsec, note_ipsec
from .tcplane import open_tcp_lane
from .tcptracker import TCPTracker
from .tunnel_device import RAW_IP_LINKTYPES, TunnelDevice


class DTLSKeyInfo:
    """DTLS keys derived from one CONNECT exchange, indexed by the ClientHello session id they unlock."""

    __slots__ = ("session_id", "mode", "keys", "connection", "mtu", "psk", "master_secret")

    def __init__(self, session_id: bytes, mode: str, keys, connection, mtu, psk=None, master_secret=None):
        self.session_id = session_id
        self.mode = mode
        self.keys = keys
        self.connection = connection
        self.mtu = mtu
        self.psk = psk
        self.master_secret = master_secret


class Pipeline:
    def __init__(self, keys, inner_sink=None, *, max_flows: int = 1 << 16, fast_lanes: bool = True,
                 key_wait=None) -> None:
        from dissectors.tls.session import SessionCache  # noqa: PLC0415

        self.keys = keys
        self.session_cache = SessionCache()
        self.flows = flows_mod.FlowTable(max_flows=max_flows)
        self.defrag = packet_mod.IPv4Defragmenter()
        self.tcp: dict[int, TCPTracker] = {}
        self.udp: dict[int, DTLSFlow] = {}
        self.udp_ignored: set[int] = set()
        self.udp_other: dict[int, list] = {}  # UDP flows that are not DTLS, for the "other traffic" summary
        self.udp_other_overflow = 0  # datagrams of such flows beyond MAX_OTHER_FLOWS (not itemised)
        self.icmp_unreachable: list[dict] = []
        #: TCP connections that never carried data (analyzer/attempts.py): the client's SYNs unanswered or refused
        self.failed_connects: list[FailedConnect] = []
        self.failed_connects_total = 0  # all of them (the list keeps the first MAX_FAILED_CONNECTS)
        self.dns = Lookups()  # DNS lookups in the other traffic (analyzer/dns_lookups.py)
        self.dtls_keys: dict[bytes, DTLSKeyInfo] = {}
        self._dtls_ports: set[int] = set()
        self.inner_packet = inner_sink  # TrackerHost: where inner packets go (None: nowhere)
        self.frames = 0
        self.undecodable = 0
        self.evicted = 0
        self.last_ts: float | None = None
        self.captures: list[str] = []  # names of the captures fed (start_capture), in order
        # fast lanes (see `feed`): raw IPv4 src+dst+ports (12 bytes as on the wire) -> lane: (method, where), called as
        # method(where, data, view, ts, frame) (analyzer/tcplane.py)
        self.fast_udp: dict[bytes, tuple] = {}
        self.fast_tcp: dict[bytes, tuple] = {}
        self.fast_frames = 0
        # frames the capture cut short (snaplen): how many, the first (capture ordinal, frame); the one being
        # dispatched (frame, bytes captured)
        self.snapped_frames = 0
        self.snapped_max = 0  # the most bytes captured of one such frame
        self.snapped_first: tuple | None = None
        self._snapped: tuple | None = None
        # frames whose packet was inside an encapsulation (VXLAN, GENEVE, ERSPAN, GRE, IP in IP: a traffic mirror's
        # or an overlay's; `Packet.encap`): (kind, outer addresses in order, id) -> [frames, first (capture ordinal,
        # frame)]
        self.encapsulated: dict[tuple, list] = {}
        # the VPN's adapters among the capture interfaces (analyzer/tunnel_device.py): (capture ordinal, interface
        # id) -> TunnelDevice; those of the capture being fed by interface id
        self.tunnel_devices: dict[tuple, TunnelDevice] = {}
        self._tun_now: dict[int, TunnelDevice] = {}
        self._any_now: dict[int | None, TunnelDevice] = {}  # an "any" capture's tun devices, by interface index
        self._raw_pending = False
        self.fast_lanes = fast_lanes  # False: every frame takes the general path (tests compare both)
        # live: keys that arrive late (dissectors.tls.connection.KeyWait): TLS connections park their records until
        # the key log has their keys (`keys_added`); new DTLS flows hold their datagrams meanwhile (their keys come
        # from a CONNECT exchange that may be among the parked records)
        self.key_wait = key_wait
        self.dtls_held: dict[int, list] = {}  # udp flow index -> [(flow, Datagram)] held while TLS waits
        self._dtls_hold_off = False  # past the KeyWait limit, or finishing: hold no more

    # -- TrackerHost (analyzer/host.py): what the trackers report -------------------------------------------
    def on_connect(self, conn: TCPTracker, ex) -> None:
        """A CONNECT was answered 2xx: derive the DTLS keys it carries."""
        req, resp = ex.request.headers, ex.response.headers
        if not resp.get("X-DTLS-Port") and not resp.get("X-DTLS-Session-ID") and not resp.get("X-DTLS-App-ID"):
            return
        suite = (resp.get("X-DTLS-CipherSuite") or resp.get("X-DTLS12-CipherSuite") or "").strip()
        mtu = _int(resp.get("X-DTLS-MTU")) or _int(resp.get("X-CSTP-MTU"))
        if suite == "PSK-NEGOTIATE":
            app_id = _unhex(resp.get("X-DTLS-App-ID"))
            psk = conn.export_psk()
            if app_id is None:
                return
            info = DTLSKeyInfo(app_id, "psk-negotiate", DTLSKeys.psk(psk) if psk else None, conn, mtu, psk=psk)
        else:
            sid = _unhex(resp.get("X-DTLS-Session-ID"))
            ms = _unhex(req.get("X-DTLS-Master-Secret"))
            if sid is None:
                return
            info = DTLSKeyInfo(sid, "legacy", DTLSKeys.legacy(sid, ms) if ms and len(ms) == 48 else None, conn, mtu,
                               master_secret=ms)
        self.dtls_keys[info.session_id] = info
        port = _int(resp.get("X-DTLS-Port"))
        if port:
            self._dtls_ports.add(port)
        for flow in self.udp.values():
            if flow.session_id == info.session_id and flow.keys_source is None and info.keys is not None:
                flow.set_keys(info.keys, info.mode, info.mtu)

    def on_dtls_hello(self, flow: DTLSFlow) -> None:
        info = self.dtls_keys.get(flow.session_id)
        if info is not None and info.keys is not None:
            flow.set_keys(info.keys, info.mode, info.mtu)

    # -- input -------------------------------------------------------------------------------------------
    def start_capture(self, name: str) -> None:
        """The frames that follow come from the capture file ``name`` (frame numbers start again at 1). Flows are
        numbered per file, as tshark numbers tcp.stream / udp.stream; flows already open run on (a ring buffer's
        files hold one capture cut in pieces)."""
        if self.captures:
            self.flows.new_capture()
            # a lane would take a running flow's first frames of the new file past the flow table, which numbers
            # the flow in this file at its first packet: the lanes open again after the general path's next frame
            self.fast_udp.clear()
            self.fast_tcp.clear()
            for conn in self.tcp.values():
                conn.lane_flow = None
        self.captures.append(name)
        self._tun_now = {}  # (interface ids are the file's own)
        self._any_now = {}
        self._raw_pending = True  # until its first frame or interface: a file of raw IP packets may be an adapter's

    def note_interface(self, interface: int, label: str, tunnel: bool) -> None:
        """The capture being fed describes interface ``interface`` (a pcapng file); ``tunnel``: it is the VPN's
        adapter by its name (analyzer/capture_point.py)."""
        self._raw_pending = False
        if tunnel:
            self._tunnel_device(interface, label, named=True)

    def _device(self, interface: int, label: str, named: bool) -> TunnelDevice:
        """The TunnelDevice of ``interface`` in the capture being fed, made on first use."""
        n = max(len(self.captures) - 1, 0)
        dev = self.tunnel_devices.get((n, interface))
        if dev is None:
            dev = self.tunnel_devices[(n, interface)] = TunnelDevice(n, interface, label, named)
        return dev

    def _tunnel_device(self, interface: int, label: str, named: bool) -> None:
        self._tun_now[interface] = self._device(interface, label, named)

    def _any_tun(self, ifindex: int | None) -> TunnelDevice:
        """The device of a Linux "any" capture's packets of type ARPHRD_NONE (a tun device: no link-layer header;
        SLL2 names it by interface index, SLL not at all): a VPN's adapter among the capture's interfaces."""
        dev = self._any_now.get(ifindex)
        if dev is None:
            which = f"the tun device with interface index {ifindex}" if ifindex is not None else "the tun device"
            # (key negative: never a pcapng interface id)
            dev = self._any_now[ifindex] = self._device(-1 - (ifindex or 0), f"{which} in a Linux 'any' capture",
                                                         named=True)
        return dev

    def _capture_of(self, flow) -> str | None:
        """The name of the capture ``flow`` was first seen in (None for frames fed without start_capture)."""
        n = flow.capture
        return self.captures[n] if n < len(self.captures) else None

    def feed(self, fr) -> None:
        """One frame (`feed_events` of a batch is the same, with less per-frame overhead)."""
        self.feed_events((fr,))

    def feed_events(self, events, other=None) -> None:
        """The frames among ``events`` (PcapParser events in capture order), one after the other; any other event
        (embedded secrets, capture errors) goes to ``other(event)`` where it stands, so that keys embedded before a
        frame are there for it. The batch loop keeps the per-frame work of the fast lanes' dispatch in locals."""
        fast_tcp, fast_udp = self.fast_tcp, self.fast_udp  # cleared, never replaced (new_capture)
        plain_ipv4 = packet_mod.plain_ipv4
        general = self.feed_general  # an instance attribute when a driver wraps it (analyzer/parallel.py)
        # the frame counters in locals while lanes run (speed), stored before any other part of the pipeline runs
        frames, fast, last_ts = self.frames, self.fast_frames, self.last_ts
        try:
            for fr in events:
                if type(fr) is not Frame:
                    if other is not None:
                        self.frames, self.fast_frames, self.last_ts = frames, fast, last_ts
                        other(fr)
                    continue
                frames += 1
                ts = last_ts = fr.ts
                # (a frame the capture cut short goes the general way, which counts it: CAPTURE_TRUNCATED)
                if (fast_udp or fast_tcp) and len(fr.data) == fr.orig_len:
                    # Fast lanes: a frame of an established flow whose next step is the common one (the next DTLS
                    # record of the current epoch, the next in-order TCP segment of a CSTP tunnel) is handed
                    # straight to that flow's lane, from the raw bytes, skipping Packet/flow/event objects. A lane
                    # returns False (having changed nothing) whenever the frame is anything else, and the general
                    # path runs.
                    data = fr.data
                    view = plain_ipv4(fr.linktype, data)
                    if view is not None:
                        lane = (fast_tcp if view[0] == 6 else fast_udp).get(view[1])
                        # (method, where): see analyzer/tcplane.py
                        if lane is not None and lane[0](lane[1], data, view, ts, fr.number):
                            fast += 1
                            continue
                self.frames, self.fast_frames, self.last_ts = frames, fast, last_ts
                general(fr, ts)
        finally:
            self.frames, self.fast_frames, self.last_ts = frames, fast, last_ts

    def feed_general(self, fr, ts: float) -> None:
        """The general path of one frame: packet → flow table → trackers. The only path that creates trackers and
        numbers flows (a lane only continues an established flow): `analyzer.parallel.run_shard` wraps it, as an
        instance attribute, to note the frame that does."""
        pkt = packet_mod.decode(fr.linktype, fr.data)
        if pkt is None:
            self.undecodable += 1
            return
        if len(fr.data) < fr.orig_len:  # cut by the capture's snaplen: the flow's tracker is told (`_dispatch`)
            self._snapped = (fr.number, len(fr.data), pkt.payload_len)
            self.snapped_frames += 1
            if len(fr.data) > self.snapped_max:
                self.snapped_max = len(fr.data)
            if self.snapped_first is None:
                self.snapped_first = (max(len(self.captures) - 1, 0), fr.number)
        elif self._snapped is not None:
            self._snapped = None
        if pkt.is_fragment:
            pkt = self.defrag.feed(pkt, ts, fr.number)
            if pkt is None:
                return
        if pkt.encap is not None:
            self._encapsulated(pkt.encap, fr.number)
        if self._raw_pending:
            self._raw_pending = False
            if fr.linktype in RAW_IP_LINKTYPES:  # a pcap file of raw IP packets: the capture of a tun device, maybe
                name = self.captures[-1] if self.captures else "<frames>"
                self._tunnel_device(fr.interface, f"{name.rsplit('/', 1)[-1]} (raw IP packets, no interface name)",
                                    named=False)
        if self._tun_now:
            dev = self._tun_now.get(fr.interface)
            if dev is not None:  # a packet inside the tunnel, captured on the VPN's adapter
                dev.note(pkt, ts, fr.number)
        lt = fr.linktype
        if lt == 276 or lt == 113:  # a Linux "any" capture: each packet says its device's type (ARPHRD_*)
            d = fr.data
            if (d[8] == 0xFF and d[9] == 0xFE) if lt == 276 else (d[2] == 0xFF and d[3] == 0xFE):
                self._any_tun(int.from_bytes(d[4:8], "big") if lt == 276 else None).note(pkt, ts, fr.number)
        proto = pkt.proto
        if proto in (1, 58) and pkt.icmp_inner is not None:
            self._on_icmp(pkt, ts, fr.number)
        for flow, ev in self.flows.feed(pkt, ts, fr.number):
            self._dispatch(flow, ev)

    def _encapsulated(self, encap: tuple, frame: int) -> None:
        """A packet that was inside another (`Packet.encap`): counted per encapsulation and outer address pair
        (CAPTURE_ENCAPSULATED). (The flow table numbers its UDP carrier, VXLAN or GENEVE, as Wireshark does.)"""
        kind, src, dst, ident = encap[:4]
        # (kind, the pair in address order, id): both directions of a mirror session count together
        key = (kind, *sorted((src, dst)), ident)
        seen = self.encapsulated.get(key)
        if seen is None:
            seen = self.encapsulated[key] = [0, (max(len(self.captures) - 1, 0), frame)]
        seen[0] += 1

    def _on_icmp(self, pkt, ts: float, frame: int) -> None:
        inner = pkt.icmp_inner
        unreachable = (pkt.proto == 1 and pkt.icmp_type == 3) or (pkt.proto == 58 and pkt.icmp_type == 1)
        if unreachable and len(self.icmp_unreachable) < 1000:
            self.icmp_unreachable.append({
                "ts": ts, "frame": frame, "from": pkt.src, "code": pkt.icmp_code,
                "port_unreachable": (pkt.proto == 1 and pkt.icmp_code == 3) or (pkt.proto == 58 and pkt.icmp_code == 4),
                "inner": {k: getattr(inner, k, None) for k in ("src", "dst", "proto", "sport", "dport")}
                if not isinstance(inner, dict) else inner})

    def _on_dns(self, ev) -> None:
        msg = read_dns(ev.data)
        if msg is not None:
            self.dns.note(msg, ev.src, ev.sport, ev.dst, ev.dport, ev.ts, ev.frame)

    def _dispatch(self, flow, ev) -> None:
        t = type(ev)
        if t is flows_mod.Datagram:
            idx = ev.flow_index
            if idx in self.udp_ignored:
                if ev.sport in DNS_PORTS or ev.dport in DNS_PORTS:
                    self._on_dns(ev)
                other = self.udp_other.get(idx)
                if other is not None:
                    other[4] += 1
                    other[5] += len(ev.data)
                    other[3] = ev.ts
                    if len(other) > 6 and type(other[6]) is dict:  # IPsec (IKE / ESP in UDP): its headers
                        note_ipsec(other[6], read_ike(ev.data, ev.sport, ev.dport), ev.frame)
                return
            kw = self.key_wait
            if kw is not None and (self.dtls_held or kw.waiting) and not self._dtls_hold_off \
                    and self._hold_dtls(idx, flow, ev):
                return
            tracker = self.udp.get(idx)
            if tracker is None:
                ike = read_ike(ev.data, ev.sport, ev.dport) if (ev.sport in IKE_PORTS or ev.dport in IKE_PORTS) \
                    else None
                if ike is not None or not looks_like_dtls(ev.data):
                    self.udp_ignored.add(idx)
                    if ev.sport in DNS_PORTS or ev.dport in DNS_PORTS:
                        self._on_dns(ev)
                    if len(self.udp_other) < MAX_OTHER_FLOWS:
                        client, server = (ev.src, ev.sport), (ev.dst, ev.dport)
                        if flow is not None and hasattr(flow, "a"):
                            client, server = _udp_roles(tuple(flow.a), tuple(flow.b))
                        if ike is not None and getattr(ike, "initiator", None) is not None:
                            # IKE: the initiator is the client (a VPN client starts it; the gateway answers)
                            sender = (ev.src, ev.sport)
                            peer = (ev.dst, ev.dport)
                            client, server = (sender, peer) if ike.initiator else (peer, sender)
                        # [client, server, first_ts, last_ts, datagrams, bytes(, IPsec: analyzer/ipsec.py)]
                        entry = [client, server, ev.ts, ev.ts, 1, len(ev.data)]
                        if ike is not None:
                            entry.append(new_ipsec())
                            note_ipsec(entry[6], ike, ev.frame)
                        elif is_quic_long_header(ev.data):
                            entry.append("QUIC")  # the summary's protocol (dissectors/quic.py)
                        self.udp_other[idx] = entry
                    else:
                        self.udp_other_overflow += 1
                    return
                sender_is_server = self._dtls_sender_is_server(ev)
                a, b = (ev.src, ev.sport), (ev.dst, ev.dport)
                client, server = (b, a) if sender_is_server else (a, b)
                tracker = DTLSFlow(flow.stream, client, server, ev.ts, ev.frame, self,
                                   capture=self._capture_of(flow), numbers=flow.numbers, quiet=_quiet_of(flow),
                                   sides=flow.sides())
                first = "s2c" if sender_is_server else "c2s"
                tracker.direction_map = {ev.direction: first,
                                         ("s2c" if ev.direction == "c2s" else "c2s"):
                                          ("c2s" if first == "s2c" else "s2c")}
                tracker.first_record = {"content_type": ev.data[0], "epoch": (ev.data[3] << 8) | ev.data[4],
                                        "from": "server" if sender_is_server else "client"}
                if ev.data[0] == 23 and tracker.first_record["epoch"] >= 1:
                    self._continue_session(tracker)
                self.udp[idx] = tracker
            if self._snapped is not None and self._snapped[0] == ev.frame:
                tracker.note_snapped(self._snapped[0], self._snapped[1])
                # cut by the capture: what its record headers show (the records themselves cannot be read)
                tracker.on_cut_datagram(tracker.direction_map[ev.direction], ev.data, self._snapped[2], ev.ts,
                                        ev.frame)
                return
            tracker.on_datagram(tracker.direction_map[ev.direction], ev.data, ev.ts, ev.frame)
            if flow is not None and self.fast_lanes:
                if tracker.keys_source is not None:
                    self._offer_dtls_lane(tracker, flow, ev, tracker.on_lane_datagram)
                elif kw is None and tracker.dtls.backlog_dropped:
                    # files (nothing holds datagrams for keys that may come), once the flow's records no longer
                    # join the backlog: a lane only where it takes records (an open lane makes every frame look
                    # for one)
                    self._offer_dtls_lane(tracker, flow, ev, tracker.on_keyless_lane_datagram)
            return
        if t is flows_mod.FlowEvicted:
            self.evicted += 1
            if ev.kind == "tcp" and flow is not None and flow.index not in self.tcp:
                self._note_failed_connect(flow)
            self._drop_lanes(ev.kind, ev.index)
            return
        if flow is None or not hasattr(flow, "index"):
            return
        conn = self.tcp.get(flow.index)
        if conn is None:
            if t is flows_mod.Retransmission or t is flows_mod.StreamClosed or t is flows_mod.Duplicate:
                return
            conn = TCPTracker(flow.stream, tuple(flow.client), tuple(flow.server), ev.ts, ev.frame, self.keys,
                                 self.session_cache, self, capture=self._capture_of(flow), numbers=flow.numbers,
                                 quiet=_quiet_of(flow), sides=flow.sides())
            conn.syn_seen = bool(flow.syn_seen)
            conn.handshake_ttl = flow.handshake_ttl
            conn.tls.key_wait = self.key_wait
            self.tcp[flow.index] = conn
        if conn.is_tls is False:
            # not TLS: counted for the "other traffic" summary only, and its first HTTP exchanges read when its client
            # spoke HTTP (analyzer/plainhttp.py: a captive portal's answers)
            if t is flows_mod.StreamData:
                conn.other_bytes += len(ev.data)
                conn.last_ts = ev.ts
                if conn.plain_http is not None:
                    conn.plain_http.feed(ev.direction, ev.data, ev.ts, ev.frame)
            elif t is flows_mod.StreamClosed and conn.plain_http is not None:
                conn.plain_http.close(ev.direction, ev.ts, ev.frame)
            return
        if self._snapped is not None and self._snapped[0] == ev.frame:
            conn.note_snapped(self._snapped[0], self._snapped[1])
        conn.on_flow_event(ev)
        if t is flows_mod.StreamData and self.fast_lanes and conn.lane_flow is not flow:
            if conn.http.tunnel:
                self._offer_tcp_lane(flow, conn)
            elif self.key_wait is None and conn.undecryptable:
                self._offer_tcp_lane(flow, conn, keyless=True)

    def _offer_tcp_lane(self, flow, conn: TCPTracker, keyless: bool = False) -> None:
        """Open the fast lanes of both directions of a TCP connection once it carries a CSTP tunnel, or (``keyless``)
        once it is a TLS connection in step whose protected records do not decrypt (files: no key can come)."""
        if conn.in_proxy_header:  # (a direction still in an HTTP proxy's clear-text header: the general path)
            return
        c, s = flow.client, flow.server
        for direction, (a, b) in (("c2s", (c, s)), ("s2c", (s, c))):
            key = packet_mod.ipv4_addresses(a[0], a[1], b[0], b[1])
            if key is None:
                return
            lane = open_tcp_lane(flow, conn, self.flows, direction, keyless)
            if lane is None:
                return
            self.fast_tcp[key] = lane
        conn.lane_flow = flow

    def _offer_dtls_lane(self, tracker: DTLSFlow, flow, ev, method) -> None:
        """Open (or refresh) the fast lane ``method`` of this datagram's direction: once the flow decrypts
        (`DTLSFlow.on_lane_datagram`), or while it has no keys (`DTLSFlow.on_keyless_lane_datagram`)."""
        key = packet_mod.ipv4_addresses(ev.src, ev.sport, ev.dst, ev.dport)
        if key is None:
            return
        lane = self.fast_udp.get(key)
        if lane is not None and lane[0] == method:
            return
        lane = open_dtls_lane(tracker, flow, self.flows, tracker.direction_map[ev.direction], method,
                              flow.side_a if ev.direction == "c2s" else flow.side_b)
        if lane is None:
            self.fast_udp.pop(key, None)
        else:
            self.fast_udp[key] = lane

    def _drop_lanes(self, kind: str, index: int) -> None:
        lanes, flow_at = (self.fast_udp, 1) if kind == "udp" else (self.fast_tcp, 0)
        for k in [k for k, (_method, where) in lanes.items() if where[flow_at].index == index]:
            del lanes[k]

    def _continue_session(self, tracker: DTLSFlow) -> None:
        """Protected DTLS data on a new 5-tuple: a NAT rebinding (or roaming) continues an established session.

        Follow it with the same DTLS state (keys, epochs) so its records still decrypt — tshark, which binds
        DTLS to the 5-tuple, stops there.
        """
        prev = [f for f in self.udp.values()
                if f.client[0] == tracker.client[0] and f.server == tracker.server and f.keys_source is not None]
        if not prev:
            # without keys: the records are still read by size (analyzer/keyless.py), with the suite the earlier
            # flow's handshake named
            named = [f for f in self.udp.values() if f.client[0] == tracker.client[0] and f.server == tracker.server
                     and f.cipher_suite is not None]
            if named:
                p = max(named, key=lambda f: f.last_ts)
                tracker.estimate_suite = (p.cipher_suite, p.version)
            return
        p = max(prev, key=lambda f: f.last_ts)
        tracker.dtls = p.dtls
        tracker.keys_source = p.keys_source
        tracker.session_id = p.session_id
        tracker.mtu = p.mtu
        tracker.continues = p.key

    def _dtls_sender_is_server(self, ev) -> bool:
        """Who sent the first datagram of a new DTLS flow: its handshake type, else the ports, tell."""
        data = ev.data
        if data[0] == 22 and len(data) > 13:
            return data[13] in (2, 3, 4, 11, 12, 13, 14)  # ServerHello, HelloVerifyRequest, … from the server
        dtls_ports = {443} | {info.connection.server[1] for info in self.dtls_keys.values()}
        dtls_ports |= {p for p in self._dtls_ports}
        if ev.sport in dtls_ports and ev.dport not in dtls_ports:
            return True
        return False

    # -- keys that arrive late (live) -------------------------------------------------------------------------
    def keys_added(self) -> None:
        """The key store gained entries: connections waiting for keys try again (their parked records decrypt and
        go up the trackers now, with the times and frames they arrived at); held DTLS datagrams follow once no
        connection of their gateway waits any more."""
        kw = self.key_wait
        if kw is None:
            return
        for conn in [c for c in self.tcp.values() if c.tls.keys_missing]:
            for tev in conn.tls.retry_keys(conn.last_ts, conn.last_frame):
                conn.on_tls_event(tev)
        if self.dtls_held:
            self.release_dtls(self._waiting_hosts())

    def _waiting_hosts(self) -> set:
        """The addresses of the TLS connections waiting for keys (a DTLS flow of the same gateway may need them)."""
        kw = self.key_wait
        if not kw.waiting:
            return set()
        return {a for c in self.tcp.values() if c.tls.waiting_for_keys for a in (c.server[0], c.client[0])}

    def _hold_dtls(self, idx: int, flow, ev) -> bool:
        """Hold a datagram of a DTLS flow without keys while a TLS connection between the same hosts waits for its
        keys (the flow's keys come from its CONNECT exchange); False: go on."""
        kw = self.key_wait
        held = self.dtls_held.get(idx)
        hosts = self._waiting_hosts()
        if ev.src not in hosts or ev.dst not in hosts:
            if held is not None:
                self.release_dtls(hosts)
            return False
        if held is None:
            tracker = self.udp.get(idx)
            if idx in self.udp_ignored or (tracker is not None and tracker.keys_source is not None):
                return False
            if tracker is None and not looks_like_dtls(ev.data):
                return False
            held = self.dtls_held[idx] = []
        if kw.used + len(ev.data) > kw.limit:
            kw.overflows += 1
            self._dtls_hold_off = True
            self.release_dtls()
            return False
        held.append((flow, ev))
        kw.used += len(ev.data)
        return True

    def release_dtls(self, hosts: set | None = None) -> None:
        """Feed the held DTLS datagrams (in arrival order per flow, flows in the order they were first held): all of
        them, or those of flows whose hosts are not all in ``hosts`` (still waiting)."""
        kw = self.key_wait
        for idx in list(self.dtls_held):
            items = self.dtls_held.get(idx)
            if items is None:  # released meanwhile (a released datagram released others)
                continue
            ev0 = items[0][1] if items else None
            if hosts and ev0 is not None and ev0.src in hosts and ev0.dst in hosts:
                continue
            del self.dtls_held[idx]
            for flow, ev in items:
                kw.used -= len(ev.data)
                self._dispatch(flow, ev)

    @property
    def held_datagrams(self) -> int:
        return sum(len(v) for v in self.dtls_held.values())

    def _note_failed_connect(self, st) -> None:
        f = attempts.from_stream(st, self._capture_of(st))
        if f is not None:
            self.failed_connects_total += 1
            self.failed_connects.append(f)
            if len(self.failed_connects) > 4 * attempts.MAX_FAILED_CONNECTS:
                attempts.bounded(self.failed_connects)

    def failed_connects_so_far(self, now: float | None, settle: float = 3.0) -> list[FailedConnect]:
        """`failed_connects` as they stand while frames still come (a live view's snapshot, `Analyzer.snapshot`):
        those noted so far and the open connections without data whose last packet is ``settle`` seconds before
        ``now`` (a SYN just sent may still be answered). Changes nothing."""
        out = list(self.failed_connects)
        tcp = self.tcp
        for st in self.flows.streams():
            if st.index not in tcp and st.handshake and (now is None or now - st.last_ts >= settle):
                f = attempts.from_stream(st, self._capture_of(st))
                if f is not None:
                    out.append(f)
        return attempts.bounded(out)

    def finish(self) -> None:
        for flow, ev in self.flows.flush():
            self._dispatch(flow, ev)
        tcp = self.tcp
        for st in self.flows.streams():  # connections that never carried data: no tracker was made for them
            if st.index not in tcp:
                if st.handshake:
                    self._note_failed_connect(st)
            elif st.rst_seen and st.after_reset:  # (data from a side after its reset: analyzer/rules/tcp_reset.py)
                tcp[st.index].after_reset = st.after_reset
        attempts.bounded(self.failed_connects)
        if self.key_wait is not None:  # no more keys: parked records are reported without them, held DTLS goes on
            self._dtls_hold_off = True
            for conn in self.tcp.values():
                if conn.tls.waiting_for_keys:
                    for tev in conn.tls.stop_waiting():
                        conn.on_tls_event(tev)
            self.release_dtls()
        for conn in self.tcp.values():
            conn.finish(self.last_ts)
            conn.keep_sides()
        for flow in self.udp.values():
            flow.finish(self.last_ts)
            flow.keep_sides()


def _quiet_of(flow) -> list:
    """The flow's list of long pauses (dissectors.flows.note_quiet), made now if it has none yet: its tracker
    holds the same list, which the flow table goes on filling."""
    if flow.quiet is None:
        flow.quiet = []
    return flow.quiet


MAX_OTHER_FLOWS = 1 << 16  # UDP flows itemised in the "other traffic" summary (memory stays bounded)


def _udp_roles(a: tuple, b: tuple) -> tuple[tuple, tuple]:
    """(client, server) of a UDP flow: the end on a well-known/lower port is the server."""
    pa, pb = a[1] or 0, b[1] or 0
    if (pa < 1024) != (pb < 1024):
        return (b, a) if pa < 1024 else (a, b)
    if pa != pb:
        return (b, a) if pa < pb else (a, b)
    return a, b


def _int(v) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _unhex(v) -> bytes | None:
    if not v:
        return None
    try:
        return bytes.fromhex(v.strip())
    except ValueError:
        return None
