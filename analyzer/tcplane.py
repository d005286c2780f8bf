"""The fast lane of one direction of a TCP connection that carries an established CSTP tunnel.

`Pipeline.feed` hands a raw IPv4/TCP frame to the lane of its direction (see `Pipeline.feed`). The lane takes:

* the next in-order data segment (sequence number == next expected, flags ACK or PSH|ACK, nothing buffered out of
  order, no FIN pending, an acknowledgement that does not run past the data seen in the other direction);
* a pure ACK (no data, flags ACK or PSH|ACK) that does not acknowledge data never seen in the other direction;

and does what the general path (packet.decode → FlowTable → TCPStream → TCPConnection → TLS → HTTP/CSTP →
ChannelStats) would do with it, without the Packet / StreamData / ApplicationData / CSTPFrame objects:
TLS records that are application data of the current key (AEAD, or CBC with an explicit IV; already decrypting)
are decrypted here, and a TLS record that is exactly one CSTP frame (not COMPRESSED DATA) goes straight to the
channel statistics.

Anything else declines in layers, never by guessing: a segment the TCP checks refuse returns False having
changed nothing (the general path takes the frame); past the TCP layer, a state the lane does not mirror
(a record that is not application data or does not decrypt, a resynchronising record layer, a partial CSTP
frame, HTTP not in tunnel mode…) hands the segment's bytes to the real TLS / HTTP / CSTP code of that layer,
exactly as the general path would.
"""
from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag

from dissectors.cstp import CSTP_MAGIC
from dissectors.tls.ciphers import AEADExplicitNonce, AEADXorNonce, CBCProtection, DecryptError, TLS13Protection

from .connection import ChannelStats

_M32 = 0xFFFFFFFF
_HALF = 0x80000000
_TCP = struct.Struct("!IIBB")  # seq, ack, data offset byte, flags byte (from TCP header offset 4)
_TLS_HDR = struct.Struct("!BHH")
_CSTP_HDR = struct.Struct("!HBB")  # after the magic: length, type, reserved
# protections for which decrypting a record twice (the lane's try, then the TLS code's) is harmless; CBC with an
# explicit IV too (its decryption context's running state only affects the IV block, whose output is dropped), not
# TLS 1.0's chained IV
_STATELESS = (TLS13Protection, AEADExplicitNonce, AEADXorNonce)
_TUNNEL = "tunnel"  # dissectors.http._TUNNEL


def _table_key(a: tuple, b: tuple) -> tuple:
    return (a[0], a[1], b[0], b[1]) if (a[0] < b[0] or (a[0] == b[0] and a[1] <= b[1])) else (b[0], b[1], a[0], a[1])


class TCPLane:
    """One direction ("c2s" / "s2c") of one TCP connection in CSTP tunnel mode."""

    __slots__ = ("_pos", "aead", "conn", "direction", "flow_index", "flows", "h", "hside", "http", "iv", "max_len",
                 "o", "reader", "sink", "st", "table", "table_key", "td", "tls", "tls_gen")

    @classmethod
    def open(cls, st, conn, flows, direction: str, sink) -> TCPLane | None:
        """The lane of ``direction`` of TCP stream ``st`` (its TCPConnection ``conn``), or None."""
        if conn.is_tls is not True or not getattr(conn.http, "tunnel", False) or st.client is None:
            return None
        if st.client == st.server:  # both directions look alike on the wire: TCPStream calls every packet c2s
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
        lane.tls_gen = -1
        lane.aead = None
        lane.iv = 0
        lane.max_len = 0
        lane._pos = 0
        return lane

    def __call__(self, data, off: int, total: int, ts: float, frame: int) -> bool:
        seq, ack, doffb, flags = _TCP.unpack_from(data, off + 24)
        if flags != 0x18 and flags != 0x10:
            return False
        hl = (doffb >> 4) << 2
        plen = total - 20 - hl
        if hl < 20 or plen < 0:
            return False
        h = self.h
        if h.closed or h.fin is not None or h.buf or h.isn is None:
            return False
        o = self.o
        if o.isn is not None and not o.closed:
            d = (ack - o.isn - o.next) & _M32
            if d and d < _HALF:  # acknowledges bytes never seen: the general path declares a gap
                return False
        nxt = h.next
        if plen and (seq - h.isn - nxt) & _M32:
            return False  # not the next in-order segment
        st = self.st
        if st.retired:
            return False  # evicted, or the tuple was reused by a new connection
        # -- TCP: what TCPStream.feed / FlowTable.feed leave behind --------------------------------------------
        st.last_ts = ts
        st.last_frame = frame
        st.packets += 1
        self.table.move_to_end(self.table_key)
        self.flows.last_flow = st
        if not plen:
            return True
        h.next = nxt + plen
        h.bytes += plen
        p = off + 20 + hl
        payload = data[p:p + plen]
        # -- TCPConnection.on_flow_event(StreamData) --------------------------------------------------------
        conn = self.conn
        conn.segments[self.direction] += 1
        conn.last_ts = ts
        conn.last_frame = frame
        # -- TLS record layer ------------------------------------------------------------------------------
        if self.tls.gen != self.tls_gen and not self._tls_simple():
            self._tls_general(payload, ts, frame)
            return True
        rd = self.reader
        buf = rd._buf
        pending = len(buf)
        buf += payload
        n = len(buf)
        if n < 5:
            rd._frames.append((rd._base + n, frame))
            return True
        ct, ver, ln = _TLS_HDR.unpack_from(buf, 0)
        if ct != 23 or (ver >> 8) != 3 or ln > self.max_len:
            del buf[pending:]
            self._tls_general(payload, ts, frame)
            return True
        end = 5 + ln
        if end > n:  # the record continues in a later segment (RecordReader.feed; next() waits)
            rd._frames.append((rd._base + n, frame))
            return True
        # whole records: decrypt them all before changing anything (a failure hands the segment to the TLS code)
        td = self.td
        rseq = td.seq
        aead = self.aead
        if aead is not None:  # TLS 1.3: nonce = iv ^ seq, the record header is the AAD
            try:
                inner = aead.decrypt((self.iv ^ rseq).to_bytes(12, "big"), buf[5:end], buf[:5])
            except InvalidTag:
                inner = None
            size = len(inner) - 1 if inner else -1
            if size >= 0 and inner[size] == 0:  # padding (RFC 8446 §5.4)
                size = len(inner.rstrip(b"\x00")) - 1
            if size < 0 or inner[size] != 23:
                del buf[pending:]
                self._tls_general(payload, ts, frame)
                return True
            if end == n:  # the common case: the segment completes exactly one record
                base = rd._base + n
                rd._frames = [(base, frame)]  # (what _compact leaves: the last feed's entry)
                buf.clear()
                rd._base = base
                td.seq = rseq + 1
                td.last_end = base
                records = td.records + 1
                td.records = records
                td.avg_wire = n if records == 1 else td.avg_wire + (n - td.avg_wire) / 16.0
                if size:
                    self._deliver(conn, inner, size, ts, frame)
                return True
        plains = self._decrypt_all(buf, n, rseq, ver, end)
        if plains is None:
            del buf[pending:]
            self._tls_general(payload, ts, frame)
            return True
        # commit: RecordReader.feed / next / _compact, TLSConnection._note_record / _decrypt
        base = rd._base
        frames = rd._frames
        frames.append((base + n, frame))
        records = td.records
        avg = td.avg_wire
        for _pt, _size, wire in plains:
            records += 1
            avg = wire if records == 1 else avg + (wire - avg) / 16.0
        pos = self._pos
        td.last_end = base + pos
        td.records = records
        td.avg_wire = avg
        td.seq = rseq + len(plains)
        if pos == n:
            buf.clear()
        else:
            del buf[:pos]
        base += pos
        rd._base = base
        i = 0
        last = len(frames) - 1
        while i < last and frames[i][0] <= base:
            i += 1
        if i:
            del frames[:i]
        for inner, size, _wire in plains:
            if size:
                self._deliver(conn, inner, size, ts, frame)
        return True

    def _decrypt_all(self, buf, n: int, rseq: int, ver: int, end: int):
        """[(plaintext, its length, record size on the wire)] of the whole records in ``buf`` (the first ends at
        ``end``), their end in self._pos; None if one is not application data that decrypts."""
        plains = []
        pos = 0
        aead = self.aead
        iv = self.iv
        cipher = self.td.cipher
        max_len = self.max_len
        while True:
            if aead is not None:
                try:
                    inner = aead.decrypt((iv ^ rseq).to_bytes(12, "big"), buf[pos + 5:end], buf[pos:pos + 5])
                except InvalidTag:
                    return None
                size = len(inner) - 1
                if size >= 0 and inner[size] == 0:
                    size = len(inner.rstrip(b"\x00")) - 1
                if size < 0 or inner[size] != 23:
                    return None
            else:
                try:
                    inner = cipher.decrypt(rseq, 23, ver, buf[pos + 5:end])
                except DecryptError:
                    return None
                size = len(inner)
            plains.append((inner, size, end - pos))
            rseq += 1
            pos = end
            if n - pos < 5:
                break
            ct, ver, ln = _TLS_HDR.unpack_from(buf, pos)
            if ct != 23 or (ver >> 8) != 3 or ln > max_len:
                return None
            end = pos + 5 + ln
            if end > n:
                break
        self._pos = pos
        return plains

    def _deliver(self, conn, inner: bytes, size: int, ts: float, frame: int) -> None:
        """TCPConnection._on_tls(ApplicationData of inner[:size]) → HTTP (tunnel) → CSTP → ChannelStats."""
        direction = self.direction
        conn.app_records[direction] += 1
        conn.app_bytes[direction] += size
        if conn.first_app_ts is None:
            conn.first_app_ts = ts
        if conn.handshake_done_ts is None:
            conn.handshake_done_ts = ts
        framer = self.http._framer
        hside = self.hside
        if hside.state != _TUNNEL or framer is None:
            for hev in self.http.feed(direction, inner[:size], ts, frame):
                conn._on_http(hev)
            return
        hside.last_ts = ts
        hside.last_frame = frame
        fst = framer._dirs[direction]
        if size >= 8 and not (fst.closed or fst.buf or fst.resyncing) and inner[:4] == CSTP_MAGIC:
            length, ptype, reserved = _CSTP_HDR.unpack_from(inner, 4)
            if length + 8 == size and not reserved and ptype != 8:
                # CSTPFramer.feed / _drain / consume for exactly one whole frame on an empty buffer
                fst.last_ts = ts
                fst.last_frame = frame
                start = fst.offset
                fst.offset = start + size
                fst.marks = [(start, ts, frame)]
                body = inner[8:size]
                stats = conn.tunnel
                if stats is None:
                    stats = conn.tunnel = ChannelStats()
                if ptype == 0:
                    stats.data(direction, ts, frame, body, conn.tunnel_mtu, self.sink, "cstp")
                else:
                    stats.add(direction, ptype, length, ts, frame, None, conn.tunnel_mtu, body, self.sink, "cstp")
                return
        for fev in framer.feed(direction, inner[:size], ts, frame):
            conn._on_http(fev)

    def _tls_simple(self) -> bool:
        """Is this direction's TLS read state one the lane mirrors (application data of the current key, in
        sync, already decrypting, AEAD)? Remembered until the TLS code runs again."""
        td = self.td
        rd = self.reader
        cipher = td.cipher
        if (not rd.synced or rd._candidate is not None or rd._off or cipher is None or td.dead or td.seq_lost
                or td.early or td.zlib is not None or td.switch is not None or not td.decrypting
                or td.ok_epoch != td.epoch or not td.encrypted):
            return False
        if type(cipher) not in _STATELESS and not (type(cipher) is CBCProtection and cipher.explicit_iv):
            return False
        if td.tls13 != (type(cipher) is TLS13Protection):
            return False
        if td.tls13:
            self.aead = cipher._aead
            self.iv = cipher._iv
        else:
            self.aead = None
        self.max_len = rd.max_len
        self.tls_gen = self.tls.gen
        return True

    def _tls_general(self, payload: bytes, ts: float, frame: int) -> None:
        conn = self.conn
        for tev in self.tls.feed(self.direction, payload, ts, frame):
            conn._on_tls(tev)
