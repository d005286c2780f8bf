"""The fast lane of one direction of a TCP connection that carries an established CSTP tunnel.

`Pipeline.feed` hands a raw IPv4/TCP frame to the lane of its direction (see `Pipeline.feed`). The lane takes:

* the next in-order data segment (sequence number == next expected, flags ACK or PSH|ACK, nothing buffered out of
  order, no FIN pending, an acknowledgement that does not run past the data seen in the other direction);
* a pure ACK (no data, flags ACK or PSH|ACK) that does not acknowledge data never seen in the other direction;

and does what the general path (packet.decode → FlowTable → TCPStream → TCPConnection → TLS → HTTP/CSTP →
ChannelStats) would do with it, without the Packet / StreamData / ApplicationData / CSTPFrame objects:
TLS records that are application data of the current key (AEAD, already decrypting) are decrypted here, and a
TLS record that is exactly one CSTP frame (not COMPRESSED DATA) goes straight to the channel statistics.

Anything else declines in layers, never by guessing: a segment the TCP checks refuse returns False having
changed nothing (the general path takes the frame); past the TCP layer, a state the lane does not mirror
(a record that is not application data or does not decrypt, a resynchronising record layer, a partial CSTP
frame, HTTP not in tunnel mode…) hands the segment's bytes to the real TLS / HTTP / CSTP code of that layer,
exactly as the general path would.
"""
from __future__ import annotations

import struct

from dissectors.cstp import CSTP_MAGIC
from dissectors.tls.ciphers import AEADExplicitNonce, AEADXorNonce, DecryptError, TLS13Protection

from .connection import ChannelStats

_M32 = 0xFFFFFFFF
_HALF = 0x80000000
_TCP = struct.Struct("!IIBB")  # seq, ack, data offset byte, flags byte (from TCP header offset 4)
_TLS_HDR = struct.Struct("!BHH")
_CSTP_HDR = struct.Struct("!HBB")  # after the magic: length, type, reserved
_STATELESS = (TLS13Protection, AEADExplicitNonce, AEADXorNonce)  # decrypting twice is harmless
_TUNNEL = "tunnel"  # dissectors.http._TUNNEL


def _table_key(a: tuple, b: tuple) -> tuple:
    return (a[0], a[1], b[0], b[1]) if (a[0] < b[0] or (a[0] == b[0] and a[1] <= b[1])) else (b[0], b[1], a[0], a[1])


class TCPLane:
    """One direction ("c2s" / "s2c") of one TCP connection in CSTP tunnel mode."""

    __slots__ = ("conn", "direction", "flow_index", "flows", "h", "hside", "http", "o", "reader", "sink", "st",
                 "table", "table_key", "tls", "td")

    @classmethod
    def open(cls, st, conn, flows, direction: str, sink) -> TCPLane | None:
        """The lane of ``direction`` of TCP stream ``st`` (its TCPConnection ``conn``), or None."""
        if conn.is_tls is not True or not getattr(conn.http, "tunnel", False) or st.client is None:
            return None
        table = flows._tcp
        key = _table_key(st.client, st.server)
        if table.get(key) is not st:
            return None
        lane = cls()
        lane.st = st
        lane.flow_index = st.index
        lane.flows = flows
        lane.table = table
        lane.table_key = key
        lane.direction = direction
        lane.h, lane.o = (st._c, st._s) if direction == "c2s" else (st._s, st._c)
        lane.conn = conn
        lane.tls = conn.tls
        lane.td = conn.tls._d[direction]
        lane.reader = lane.td.reader
        lane.http = conn.http
        lane.hside = conn.http._sides[direction]
        lane.sink = sink
        return lane

    def __call__(self, data, off: int, total: int, ts: float, frame: int) -> bool:
        l4 = off + 20
        seq, ack, doffb, flags = _TCP.unpack_from(data, l4 + 4)
        if flags != 0x10 and flags != 0x18:
            return False
        doff = (doffb >> 4) << 2
        if doff < 20 or doff > total - 20:
            return False
        st = self.st
        h = self.h
        if h.closed or h.fin is not None or h.buf or h.isn is None:
            return False
        o = self.o
        if o.isn is not None and not o.closed:
            d = (ack - o.isn - o.next) & _M32
            if d and d < _HALF:  # acknowledges bytes never seen: the general path declares a gap
                return False
        plen = total - 20 - doff
        nxt = h.next
        if plen and (seq - h.isn - nxt) & _M32:
            return False  # not the next in-order segment
        table = self.table
        key = self.table_key
        if table.get(key) is not st:
            return False  # the tuple was reused by a new connection
        # -- TCP: what TCPStream.feed / FlowTable.feed leave behind --------------------------------------------
        st.last_ts = ts
        st.last_frame = frame
        st.packets += 1
        table.move_to_end(key)
        self.flows.last_flow = st
        if not plen:
            return True
        payload = data[l4 + doff:off + total]
        h.next = nxt + plen
        h.bytes += plen
        # -- TCPConnection.on_flow_event(StreamData) --------------------------------------------------------
        conn = self.conn
        direction = self.direction
        conn.segments[direction] += 1
        conn.last_ts = ts
        conn.last_frame = frame
        # -- TLS record layer ------------------------------------------------------------------------------
        td = self.td
        rd = self.reader
        cipher = td.cipher
        if (not rd.synced or rd._candidate is not None or rd._off or cipher is None or td.dead or td.seq_lost
                or td.early or td.zlib is not None or td.switch is not None or not td.decrypting
                or td.ok_epoch != td.epoch or not td.encrypted or type(cipher) not in _STATELESS):
            self._tls_general(payload, ts, frame)
            return True
        buf = rd._buf
        pending = len(buf)
        buf += payload
        n = len(buf)
        pos = 0
        rseq = td.seq
        tls13 = td.tls13
        max_len = rd.max_len
        plains = []
        while n - pos >= 5:
            ct, ver, ln = _TLS_HDR.unpack_from(buf, pos)
            if ct != 23 or (ver >> 8) != 3 or ln > max_len:
                del buf[pending:]
                self._tls_general(payload, ts, frame)
                return True
            end = pos + 5 + ln
            if end > n:
                break
            try:
                if tls13:
                    ict, pt = cipher.decrypt(rseq, bytes(buf[pos:pos + 5]), buf[pos + 5:end])
                    if ict != 23:
                        raise DecryptError("not application data")
                else:
                    pt = cipher.decrypt(rseq, 23, ver, buf[pos + 5:end])
            except DecryptError:
                del buf[pending:]
                self._tls_general(payload, ts, frame)
                return True
            plains.append((pos, 5 + ln, pt))
            rseq += 1
            pos = end
        # commit the record layer: RecordReader.feed / next / _compact and TLSConnection._note_record / _decrypt
        base = rd._base
        rd._frames.append((base + n, frame))
        if not plains:
            return True
        records = td.records
        avg = td.avg_wire
        for p, wire, _pt in plains:
            records += 1
            avg = wire if records == 1 else avg + (wire - avg) / 16.0
        td.last_end = base + p + wire
        td.records = records
        td.avg_wire = avg
        td.seq = rseq
        rd._off = pos
        rd._compact()
        # -- TCPConnection._on_tls(ApplicationData) → HTTP (tunnel) → CSTP → ChannelStats ---------------------
        hside = self.hside
        for _p, _w, pt in plains:
            if not pt:
                continue
            conn.app_records[direction] += 1
            conn.app_bytes[direction] += len(pt)
            if conn.first_app_ts is None:
                conn.first_app_ts = ts
            if conn.handshake_done_ts is None:
                conn.handshake_done_ts = ts
            if type(pt) is not bytes:
                pt = bytes(pt)
            framer = self.http._framer
            if hside.state != _TUNNEL or framer is None:
                for hev in self.http.feed(direction, pt, ts, frame):
                    conn._on_http(hev)
                continue
            hside.last_ts = ts
            hside.last_frame = frame
            fst = framer._dirs[direction]
            size = len(pt)
            if fst.closed or fst.buf or fst.resyncing or size < 8 or pt[:4] != CSTP_MAGIC:
                for fev in framer.feed(direction, pt, ts, frame):
                    conn._on_http(fev)
                continue
            length, ptype, reserved = _CSTP_HDR.unpack_from(pt, 4)
            if length + 8 != size or reserved or ptype == 8:
                for fev in framer.feed(direction, pt, ts, frame):
                    conn._on_http(fev)
                continue
            # CSTPFramer.feed / _drain / consume for exactly one whole frame on an empty buffer
            fst.last_ts = ts
            fst.last_frame = frame
            start = fst.offset
            fst.offset = start + size
            marks = fst.marks
            marks.clear()
            marks.append((start, ts, frame))
            body = pt[8:]
            stats = conn.tunnel
            if stats is None:
                stats = conn.tunnel = ChannelStats()
            stats.add(direction, ptype, length, ts, frame, body if ptype == 0 else None, conn.tunnel_mtu, body,
                      self.sink, "cstp")
        return True

    def _tls_general(self, payload: bytes, ts: float, frame: int) -> None:
        conn = self.conn
        for tev in self.tls.feed(self.direction, payload, ts, frame):
            conn._on_tls(tev)
