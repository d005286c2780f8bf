"""Per-UDP-flow tracker for the VPN's DTLS channel (phase 6).

Fed the flow layer's `Datagram`s; drives the sans-I/O DTLS dissector; keeps a bounded summary: every ClientHello
(bounded), the handshake outcome and its duration, and the channel statistics (frames per type, DPD, MTU probes,
inner packets). Keys arrive later from the CSTP CONNECT exchange (`set_keys`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dissectors import cstp
from dissectors.dtls import events as dtls_ev
from dissectors.dtls.connection import WRONG_KEYS
from dissectors.dtls.events import DTLSApplicationData as _AppData
from dissectors.dtls.record import DTLS10, DTLS12, DTLS_BAD_VER
from dissectors.tls.names import cipher_suite_name

from .keyless import (
    DTLS_GUESS_CANDIDATES,
    DTLS_TYPE_BYTE,
    TunnelEstimate,
    control_records,
    guess_protection,
    protection,
)
from .tcptracker import GUESS_EVERY, MAX_PROBLEMS, MAX_SAMPLES, ChannelStats, FlowTracker

MAX_FINISHED = 16  # records carrying a side's Finished kept (the first and the copies sent again)

if TYPE_CHECKING:
    from .host import TrackerHost

_CSTP_DATA = int(cstp.DATA)  # the type byte of a DATA packet on the DTLS channel
_APPLICATION_DATA = 23  # DTLS content type (RFC 6347 §4.1)
EXT_ENCRYPT_THEN_MAC = 22  # RFC 7366
DTLS_VERSIONS = {DTLS_BAD_VER: "DTLS 0x0100", DTLS10: "DTLS 1.0", DTLS12: "DTLS 1.2"}
#: application-data bytes a DTLS flow's records may hold while they wait for keys (dissectors/dtls DTLSConnection)
MAX_BACKLOG_BYTES = 64 * 1024


def looks_like_dtls(data: bytes) -> bool:
    """A datagram whose first record header is a DTLS one (content type 20–23, version 0x0100/0xfeff/0xfefd)."""
    return (len(data) >= 13 and data[0] in (20, 21, 22, 23) and
            ((data[1] == 0xFE and data[2] in (0xFF, 0xFD)) or (data[1] == 0x01 and data[2] == 0x00)))


class DTLSFlow(FlowTracker):
    """One UDP flow of the DTLS channel: ``index``, ``numbers``… as for every `FlowTracker` (``index`` is a
    udp.stream number); ``host`` (analyzer/host.py) is told of inner packets and of the first ClientHello's
    session id."""

    def __init__(self, index: int, client: tuple[str, int], server: tuple[str, int], ts: float, frame: int,
                 host: TrackerHost, *, capture: str | None = None, numbers: list | None = None,
                 quiet: list | None = None, sides: tuple | None = None) -> None:
        from dissectors.dtls import DTLSConnection  # noqa: PLC0415

        super().__init__(index, client, server, ts, frame, capture=capture, numbers=numbers, quiet=quiet,
                         sides=sides)
        self.host = host
        # records wait for keys (the CONNECT carrying them parsed after the first datagrams), but a flow whose keys
        # never come (no key log: a gateway capture of hundreds of clients) holds at most 64 KiB of them
        self.dtls = DTLSConnection(None, max_backlog_bytes=MAX_BACKLOG_BYTES)
        self.keys_source: str | None = None  # "legacy" / "psk-negotiate" once keys are set
        self.session_id: bytes | None = None
        self.hellos: list[dict] = []
        self.hello_total = 0
        self.hello_verify: list[dict] = []
        self.server_hellos: list[tuple[float, int]] = []  # every ServerHello (time, frame), the first MAX_SAMPLES
        self.server_hello: dict | None = None
        self.full_handshake = False
        self.version: int | None = None
        self.cipher_suite: int | None = None
        self.established_ts: float | None = None
        self.established_frame: int | None = None
        self.established_keyless = False  # established_ts read from the record pattern, not from decryption
        self.alerts: list[dict] = []
        self.undecrypted = 0
        self.undecrypted_reason: str | None = None
        self.problems: list[dict] = []
        self.datagrams = {"c2s": 0, "s2c": 0}
        self.bytes = {"c2s": 0, "s2c": 0}
        self.channel = ChannelStats()
        #: per direction, the record numbers of its sender the capture lacks (`DTLSConnection.sequence_gaps`, at
        #: `finish`)
        self.sequence_gaps: dict[str, dict] = {}
        self.mtu: int | None = None
        self.first_record: dict = {}
        self.continues: str | None = None  # the flow whose DTLS session this one continues (NAT rebinding)
        # what the wire shows without keys: first protected handshake record (Finished) per direction, first
        # protected application-data record; undecrypted records per direction
        self.first_protected_handshake: dict = {}  # direction -> (ts, frame)
        #: direction -> [(ts, frame)] of the records carrying its Finished (the first, then each copy sent again: a
        #: flight nobody answered) — decrypted Finished messages, or without keys protected handshake records;
        #: the first MAX_FINISHED
        self.finished_records: dict = {}
        #: direction -> its Finished's verify_data checked against the keys the flow was given (True/False; None:
        #: not checkable) — with PSK-NEGOTIATE, a client's Finished verifying proves the key of its TLS session
        self.finished_verified: dict = {}
        self.first_protected_data: tuple | None = None  # (ts, frame)
        self.undecrypted_records = {"c2s": 0, "s2c": 0}
        self.estimate = None  # keyless.TunnelEstimate of the undecrypted channel records (by size)
        self.estimate_suite: tuple | None = None  # (suite, version) of the session a rebound flow continues
        #: a flow seen only mid-tunnel, no suite known: the protection its records' sizes fit
        #: (`keyless.guess_protection` over `DTLS_GUESS_CANDIDATES`), and the control-size pattern it rests on
        self.guessed_protection: str | None = None
        self.guess_pattern: tuple | None = None  # (records, frames)
        self._guess_sizes: dict | None = None  # its first application-data records, while guessing
        self._cut_seen: set = set()  # (direction, handshake type, message_seq) of the hellos cut by the capture
        self.etm = False  # the ServerHello accepted encrypt-then-MAC (RFC 7366): CBC records' MAC comes last

    @property
    def key(self) -> str:
        return f"udp:{self.index}"

    def on_cut_datagram(self, direction: str, data: bytes, wire: int, ts: float, frame: int) -> None:
        """A datagram the capture cut short (its snapshot length): ``data`` its first bytes, ``wire`` its length.
        Its records cannot be read (nor decrypted), but the headers it kept tell what they were: a ClientHello,
        HelloVerifyRequest or ServerHello (with the fields that fit: the hello's version, its session id's length),
        a protected record of its epoch and length (counted undecrypted, read by size: analyzer/keyless.py). The
        DTLS layer only notes its number (`take_cut_record`: a copy of it is told apart); its reassembly and
        transcript would need the whole records."""
        self.note_datagram(direction, wire, ts, frame)
        pos, end = 0, len(data)
        while pos + 13 <= end:
            ct, epoch, length = data[pos], int.from_bytes(data[pos + 3:pos + 5], "big"), \
                int.from_bytes(data[pos + 11:pos + 13], "big")
            if ct not in (20, 21, 22, 23) or data[pos + 1] not in (0x01, 0xFE):
                break
            body = data[pos + 13:pos + 13 + length]
            if not self.dtls.take_cut_record(direction, ct, int.from_bytes(data[pos + 1:pos + 3], "big"),
                                             int.from_bytes(data[pos + 3:pos + 11], "big"), body, ts):
                self.duplicates += 1  # a copy the capture made of the record before
            elif epoch:
                self._undecrypted(direction, "cut by the capture (snapshot length)", epoch, ct, length, ts, frame)
            elif ct == 22 and len(body) >= 12:
                self._cut_handshake(direction, body, ts, frame)
            pos += 13 + length

    def _cut_handshake(self, direction: str, body: bytes, ts: float, frame: int) -> None:
        """The first bytes of an epoch-0 handshake record (header: type, length, message_seq, fragment)."""
        kind, seq = body[0], int.from_bytes(body[4:6], "big")
        msg = body[12:]
        version = int.from_bytes(msg[0:2], "big") if len(msg) >= 2 else None
        again = (direction, kind, seq) in self._cut_seen
        if len(self._cut_seen) < MAX_SAMPLES:
            self._cut_seen.add((direction, kind, seq))
        if kind == 1 and direction == "c2s":
            self.hello_total += 1
            sid_len = msg[34] if len(msg) > 34 else None
            if len(self.hellos) < MAX_SAMPLES:
                h = {"ts": ts, "frame": frame, "retransmission": again,
                     "session_id": bytes(msg[35:35 + (sid_len or 0)]).hex(), "version": version or 0,
                     "cookie": False, "cut": True}
                if sid_len is not None:
                    h["session_id_length"] = sid_len
                self.hellos.append(h)
        elif kind == 3 and direction == "s2c":
            if len(self.hello_verify) < MAX_SAMPLES:
                self.hello_verify.append({"ts": ts, "frame": frame, "cookie_length": msg[2] if len(msg) > 2 else 0})
        elif kind == 2 and direction == "s2c" and self.server_hello is None:
            if len(self.server_hellos) < MAX_SAMPLES:
                self.server_hellos.append((ts, frame))
            sid_len = msg[34] if len(msg) > 34 else 0
            at = 35 + sid_len
            suite = int.from_bytes(msg[at:at + 2], "big") if len(msg) >= at + 2 else None
            self.server_hello = {"ts": ts, "frame": frame, "session_id": bytes(msg[35:at]).hex(),
                                 "cipher_suite": suite, "version": version or 0}
            self.version = version
            self.cipher_suite = suite

    def on_datagram(self, direction: str, data: bytes, ts: float, frame: int) -> None:
        self.note_datagram(direction, len(data), ts, frame)
        for ev in self.dtls.feed(direction, data, ts, frame):
            self._on_event(ev)

    def note_datagram(self, direction: str, size: int, ts: float, frame: int) -> None:
        """A datagram of ``size`` bytes."""
        self.last_ts = ts
        self.last_frame = frame
        self.datagrams[direction] += 1
        self.bytes[direction] += size

    def on_lane_datagram(self, where: tuple, data, view: tuple, ts: float, frame: int) -> bool:
        """The fast lane of ``direction`` of UDP ``flow`` (in FlowTable ``flows``; ``where``: the three, see
        analyzer/dtlslane.py): ``data`` a raw frame of it, ``view`` its `dissectors.packet.plain_ipv4` view.
        Takes the datagram when the DTLS layer's common case does (`DTLSConnection.feed_application_record`: one
        application-data record of an epoch one handshake protects, and it decrypts; else False: nothing changed,
        the frame takes the general path), then does what the general path leaves behind, which cannot fail:
        `FlowTable.touch`, `note_datagram`, `on_application_data`."""
        flows, flow, direction, side = where
        _proto, _addresses, start, end = view
        content = self.dtls.feed_application_record(direction, data, start, end, ts)
        if content is None:
            return False
        flows.touch(flow, ts, frame, side)
        self.last_ts = ts  # note_datagram, without the call: the bulk
        self.last_frame = frame
        self.datagrams[direction] += 1
        self.bytes[direction] += end - start
        if content and content[0] == _CSTP_DATA and self.established_ts is not None:
            # on_application_data of a DATA packet, without the call: the bulk (the inner packet is content[1:],
            # given as an offset: no copy)
            self.channel.data(direction, ts, frame, content, 1, self.mtu, self.host.inner_packet, "dtls")
        else:
            self.on_application_data(direction, content, ts, frame)
        return True

    def on_keyless_lane_datagram(self, where: tuple, data, view: tuple, ts: float, frame: int) -> bool:
        """The fast lane of a flow without keys (analyzer/dtlslane.py): takes the datagram when the DTLS layer's
        common case for it does (`DTLSConnection.feed_undecryptable_record`: one application-data record it can
        only count and report undecrypted), then does what the general path does with that report: `FlowTable.touch`,
        `note_datagram`, the undecrypted counts and the channel's estimate by record size (analyzer/keyless.py)."""
        flows, flow, direction, side = where
        _proto, _addresses, start, end = view
        got = self.dtls.feed_undecryptable_record(direction, data, start, end, ts)
        if got is None:
            return False
        epoch, length, reason = got
        flows.touch(flow, ts, frame, side)
        self.last_ts = ts  # note_datagram, without the call
        self.last_frame = frame
        self.datagrams[direction] += 1
        self.bytes[direction] += end - start
        self._undecrypted(direction, reason, epoch, _APPLICATION_DATA, length, ts, frame)
        return True

    def on_application_data(self, direction: str, data: bytes, ts: float, frame: int) -> None:
        """The content of a decrypted application-data record: one packet of the channel (type byte, payload)."""
        if self.established_ts is None:
            self.established_ts = ts
            self.established_frame = frame
        if data:
            ftype = data[0]
            payload = data[1:]
            if ftype == _CSTP_DATA:
                self.channel.data(direction, ts, frame, payload, 0, self.mtu, self.host.inner_packet, "dtls")
            else:
                self.channel.add(direction, ftype, len(payload), ts, frame, None, self.mtu, payload,
                                 self.host.inner_packet, "dtls")

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
            self.on_application_data(ev.direction, ev.data, ev.ts, ev.frame)
            return
        if t is dtls_ev.DTLSClientHello:
            self.hello_total += 1
            if self.session_id is None and ev.session_id:
                self.session_id = bytes(ev.session_id)
                self.host.on_dtls_hello(self)
            if len(self.hellos) < MAX_SAMPLES:
                self.hellos.append({"ts": ev.ts, "frame": ev.frame, "retransmission": bool(ev.retransmission),
                                    "session_id": bytes(ev.session_id).hex(), "version": ev.version,
                                    "cookie": bool(ev.cookie), "record_seq": ev.seq})
        elif t is dtls_ev.DTLSDuplicate:
            self.duplicates += 1  # a copy the capture made: counted, not read again
        elif t is dtls_ev.DTLSHelloVerifyRequest:
            if len(self.hello_verify) < MAX_SAMPLES:
                self.hello_verify.append({"ts": ev.ts, "frame": ev.frame, "cookie_length": len(ev.cookie)})
        elif t is dtls_ev.DTLSServerHello:
            if len(self.server_hellos) < MAX_SAMPLES:
                self.server_hellos.append((ev.ts, ev.frame))
            if self.server_hello is None:
                self.server_hello = {"ts": ev.ts, "frame": ev.frame, "session_id": bytes(ev.session_id).hex(),
                                     "cipher_suite": ev.cipher_suite, "version": ev.version}
            self.version = ev.version
            self.cipher_suite = ev.cipher_suite
            self.etm = any(t == EXT_ENCRYPT_THEN_MAC for t, _ in ev.extensions or ())
        elif t is dtls_ev.DTLSFinished:
            self._finished(ev.direction, ev.ts, ev.frame)
            if not ev.retransmission and ev.direction not in self.finished_verified:
                self.finished_verified[ev.direction] = ev.verified
        elif t is dtls_ev.DTLSAlert:
            if len(self.alerts) < MAX_PROBLEMS:
                self.alerts.append({"direction": ev.direction, "level": ev.level, "description": ev.description,
                                    "name": ev.name, "encrypted": ev.encrypted, "ts": ev.ts, "frame": ev.frame})
        elif t is dtls_ev.DTLSUndecrypted:
            self._undecrypted(ev.direction, ev.reason, ev.epoch, ev.content_type, ev.length, ev.ts, ev.frame)
        elif t is dtls_ev.DTLSRecordError:
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append({"message": ev.message, "ts": ev.ts, "frame": ev.frame})

    def _finished(self, direction: str, ts: float, frame: int) -> None:
        got = self.finished_records.setdefault(direction, [])
        if len(got) < MAX_FINISHED:
            got.append((ts, frame))

    def _undecrypted(self, direction: str, reason: str, epoch: int, content_type: int, length: int, ts: float,
                     frame: int) -> None:
        """A record not decrypted (a DTLSUndecrypted event, or the keyless lane's): counted; a protected one marks
        where the handshake ended or the data began, and an application-data record's size feeds the estimate."""
        self.undecrypted += 1
        self.undecrypted_reason = reason
        if direction in self.undecrypted_records:
            self.undecrypted_records[direction] += 1
        if epoch >= 1:
            if content_type == 22:
                self._finished(direction, ts, frame)
                if reason.endswith(WRONG_KEYS) and direction not in self.finished_verified:
                    # the Finished fails authentication with the keys derived for this flow: it does not verify
                    self.finished_verified[direction] = False
                if self.estimate is not None:  # a rekey's handshake: the MTU probes that follow it are probes
                    self.estimate.rehandshake()
            if content_type == 22 and direction not in self.first_protected_handshake:
                self.first_protected_handshake[direction] = (ts, frame)
            elif content_type == _APPLICATION_DATA:
                if self.first_protected_data is None:
                    self.first_protected_data = (ts, frame)
                est = self.estimate or self._start_estimate()
                if est is not None and direction in est.dirs:
                    est.add(direction, length, ts, frame)
                elif est is None and direction in ("c2s", "s2c") and (self.up_before_capture or self.snapped):
                    # no ServerHello names the suite: before the capture, or cut by it
                    self._guess(direction, length, ts, frame)

    def _start_estimate(self):
        """The record-size estimate of the channel (analyzer/keyless.py), once the cipher suite is known."""
        suite, version = (self.cipher_suite, self.version) if self.cipher_suite is not None else \
            self.estimate_suite or (None, None)
        if suite is None:
            return None
        prot = protection(cipher_suite_name(suite), version, dtls=True, etm=self.etm)
        if prot is not None:
            self.estimate = TunnelEstimate(DTLS_TYPE_BYTE, prot)
        return self.estimate

    def _guess(self, direction: str | None, length: int, ts: float, frame: int) -> None:
        """A flow seen only mid-tunnel whose suite nothing names: its first application-data records (up to
        `MAX_SAMPLES` per direction) are kept and, every `GUESS_EVERY` of them and at the end (``direction``
        None), the protection they fit is tried (`keyless.guess_protection`); found, the estimate starts with them
        and takes the later ones. Not found when the samples are full: no estimate (the flow keeps its counts)."""
        sizes = self._guess_sizes
        if direction is not None:
            if sizes is None:
                if self.guess_pattern is not None:  # guessed, or given up
                    return
                sizes = self._guess_sizes = {"c2s": [], "s2c": []}
            sizes[direction].append((ts, length, frame))
            full = len(sizes[direction]) >= MAX_SAMPLES
            if (len(sizes["c2s"]) + len(sizes["s2c"])) % GUESS_EVERY and not full:
                return
        elif sizes is None:
            return
        else:
            full = True
        known = any(h.get("session_id_length") == 32 or h.get("version") == 0x0100 for h in self.hellos[:4])
        guess = guess_protection(sizes, DTLS_GUESS_CANDIDATES, DTLS_TYPE_BYTE, known)
        if guess is None:
            if full:
                self._guess_sizes, self.guess_pattern = None, ()  # given up: no estimate
            return
        self.guessed_protection, prot = guess
        self.guess_pattern = control_records(sizes, prot.record_length(DTLS_TYPE_BYTE))
        self.estimate = TunnelEstimate.from_sizes(DTLS_TYPE_BYTE, prot, sizes)
        self._guess_sizes = None

    @property
    def before_capture(self) -> bool:
        """The handshake began before the capture: no hello, the first record a ChangeCipherSpec or protected."""
        fr = self.first_record
        return not self.hellos and self.server_hello is None and bool(fr) and (
            fr.get("content_type") == 20 or (fr.get("epoch") or 0) >= 1)

    @property
    def up_before_capture(self) -> bool:
        """Seen only mid-tunnel: the first record was already protected application data."""
        fr = self.first_record
        return self.before_capture and fr.get("content_type") == 23

    def finish(self, until: float | None = None) -> None:
        """The flow's end; ``until``: when the capture ends (its last frame)."""
        if self.estimate is None and self._guess_sizes is not None:
            self._guess(None, 0, 0.0, 0)
        if self.estimate is not None:
            self.estimate.finish(until)
        self.full_handshake = bool(self.dtls.full_handshake)
        self.sequence_gaps = self.dtls.sequence_gaps()
        if self.established_ts is None and not self.up_before_capture:
            # Without keys the handshake ends with the Finished messages (protected handshake records of epoch 1
            # from both sides), or at the latest with the first protected application data.
            fin = self.first_protected_handshake
            cands = []
            if "c2s" in fin and "s2c" in fin:
                cands.append(max(fin["c2s"], fin["s2c"]))
            if self.first_protected_data is not None:
                cands.append(self.first_protected_data)
            if cands:
                self.established_ts, self.established_frame = min(cands)
                self.established_keyless = True

