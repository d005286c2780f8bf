"""Per-UDP-flow tracker for the VPN's DTLS channel (phase 6).

Fed the flow layer's `Datagram`s; drives the sans-I/O DTLS dissector; keeps a bounded summary: every ClientHello
(bounded), the handshake outcome and its duration, and the channel statistics (frames per type, DPD, MTU probes,
inner packets). Keys arrive later from the CSTP CONNECT exchange (`set_keys`).
"""
from __future__ import annotations

from dissectors.dtls.events import DTLSApplicationData as _AppData
import struct
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag

from dissectors.tls.ciphers import AEADExplicitNonce, DecryptError

from .connection import MAX_PROBLEMS, MAX_SAMPLES, ChannelStats

if TYPE_CHECKING:
    from .host import TrackerHost

_AAD = struct.Struct("!QBHH")  # RFC 5246 §6.2.3.3 additional data, with DTLS's epoch||seq as seq_num
# UDP length (after the ports, checksum skipped), then the DTLS record header: type, version, epoch, seq, length
_UDP_DTLS = struct.Struct("!H2xBHHHIH")

DTLS_VERSIONS = {0x0100: "DTLS 0x0100", 0xFEFF: "DTLS 1.0", 0xFEFD: "DTLS 1.2"}


def looks_like_dtls(data: bytes) -> bool:
    """A datagram whose first record header is a DTLS one (content type 20–23, version 0x0100/0xfeff/0xfefd)."""
    return (len(data) >= 13 and data[0] in (20, 21, 22, 23) and
            ((data[1] == 0xFE and data[2] in (0xFF, 0xFD)) or (data[1] == 0x01 and data[2] == 0x00)))


class DTLSFlow:
    """One UDP flow of the DTLS channel: ``index`` is its udp.stream number in ``capture`` (the capture file it
    was first seen in, None when the frames were not named), ``numbers`` as for `TCPConnection`; ``host``
    (analyzer/host.py) is told of inner packets and of the first ClientHello's session id."""

    def __init__(self, index: int, client: tuple[str, int], server: tuple[str, int], ts: float, frame: int,
                 host: TrackerHost, *, capture: str | None = None, numbers: list | None = None) -> None:
        from dissectors.dtls import DTLSConnection  # noqa: PLC0415

        self.index = index
        self.capture = capture
        self.numbers = numbers if numbers is not None else [(0, index)]
        self.client = client
        self.server = server
        self.first_ts = ts
        self.first_frame = frame
        self.last_ts = ts
        self.last_frame = frame
        self.host = host
        self.dtls = DTLSConnection(None)
        self.keys_source: str | None = None  # "legacy" / "psk-negotiate" once keys are set
        self.session_id: bytes | None = None
        self.hellos: list[dict] = []
        self.hello_total = 0
        self.hello_verify: list[dict] = []
        self.server_hello: dict | None = None
        self.full_handshake = False
        self.version: int | None = None
        self.cipher_suite: int | None = None
        self.established_ts: float | None = None
        self.established_frame: int | None = None
        self.alerts: list[dict] = []
        self.undecrypted = 0
        self.undecrypted_reason: str | None = None
        self.problems: list[dict] = []
        self.datagrams = {"c2s": 0, "s2c": 0}
        self.bytes = {"c2s": 0, "s2c": 0}
        self.channel = ChannelStats()
        self.mtu: int | None = None
        self.first_record: dict = {}
        self.continues: str | None = None  # the flow whose DTLS session this one continues (NAT rebinding)

    @property
    def key(self) -> str:
        return f"udp:{self.index}"

    def on_datagram(self, direction: str, data: bytes, ts: float, frame: int) -> None:
        self.last_ts = ts
        self.last_frame = frame
        self.datagrams[direction] += 1
        self.bytes[direction] += len(data)
        for ev in self.dtls.feed(direction, data, ts, frame):
            self._on_event(ev)

    def set_keys(self, keys, source: str, mtu: int | None) -> None:
        if self.keys_source is not None:
            return
        self.keys_source = source
        self.mtu = mtu
        for ev in self.dtls.set_keys(keys) or ():
            self._on_event(ev)

    def _on_event(self, ev) -> None:
        t = type(ev)
        if t is _AppData:  # the hot path first
            if self.established_ts is None:
                self.established_ts = ev.ts
                self.established_frame = ev.frame
            data = ev.data
            if data:
                ftype = data[0]
                payload = data[1:]
                self.channel.add(ev.direction, ftype, len(payload), ev.ts, ev.frame, payload if ftype == 0 else None,
                                 self.mtu, payload, self.host.inner_packet, "dtls")
            return
        name = t.__name__
        if name == "DTLSClientHello":
            self.hello_total += 1
            if self.session_id is None and ev.session_id:
                self.session_id = bytes(ev.session_id)
                self.host.on_dtls_hello(self)
            if len(self.hellos) < MAX_SAMPLES:
                self.hellos.append({"ts": ev.ts, "frame": ev.frame, "retransmission": bool(ev.retransmission),
                                    "session_id": bytes(ev.session_id).hex(), "version": ev.version,
                                    "cookie": bool(ev.cookie)})
        elif name == "DTLSHelloVerifyRequest":
            if len(self.hello_verify) < MAX_SAMPLES:
                self.hello_verify.append({"ts": ev.ts, "frame": ev.frame})
        elif name == "DTLSServerHello":
            if self.server_hello is None:
                self.server_hello = {"ts": ev.ts, "frame": ev.frame, "session_id": bytes(ev.session_id).hex(),
                                     "cipher_suite": ev.cipher_suite, "version": ev.version}
            self.version = ev.version
            self.cipher_suite = ev.cipher_suite
        elif name == "DTLSAlert":
            if len(self.alerts) < MAX_PROBLEMS:
                self.alerts.append({"direction": ev.direction, "level": ev.level, "description": ev.description,
                                    "name": ev.name, "encrypted": ev.encrypted, "ts": ev.ts, "frame": ev.frame})
        elif name == "DTLSUndecrypted":
            self.undecrypted += 1
            self.undecrypted_reason = ev.reason
        elif name == "DTLSRecordError":
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append({"message": ev.message, "ts": ev.ts, "frame": ev.frame})

    def finish(self) -> None:
        self.full_handshake = bool(getattr(self.dtls, "full_handshake", False))
        if self.established_ts is None and getattr(self.dtls, "handshake_complete", False):
            self.established_ts = self.last_ts


class DTLSLane:
    """The fast lane of one direction of an established DTLS flow (see `Pipeline.feed`).

    Takes a raw IPv4/UDP frame whose datagram is exactly one application-data record of the epoch the lane
    was opened for, protected by the one handshake that owns that epoch, and does what the general path
    (FlowTable → DTLSFlow → DTLSConnection → ChannelStats) would do with it, without the intermediate
    objects. Anything else — another record type or epoch, several records, a record that does not decrypt,
    a backlog waiting for keys — is declined (False, nothing changed) and takes the general path.
    """

    __slots__ = ("aead", "channel", "conn", "datagrams", "direction", "epoch", "flow", "flow_index", "hdr", "hs",
                 "octets", "prot", "prots", "salt", "seq_base", "sink", "table", "table_key", "tracker", "version")

    @classmethod
    def open(cls, tracker: DTLSFlow, flow, flows, direction: str, datagram: bytes) -> DTLSLane | None:
        conn = tracker.dtls
        if len(datagram) < 13 or datagram[0] != 23 or conn._backlog or conn._replay_wanted:
            return None
        epoch = (datagram[3] << 8) | datagram[4]
        cands = conn._epochs.get(epoch)
        if not cands or len(cands) != 1:
            return None
        h = cands[0]
        if h.protections is None or not h.ok:
            return None
        lane = cls()
        lane.tracker = tracker
        lane.conn = conn
        lane.direction = direction
        lane.epoch = epoch
        lane.version = (datagram[1] << 8) | datagram[2]
        lane.hdr = bytes(datagram[1:5])
        lane.hs = h
        lane.prots = h.protections
        lane.prot = prot = h.protections[0 if direction == "c2s" else 1]
        # AES-GCM/CCM with an explicit nonce (all AnyConnect DTLS 1.2 AEAD suites): decrypted here directly
        lane.aead = prot._aead if type(prot) is AEADExplicitNonce and prot.tag_len == 16 else None
        lane.salt = prot._salt if lane.aead is not None else None
        lane.seq_base = epoch << 48
        lane.channel = tracker.channel
        lane.sink = tracker.host.inner_packet
        lane.datagrams = tracker.datagrams
        lane.octets = tracker.bytes
        lane.flow = flow
        lane.flow_index = flow.index
        lane.table = flows._udp
        a, b = flow.a, flow.b
        lane.table_key = (a[0], a[1], b[0], b[1]) if (a[0] < b[0] or (a[0] == b[0] and a[1] <= b[1])) else (
            b[0], b[1], a[0], a[1])
        if lane.table.get(lane.table_key) is not flow:
            return None
        return lane

    def __call__(self, data: bytes, off: int, total: int, ts: float, frame: int) -> bool:
        p = off + 28
        n = total - 28  # the datagram's length
        if n < 37:
            return False
        ulen, ct, version, epoch, seq_hi, seq_lo, length = _UDP_DTLS.unpack_from(data, off + 24)
        if (ct != 23 or epoch != self.epoch or version != self.version or length != n - 13 or ulen != n + 8):
            return False
        conn = self.conn
        h = self.hs
        if conn._backlog or conn._replay_wanted or h.protections is not self.prots:
            return False
        cands = conn._epochs.get(epoch)
        if cands is None or len(cands) != 1 or cands[0] is not h:
            return False
        seq64 = self.seq_base | (seq_hi << 32) | seq_lo
        aead = self.aead
        if aead is not None:
            # RFC 5288 §3: nonce = salt(4) || explicit nonce(8); the tag is the last 16 bytes
            try:
                pt = aead.decrypt(self.salt + data[p + 13:p + 21], data[p + 21:off + total],
                                  _AAD.pack(seq64, 23, version, n - 37))
            except InvalidTag:
                return False
        else:
            try:
                pt = self.prot.decrypt(seq64, 23, version, data[p + 13:off + total])
            except DecryptError:
                return False
        # what the general path leaves behind
        fl = self.flow
        fl.packets += 1
        fl.last_ts = ts
        fl.last_frame = frame
        self.table.move_to_end(self.table_key)
        tr = self.tracker
        tr.last_ts = ts
        tr.last_frame = frame
        d = self.direction
        self.datagrams[d] += 1
        self.octets[d] += n
        conn.datagrams += 1
        conn.records += 1
        h.ok += 1
        if tr.established_ts is None:
            tr.established_ts = ts
            tr.established_frame = frame
        if pt:
            if pt[0] == 0:
                self.channel.data(d, ts, frame, pt[1:], tr.mtu, self.sink, "dtls")
            else:
                payload = pt[1:]
                self.channel.add(d, pt[0], len(payload), ts, frame, None, tr.mtu, payload, self.sink, "dtls")
        return True
