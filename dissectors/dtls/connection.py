"""Sans-I/O DTLS dissector for the VPN's UDP channel (one instance per UDP 5-tuple).

``DTLSConnection(keys).feed(direction, datagram, ts, frame) -> list[event]`` frames the records of a
datagram (:mod:`.record`), reassembles handshake messages (:mod:`.handshake`), follows the handshake
(ClientHello / HelloVerifyRequest / ServerHello / … / ChangeCipherSpec / Finished), derives the record
keys from :class:`~dissectors.dtls.keys.DTLSKeys` and decrypts the protected records.

Key derivation (facts: RFC 5246 §6.3, §8.1, RFC 4279 §2, RFC 7627 §4, RFC 6347 §4.1.2.1):

* legacy (abbreviated resumption): master secret = X-DTLS-Master-Secret when the server echoes the
  client's session id; key block = PRF(master, "key expansion", server_random + client_random) with the
  TLS 1.0 PRF (MD5 ⊕ SHA-1) for 0x0100 / DTLS 1.0 and the suite's PRF hash for DTLS 1.2.
* PSK: premaster = uint16(N) 0^N uint16(N) psk; master = PRF(premaster, "master secret",
  client_random + server_random), or the RFC 7627 extended master secret (session hash over the
  transcript up to and including ClientKeyExchange) when both hellos carry extended_master_secret.
* Records: MAC / AEAD additional data use epoch(2) || sequence(6) as the 64-bit sequence number;
  AES-GCM/CCM nonce = 4-byte salt || 8-byte explicit nonce; ChaCha20-Poly1305 nonce = IV XOR
  (epoch || sequence); CBC carries an explicit IV in every record (all DTLS versions).

The record protections themselves come from :mod:`dissectors.tls.ciphers` / :mod:`dissectors.tls.keyschedule`.

Records that cannot be decrypted when they arrive (no keys yet, handshake not seen yet, wrong keys) are
reported as :class:`DTLSUndecrypted` and kept in a bounded backlog; :meth:`DTLSConnection.set_keys`
(or a handshake message that arrives late) decrypts the backlog and returns the resulting events.

A new ClientHello at epoch 0 with a new client random starts a new handshake state (a reconnect on the
same 5-tuple); records of the previous session are still decrypted with its keys when they arrive late.
"""

from __future__ import annotations

from collections import deque

from dissectors.flows import DUPLICATE_WINDOW  # (seconds: a copy the capture made comes this soon)
from dissectors.tls import keyschedule as ks
from dissectors.tls.ciphers import CipherSuite, DecryptError, suite_info, tls12_protections
from dissectors.tls.names import alert_name, handshake_name

from . import handshake as hs_mod
from .events import (
    EXT_ENCRYPT_THEN_MAC,
    EXT_EXTENDED_MASTER_SECRET,
    DTLSAlert,
    DTLSApplicationData,
    DTLSChangeCipherSpec,
    DTLSClientHello,
    DTLSDuplicate,
    DTLSFinished,
    DTLSHandshakeMessage,
    DTLSHelloVerifyRequest,
    DTLSRecordError,
    DTLSServerHello,
    DTLSUndecrypted,
)
from .handshake import HandshakeParseError, Message, Reassembler
from .keys import DTLSKeys
from .record import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    CT_HEARTBEAT,
    DTLS_BAD_VER,
    HEADER_LEN,
    KNOWN_VERSIONS,
    MAX_FRAGMENT,
    RECORD_HEADER_SEQ64,
    RawRecord,
    split_datagram,
)

__all__ = ["DTLSConnection"]

#: ends a `DTLSUndecrypted.reason` when the record failed authentication with keys that never decrypted a record of
#: the handshake: keys derived for another session, most likely
WRONG_KEYS = "(wrong keys?)"
_WINDOW = 64  # records: the duplicate window (RFC 6347 §4.1.2.6's anti-replay window, its usual size)
MAX_GAPS = 50  # runs of skipped record numbers kept per direction (`sequence_gaps`; all are counted)

C2S = "c2s"
S2C = "s2c"
_DIRECTIONS = (C2S, S2C)

MAX_TRANSCRIPT_SLOTS = 64
MAX_TRANSCRIPT_BYTES = 512 * 1024
MAX_HANDSHAKES = 8  # handshake states remembered per 5-tuple (reconnects / renegotiations)
MAX_BODY_IN_EVENT = 64 * 1024
_DELIVERED_MAX = 256


def hash_input(version: int, items: list[tuple[int, int, bytes]]) -> bytes:
    """The bytes hashed for Finished / the extended master secret from the transcript messages
    (msg_type, message_seq, body).

    * DTLS 1.0 / 1.2 (RFC 6347 §4.2.6): each message with its 12-byte DTLS handshake header as if sent in
      one fragment; the ClientHello(s) before a HelloVerifyRequest and the HelloVerifyRequest itself are
      left out.
    * Cisco's pre-standard 0x0100 (as GnuTLS implements "DTLS 0.9", checked on a real capture): message
      bodies only, without any handshake header, HelloVerifyRequest included.
    """
    if version == DTLS_BAD_VER:
        return b"".join(body for _t, _s, body in items)
    start = 0
    for i, (t, _s, _b) in enumerate(items):
        if t == hs_mod.HELLO_VERIFY_REQUEST:
            start = i + 1
    return b"".join(hs_mod.transcript_bytes(t, s, b) for t, s, b in items[start:])


class _Slot:
    """One position in the handshake transcript: the messages of one record, or None while the record
    that holds them is still encrypted (filled in when it is decrypted from the backlog)."""

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[int, int, bytes]] | None) -> None:
        self.items = items  # (msg_type, message_seq, body)


class _Handshake:
    """State of one DTLS handshake and the keys it establishes (for epoch ``epoch + 1``)."""

    __slots__ = (
        "ccs",
        "cke_slot",
        "client_ems",
        "client_etm",
        "client_hellos",
        "client_random",
        "client_session_id",
        "delivered",
        "epoch",
        "fail",
        "finished",
        "finished_verified",
        "full_handshake",
        "hvr_seen",
        "key_error",
        "keys_used",
        "master",
        "ok",
        "protections",
        "psk_identity",
        "reasm",
        "resumed",
        "serial",
        "server_ems",
        "server_etm",
        "server_random",
        "server_session_id",
        "suite",
        "transcript",
        "transcript_bytes",
        "transcript_overflow",
        "version",
    )

    def __init__(self, epoch: int, serial: int) -> None:
        self.epoch = epoch
        self.serial = serial
        self.client_random: bytes | None = None
        self.server_random: bytes | None = None
        self.client_session_id = b""
        self.server_session_id: bytes | None = None
        self.version: int | None = None
        self.suite: CipherSuite | None = None
        self.resumed: bool | None = None
        self.full_handshake = False
        self.client_ems = self.server_ems = False
        self.client_etm = self.server_etm = False
        self.psk_identity: bytes | None = None
        self.transcript: list[_Slot] = []
        self.transcript_bytes = 0
        self.transcript_overflow = False
        self.delivered: dict[tuple[str, int, int], bytes] = {}
        self.client_hellos: set[tuple[int, bytes]] = set()
        self.reasm = {C2S: Reassembler(), S2C: Reassembler()}
        self.ccs = {C2S: False, S2C: False}
        self.finished = {C2S: False, S2C: False}
        self.finished_verified: dict[str, bool | None] = {C2S: None, S2C: None}
        self.hvr_seen = False
        self.cke_slot: int | None = None
        self.master: bytes | None = None
        self.keys_used: DTLSKeys | None = None
        self.protections = None  # (client_write, server_write)
        self.key_error = "no keys"
        self.ok = 0
        self.fail = 0

    @property
    def complete(self) -> bool:
        return self.finished[C2S] and self.finished[S2C]

    # --- transcript ---------------------------------------------------------------------------

    def new_slot(self, items: list[tuple[int, int, bytes]] | None) -> _Slot | None:
        if len(self.transcript) >= MAX_TRANSCRIPT_SLOTS:
            self.transcript_overflow = True
            return None
        slot = _Slot(items)
        self.transcript.append(slot)
        return slot

    def add_to_slot(self, slot: _Slot | None, item: tuple[int, int, bytes]) -> None:
        if self.transcript_bytes + len(item[2]) > MAX_TRANSCRIPT_BYTES:
            self.transcript_overflow = True
            return
        if slot is None:
            slot = self.new_slot([])
            if slot is None:
                return
        if slot.items is None:
            slot.items = []
        slot.items.append(item)
        self.transcript_bytes += len(item[2])

    def transcript_before(self, slot: _Slot | None, include: bool = False) -> bytes | None:
        """The handshake hash input before ``slot`` (or through it when ``include``; everything when
        ``slot`` is None); None when a preceding record is still encrypted or the transcript overflowed."""
        if self.transcript_overflow or self.version is None:
            return None
        items: list[tuple[int, int, bytes]] = []
        for s in self.transcript:
            if s is slot and not include:
                break
            if s.items is None:
                return None
            items += s.items
            if s is slot:
                break
        else:
            if slot is not None:
                return None
        return hash_input(self.version, items)


class _Pending:
    """A record waiting in the backlog for keys."""

    __slots__ = ("direction", "frame", "owner", "record", "slot", "ts")

    def __init__(self, direction: str, record: RawRecord, ts: float, frame: int, slot: _Slot | None,
                 owner: _Handshake | None) -> None:
        self.direction = direction
        self.record = record
        self.ts = ts
        self.frame = frame
        self.slot = slot
        self.owner = owner


def _no_handshake(epoch: int) -> str:
    """Why a record of a protected ``epoch`` no handshake seen owns is not decrypted."""
    return (f"no handshake seen for epoch {epoch} (capture started after it?)" if epoch == 1
            else f"no handshake seen for epoch {epoch}")


class DTLSConnection:
    """DTLS over one UDP 5-tuple.  ``direction``: "c2s" (client -> gateway) or "s2c"."""

    def __init__(self, keys: DTLSKeys | None = None, max_backlog: int = 2000,
                 max_backlog_bytes: int | None = None) -> None:
        """``max_backlog`` records wait for keys at most (the oldest dropped first); with ``max_backlog_bytes``,
        application-data records also stop joining the backlog once their fragments would pass that many bytes
        (the first ones, with the handshake's, are those kept: a flow whose keys never come holds no more)."""
        self._keys = keys
        self._max_backlog_bytes = max_backlog_bytes
        self._backlog_bytes = 0  # fragment bytes of the application-data records in the backlog
        self._handshakes: list[_Handshake] = []  # oldest first, bounded
        self._hs: _Handshake | None = None  # the latest handshake
        self._epochs: dict[int, list[_Handshake]] = {}  # epoch -> handshakes whose keys protect it
        self._backlog: deque[_Pending] = deque(maxlen=max_backlog)
        self._serial = 0
        self._replay_wanted = False
        self._orphan: dict[str, Reassembler] | None = None
        self.backlog_dropped = 0
        self.datagrams = 0
        self.records = 0
        self.duplicates = 0  # records seen again (`DTLSDuplicate`)
        #: per direction [highest epoch||seq taken, first of the run of numbers in sequence up to it, when the last
        #: record was taken, numbers taken before the run (out of order, or before a jump; bounded)]: RFC 6347
        #: §4.1.2.6's window, kept so that the common case — the next record in sequence — updates two items
        self._window: dict[str, list] = {}
        #: per direction, the record numbers missing from what was taken (`sequence_gaps`): [first number of the
        #: epoch's run, numbers spanned by earlier epochs, numbers skipped by jumps, skipped numbers that came late,
        #: jumps, the first MAX_GAPS jumps as (time before, time after, numbers skipped, frame after)]; kept off the
        #: fast lanes' path (only a record out of sequence comes here)
        self._gaps: dict[str, list] = {}
        #: (direction, epoch-0 record number) -> (when last taken, (content type, hash of the fragment))
        self._plain: dict[tuple, tuple] = {}
        self.gen = 0  # bumped by feed / set_keys: `feed_application_record` relies on state checked at the same gen
        self._steady: tuple | None = None  # (gen, epoch, owner, {direction: protection}): see `_steady_for`

    # --- public state -------------------------------------------------------------------------

    @property
    def keys(self) -> DTLSKeys | None:
        return self._keys

    @property
    def handshake_complete(self) -> bool:
        """Both sides sent ChangeCipherSpec + Finished in the latest handshake (decrypted or not)."""
        return self._hs is not None and self._hs.complete

    @property
    def established(self) -> bool:
        """Some handshake on this 5-tuple completed."""
        return any(h.complete for h in self._handshakes)

    @property
    def version(self) -> int | None:
        """The negotiated (ServerHello) version of the latest handshake."""
        return self._hs.version if self._hs else None

    @property
    def cipher_suite(self) -> int | None:
        return self._hs.suite.id if self._hs and self._hs.suite else None

    @property
    def cipher_suite_name(self) -> str | None:
        return self._hs.suite.name if self._hs and self._hs.suite else None

    @property
    def resumed(self) -> bool | None:
        """Abbreviated handshake (the server echoed the client's session id); None before ServerHello."""
        return self._hs.resumed if self._hs else None

    @property
    def full_handshake(self) -> bool:
        """The server sent Certificate / CertificateRequest / a non-PSK ServerKeyExchange instead of
        resuming: openconnect treats this as a possible MITM and disables DTLS."""
        return bool(self._hs and self._hs.full_handshake)

    @property
    def extended_master_secret(self) -> bool:
        return bool(self._hs and self._hs.client_ems and self._hs.server_ems)

    @property
    def encrypt_then_mac(self) -> bool:
        return bool(self._hs and self._hs.client_etm and self._hs.server_etm)

    @property
    def psk_identity(self) -> bytes | None:
        return self._hs.psk_identity if self._hs else None

    @property
    def client_random(self) -> bytes | None:
        return self._hs.client_random if self._hs else None

    @property
    def server_random(self) -> bytes | None:
        return self._hs.server_random if self._hs else None

    @property
    def session_id(self) -> bytes | None:
        """The session id the client offered in the latest handshake."""
        return self._hs.client_session_id if self._hs else None

    @property
    def master_secret(self) -> bytes | None:
        """The latest handshake's master secret once derived (a secret: never report it unredacted)."""
        return self._hs.master if self._hs else None

    def master_secrets(self) -> list[tuple[bytes, bytes]]:
        """(client random, master secret) of every remembered handshake whose master secret is known, oldest first
        (secrets: for a key log the user asked for, never for a report)."""
        return [(h.client_random, h.master) for h in self._handshakes
                if h.client_random and h.master and (h.ok or not h.fail)]

    @property
    def keys_available(self) -> bool:
        """Record keys of the latest handshake are derived."""
        return bool(self._hs and self._hs.protections)

    @property
    def key_error(self) -> str | None:
        """Why the latest handshake's record keys are not available (None when they are)."""
        if self._hs is None:
            return "no handshake seen"
        return None if self._hs.protections else self._hs.key_error

    @property
    def finished_verified(self) -> dict[str, bool | None]:
        return dict(self._hs.finished_verified) if self._hs else {C2S: None, S2C: None}

    @property
    def handshake_count(self) -> int:
        return self._serial

    @property
    def backlog_size(self) -> int:
        return len(self._backlog)

    # --- input --------------------------------------------------------------------------------

    def feed(self, direction: str, datagram: bytes, ts: float, frame: int) -> list:
        """Process one UDP payload; returns the events (never raises for any input bytes)."""
        self.gen += 1
        try:
            if direction not in _DIRECTIONS:
                return [DTLSRecordError(f"bad direction {direction!r}", ts, frame, str(direction))]
            return self._feed(direction, bytes(datagram), ts, frame)
        except Exception as exc:  # noqa: BLE001 - last resort: errors in the input become events
            return [DTLSRecordError(f"internal error while parsing a datagram: {exc!r}", ts, frame,
                                    direction if isinstance(direction, str) else "")]

    def feed_application_record(self, direction: str, data, start: int = 0, end: int | None = None,
                                ts: float = 0.0) -> bytes | None:
        """`feed` for the common case of an established session: the datagram ``data[start:end]`` is exactly one
        application-data record, of an epoch that one handshake's keys protect, and it decrypts (nothing waits
        for keys). Does what `feed` does and returns the record's content (the data of the one
        DTLSApplicationData event `feed` would return) without making events. None for anything else, having
        changed nothing: `feed` the datagram."""
        if end is None:
            end = len(data)
        n = end - start - HEADER_LEN
        if n < 0:
            return None
        ct, version, seq64, length = RECORD_HEADER_SEQ64.unpack_from(data, start)
        if ct != CT_APPLICATION_DATA or length != n or length > MAX_FRAGMENT or version not in KNOWN_VERSIONS:
            return None
        epoch = seq64 >> 48
        steady = self._steady
        if steady is None or steady[0] != self.gen or steady[1] != epoch:
            steady = self._steady_for(epoch)
            if steady is None:
                return None
        protection = steady[3].get(direction)
        if protection is None:
            return None
        w = self._window.get(direction)
        if w is None or seq64 != w[0] + 1:  # not the next record in sequence: `feed` tells a duplicate
            return None
        try:  # the fragment is data[start + HEADER_LEN:end], given as offsets: the protection copies less
            content = protection.decrypt(seq64, ct, version, data, start + HEADER_LEN, end)
        except DecryptError:
            return None
        w[0] = seq64  # `_take_record`, for the common case: the run of records in sequence goes on
        w[2] = ts
        self.datagrams += 1
        self.records += 1
        steady[2].ok += 1
        return content

    def feed_undecryptable_record(self, direction: str, data, start: int = 0,
                                  end: int | None = None, ts: float = 0.0) -> tuple[int, int, str] | None:
        """`feed` for the common case of a flow without keys: the datagram ``data[start:end]`` is exactly one
        application-data record of a protected epoch whose handshakes have no keys (or that no handshake seen
        owns), nothing is waiting to be replayed, and the backlog has no room left for it (``max_backlog_bytes``):
        all `feed` would do is count it and report it undecrypted. Does that and returns ``(epoch, length,
        reason)``, the DTLSUndecrypted event's, without making the event. None for anything else, having changed
        nothing: `feed` the datagram."""
        if end is None:
            end = len(data)
        n = end - start - HEADER_LEN
        limit = self._max_backlog_bytes
        if n < 0 or limit is None or self._replay_wanted or self._backlog_bytes + n <= limit:
            return None
        ct, version, seq64, length = RECORD_HEADER_SEQ64.unpack_from(data, start)
        if ct != CT_APPLICATION_DATA or length != n or length > MAX_FRAGMENT or version not in KNOWN_VERSIONS:
            return None
        epoch = seq64 >> 48
        if not epoch:
            return None
        w = self._window.get(direction)
        if w is None or seq64 != w[0] + 1:  # not the next record in sequence: `feed` tells a duplicate
            return None
        cands = self._epochs.get(epoch)
        if not cands:
            reason = _no_handshake(epoch)
        else:
            reason = None
            for h in cands:
                if h.protections is not None:
                    return None  # keys to try: the general path decrypts
                reason = reason or h.key_error
            reason = reason or "no keys"
        if not isinstance(direction, str) or direction not in _DIRECTIONS:
            return None
        w[0] = seq64  # `_take_record`, for the common case: the run of records in sequence goes on
        w[2] = ts
        self.gen += 1
        self.datagrams += 1
        self.records += 1
        self.backlog_dropped += 1
        return epoch, n, reason

    def _steady_for(self, epoch: int) -> tuple | None:
        """``(gen, epoch, owner, {direction: protection})`` when an application-data record of ``epoch`` takes the
        path `feed_application_record` mirrors (`_feed` → `_record` → `_decrypt` → `_plaintext`): a protected
        epoch that exactly one handshake owns, with its keys derived, and nothing waiting for keys (no backlog,
        no replay due). None otherwise. Remembered until `feed` or `set_keys` runs again."""
        if not epoch or self._backlog or self._replay_wanted:
            return None
        owners = self._epochs.get(epoch)
        if owners is None or len(owners) != 1 or owners[0].protections is None:
            return None
        h = owners[0]
        self._steady = (self.gen, epoch, h, {C2S: h.protections[0], S2C: h.protections[1]})
        return self._steady

    def set_keys(self, keys: DTLSKeys | None) -> list:
        """Install (new) keys; decrypts what it can of the backlog and returns those events.

        Handshakes whose keys were already derived and work keep them (so a later CONNECT's keys do not
        disturb an established session); the others are re-derived with ``keys``."""
        self.gen += 1
        try:
            self._keys = keys
            for h in self._handshakes:
                if h.ok == 0 and h.keys_used is not keys:
                    # never decrypted anything with the previous keys: derive again with these
                    h.master = None
                    h.protections = None
                    h.keys_used = None
                    self._derive(h)
            return self._replay()
        except Exception as exc:  # noqa: BLE001
            return [DTLSRecordError(f"internal error while installing keys: {exc!r}", 0.0, 0)]

    # --- records ------------------------------------------------------------------------------

    def take_cut_record(self, direction: str, content_type: int, version: int, seq64: int, kept: bytes,
                        ts: float) -> bool:
        """A record the capture cut short (its header and the first bytes ``kept`` of its fragment; the caller reads
        what they show): noted in the duplicate window like any record. False when it is a copy of one taken just
        before (counted in `duplicates`)."""
        rec = RawRecord(content_type, version, seq64 >> 48, seq64 & 0xFFFFFFFFFFFF, bytes(kept), 0)
        if self._is_duplicate(direction, seq64, ts, rec):
            self.duplicates += 1
            return False
        self._take_record(direction, seq64, ts, rec)
        return True

    def _is_duplicate(self, direction: str, seq64: int, ts: float, rec: RawRecord) -> bool:
        """The record ``seq64`` (epoch || sequence number) of ``direction`` was already taken, within
        `DUPLICATE_WINDOW` seconds of the last record taken from there: a copy the capture made, right after its
        original. (A sender gives each record a new number, retransmissions included, RFC 6347 §4.1; but a
        stateless server may answer every retransmitted ClientHello with a HelloVerifyRequest of the same number —
        before §4.2.1 asked it to copy the ClientHello's — seconds apart, and an implementation might resend a
        buffered flight as it was: those are read again.) An epoch-0 record must also be the same bytes."""
        if not seq64 >> 48:
            seen = self._plain.get((direction, seq64))
            return (seen is not None and abs(ts - seen[0]) <= DUPLICATE_WINDOW
                    and seen[1] == (rec.content_type, hash(rec.fragment)))
        w = self._window.get(direction)
        if w is None or seq64 > w[0] or abs(ts - w[2]) > DUPLICATE_WINDOW:
            return False
        return seq64 >= w[1] or seq64 in w[3]

    def _note_jump(self, direction: str, top: int, seq64: int, before: float, ts: float, frame: int | None) -> None:
        """Record ``seq64`` of ``direction`` came after ``top`` with numbers between: skipped (lost before the capture
        point, or still to come out of order) in the same epoch; a new epoch's numbering otherwise."""
        g = self._gaps.get(direction)
        if g is None:
            return
        if seq64 >> 48 != top >> 48:  # a new epoch numbers its records from 0: nothing skipped
            g[1] += top - g[0] + 1
            g[0] = seq64
            return
        skipped = seq64 - top - 1
        g[2] += skipped
        g[4] += 1
        if len(g[5]) < MAX_GAPS:
            g[5].append((before, ts, skipped, frame))

    def sequence_gaps(self) -> dict[str, dict]:
        """Per direction with protected records, the numbers its sender gave that the capture lacks: {"records": the
        numbers spanned (first to last taken, per epoch), "missing": of them never taken, "late": taken out of
        order after a later one, "gaps": how many runs of numbers were skipped, "first_gaps": the first MAX_GAPS as
        (time before, time after, numbers skipped, frame after)}. A DTLS sender numbers its records one by one in
        each epoch (RFC 6347 §4.1), retransmissions included: a number missing is a record that did not reach the
        capture point (lost on the way, or not captured)."""
        out = {}
        for direction, g in self._gaps.items():
            w = self._window.get(direction)
            if w is None:
                continue
            spanned = g[1] + w[0] - g[0] + 1
            out[direction] = {"records": spanned, "missing": max(0, g[2] - g[3]), "late": g[3], "gaps": g[4],
                              "first_gaps": list(g[5])}
        return out

    def _take_record(self, direction: str, seq64: int, ts: float, rec: RawRecord, frame: int | None = None) -> None:
        """Note record ``seq64`` of ``direction`` taken (in the window of the last `_WINDOW` records; an epoch-0 one
        with its time, for the first `_WINDOW` of them)."""
        if not seq64 >> 48:
            if len(self._plain) < _WINDOW or (direction, seq64) in self._plain:
                self._plain[(direction, seq64)] = (ts, (rec.content_type, hash(rec.fragment)))
            return
        w = self._window.get(direction)
        if w is None:
            self._window[direction] = [seq64, seq64, ts, set()]
            self._gaps[direction] = [seq64, 0, 0, 0, 0, []]
            return
        top, run, older = w[0], w[1], w[3]
        if seq64 == top + 1:
            w[0] = seq64
        elif seq64 > top:  # a jump (records lost, a new epoch): the run so far joins the older numbers
            self._note_jump(direction, top, seq64, w[2], ts, frame)
            older.update(range(max(run, top - _WINDOW + 1), top + 1))
            w[0] = w[1] = seq64
        else:
            g = self._gaps.get(direction)
            if g is not None and seq64 >> 48 == top >> 48:
                if seq64 < g[0]:  # before the first number taken in this epoch: the numbers between were skipped
                    g[2] += g[0] - seq64 - 1
                    g[0] = seq64
                elif seq64 < run and seq64 not in older:  # a skipped number, come late (reordered on the way)
                    g[3] += 1
            older.add(seq64)  # a record out of order
        if len(older) > 2 * _WINDOW:
            keep = w[1] - _WINDOW
            w[3] = {x for x in older if x >= keep}
        w[2] = ts

    def _feed(self, direction: str, datagram: bytes, ts: float, frame: int) -> list:
        self.datagrams += 1
        events: list = []
        records, error = split_datagram(datagram)
        for rec in records:
            self.records += 1
            events += self._record(direction, rec, ts, frame)
        if error:
            events.append(DTLSRecordError(error, ts, frame, direction))
        if self._replay_wanted:
            events += self._replay()
        return events

    def _record(self, direction: str, rec: RawRecord, ts: float, frame: int) -> list:
        seq64 = rec.seq64
        if self._is_duplicate(direction, seq64, ts, rec):
            self.duplicates += 1
            return [DTLSDuplicate(direction, rec.epoch, rec.seq, ts, frame)]
        self._take_record(direction, seq64, ts, rec, frame)
        if rec.epoch == 0:
            return self._plaintext(direction, rec, rec.fragment, ts, frame, None, None, encrypted=False)
        owner, plaintext, reason = self._decrypt(direction, rec)
        if plaintext is None:
            return self._undecrypted(direction, rec, ts, frame, reason)
        return self._plaintext(direction, rec, plaintext, ts, frame, owner, None, encrypted=True)

    def _decrypt(self, direction: str, rec: RawRecord):
        """(owner handshake, plaintext, None) or (owner or None, None, reason)."""
        cands = self._epochs.get(rec.epoch)
        if not cands:
            return None, None, _no_handshake(rec.epoch)
        reason = None
        for h in cands:
            if h.protections is None:
                reason = reason or h.key_error
                continue
            prot = h.protections[0 if direction == C2S else 1]
            try:
                pt = prot.decrypt(rec.seq64, rec.content_type, rec.version, rec.fragment)
            except DecryptError as exc:
                h.fail += 1
                reason = f"{exc} {WRONG_KEYS}" if h.ok == 0 else str(exc)
                continue
            h.ok += 1
            return h, pt, None
        return cands[0], None, reason or "no keys"

    def _undecrypted(self, direction: str, rec: RawRecord, ts: float, frame: int, reason: str) -> list:
        owner = self._owner(rec.epoch)
        slot = None
        if rec.content_type == CT_HANDSHAKE and owner is not None and not owner.complete:
            # most likely the Finished (the first protected handshake record after ChangeCipherSpec):
            # keep its place in the transcript until it can be decrypted
            slot = owner.new_slot(None)
            if owner.ccs[direction]:
                owner.finished[direction] = True
        limit = self._max_backlog_bytes
        if limit is not None and rec.content_type == CT_APPLICATION_DATA and \
                self._backlog_bytes + len(rec.fragment) > limit:
            self.backlog_dropped += 1  # no room left: reported, not kept
        else:
            if limit is not None and rec.content_type == CT_APPLICATION_DATA:
                self._backlog_bytes += len(rec.fragment)
            if len(self._backlog) == self._backlog.maxlen:
                self.backlog_dropped += 1
                dropped = self._backlog[0].record
                if limit is not None and dropped.content_type == CT_APPLICATION_DATA:
                    self._backlog_bytes -= len(dropped.fragment)
            self._backlog.append(_Pending(direction, rec, ts, frame, slot, owner))
        return [DTLSUndecrypted(direction, reason, rec.epoch, rec.seq, len(rec.fragment), rec.content_type,
                                ts, frame)]

    def _owner(self, epoch: int) -> _Handshake | None:
        cands = self._epochs.get(epoch)
        return cands[0] if cands else None

    def _replay(self) -> list:
        self._replay_wanted = False
        if not self._backlog:
            return []
        events: list = []
        keep: deque[_Pending] = deque(maxlen=self._backlog.maxlen)
        pending = list(self._backlog)
        self._backlog.clear()
        for p in pending:
            owner, pt, _reason = self._decrypt(p.direction, p.record)
            if pt is None:
                keep.append(p)
                continue
            events += self._plaintext(p.direction, p.record, pt, p.ts, p.frame, owner, p.slot, encrypted=True)
        # records that arrived while replaying (none: replay is synchronous) + the ones still waiting
        keep.extend(self._backlog)
        self._backlog = keep
        self._backlog_bytes = sum(len(p.record.fragment) for p in keep
                                  if p.record.content_type == CT_APPLICATION_DATA)
        if self._replay_wanted:  # a replayed handshake message made more keys available
            events += self._replay()
        return events

    def _plaintext(self, direction: str, rec: RawRecord, data: bytes, ts: float, frame: int,
                   owner: _Handshake | None, slot: _Slot | None, encrypted: bool) -> list:
        ct = rec.content_type
        if ct == CT_APPLICATION_DATA:
            if not encrypted:
                return [DTLSRecordError(f"unprotected application data at epoch 0 ({len(data)} bytes)", ts,
                                        frame, direction)]
            return [DTLSApplicationData(direction, data, rec.epoch, rec.seq, ts, frame)]
        if ct == CT_HANDSHAKE:
            return self._handshake_record(direction, rec, data, ts, frame, owner, slot)
        if ct == CT_CHANGE_CIPHER_SPEC:
            return self._ccs(direction, rec, data, ts, frame)
        if ct == CT_ALERT:
            if len(data) < 2 or len(data) % 2:
                return [DTLSRecordError(f"malformed alert ({len(data)} bytes)", ts, frame, direction)]
            return [DTLSAlert(direction, data[i], data[i + 1], alert_name(data[i + 1]), encrypted, rec.epoch,
                              rec.seq, ts, frame) for i in range(0, min(len(data), 16), 2)]
        if ct == CT_HEARTBEAT:
            return []
        return [DTLSRecordError(f"unexpected content type {ct}", ts, frame, direction)]

    def _ccs(self, direction: str, rec: RawRecord, data: bytes, ts: float, frame: int) -> list:
        message_seq = None
        if data == b"\x01":
            pass
        elif len(data) == 3 and data[0] == 1:
            # Cisco / OpenSSL pre-0.9.8f DTLS (0x0100): type byte + the handshake message_seq it consumes
            message_seq = int.from_bytes(data[1:3], "big")
        else:
            return [DTLSRecordError(f"malformed ChangeCipherSpec ({data[:8].hex()})", ts, frame, direction)]
        h = self._hs_for_ccs(rec.epoch)
        if h is not None:
            h.ccs[direction] = True
        return [DTLSChangeCipherSpec(direction, rec.epoch, rec.seq, ts, frame, message_seq)]

    def _hs_for_ccs(self, epoch: int) -> _Handshake | None:
        """The handshake a ChangeCipherSpec sent at ``epoch`` belongs to: the latest one running there."""
        for h in reversed(self._handshakes):
            if h.epoch == epoch:
                return h
        return None

    # --- handshake ----------------------------------------------------------------------------

    def _handshake_record(self, direction: str, rec: RawRecord, data: bytes, ts: float, frame: int,
                          owner: _Handshake | None, slot: _Slot | None) -> list:
        events: list = []
        frags, error = hs_mod.parse_fragments(data)
        for frag in frags:
            target = self._target(rec.epoch, frag.msg_type, owner)
            if frag.msg_type == hs_mod.CLIENT_HELLO and frag.message_seq <= 1:
                # a ClientHello may start a new handshake: it is handled by _client_hello
                if frag.offset == 0 and len(frag.body) == frag.length:
                    msg = Message(frag.msg_type, frag.message_seq, frag.body, (frame,))
                else:
                    reasm = target.reasm[direction] if target else self._orphan_reasm(direction)
                    msg = reasm.add(frag, frame)
            else:
                if target is None:
                    # no ClientHello seen (capture started mid-handshake): track a handshake anyway
                    target = self._new_handshake(rec.epoch)
                msg = target.reasm[direction].add(frag, frame)
            if isinstance(msg, str):
                events.append(DTLSRecordError(msg, ts, frame, direction))
            elif msg is not None:
                events += self._message(direction, rec, msg, ts, frame, target, slot)
        if error:
            if rec.epoch and not frags:
                error += " (decrypted handshake record)"
            events.append(DTLSRecordError(error, ts, frame, direction))
        return events

    def _orphan_reasm(self, direction: str) -> Reassembler:
        if self._orphan is None:
            self._orphan = {C2S: Reassembler(), S2C: Reassembler()}
        return self._orphan[direction]

    def _target(self, epoch: int, msg_type: int, owner: _Handshake | None) -> _Handshake | None:
        """The handshake a message at ``epoch`` belongs to.  A Finished at epoch e > 0 ends the handshake
        that ran at e - 1 (the one whose keys decrypted it); other messages belong to the latest handshake
        running at epoch e (initial handshake at 0, renegotiations later)."""
        if epoch > 0 and msg_type == hs_mod.FINISHED and owner is not None:
            return owner
        for h in reversed(self._handshakes):
            if h.epoch == epoch:
                return h
        return owner if msg_type == hs_mod.FINISHED else None

    def _new_handshake(self, epoch: int) -> _Handshake:
        self._serial += 1
        h = _Handshake(epoch, self._serial)
        h.keys_used = None
        self._handshakes.append(h)
        while len(self._handshakes) > MAX_HANDSHAKES:
            old = self._handshakes.pop(0)
            for lst in self._epochs.values():
                if old in lst:
                    lst.remove(old)
            for p in self._backlog:
                if p.owner is old:
                    p.owner = None
        self._epochs.setdefault(epoch + 1, []).insert(0, h)
        self._hs = h
        return h

    def _seen(self, h: _Handshake, direction: str, msg: Message) -> bool:
        key = (direction, msg.message_seq, msg.msg_type)
        if key in h.delivered:
            return True
        if len(h.delivered) < _DELIVERED_MAX:
            h.delivered[key] = msg.body[:64]
        return False

    def _record_transcript(self, h: _Handshake, msg: Message, slot: _Slot | None) -> _Slot | None:
        """Append ``msg`` to the transcript (into ``slot`` if the record had a placeholder); returns the
        slot used."""
        if slot is None or slot not in h.transcript:
            slot = h.new_slot([])
        h.add_to_slot(slot, (msg.msg_type, msg.message_seq, msg.body))
        return slot

    def _message(self, direction: str, rec: RawRecord, msg: Message, ts: float, frame: int,
                 target: _Handshake | None, slot: _Slot | None) -> list:
        t = msg.msg_type
        try:
            if t == hs_mod.CLIENT_HELLO:
                return self._client_hello(direction, rec, msg, ts, frame)
            if target is None:
                target = self._new_handshake(rec.epoch)
            h = target
            retrans = self._seen(h, direction, msg)
            if t == hs_mod.HELLO_VERIFY_REQUEST:
                return self._hello_verify(direction, rec, msg, ts, frame, h, retrans)
            if t == hs_mod.SERVER_HELLO:
                return self._server_hello(direction, rec, msg, ts, frame, h, retrans)
            if t == hs_mod.FINISHED:
                return self._finished(direction, rec, msg, ts, frame, h, retrans, slot)
            if t == hs_mod.HELLO_REQUEST:
                return [self._generic(direction, rec, msg, ts, frame, retrans)]
            if not retrans:
                used = self._record_transcript(h, msg, slot)
                if direction == S2C and t in (hs_mod.CERTIFICATE, hs_mod.CERTIFICATE_REQUEST):
                    h.full_handshake = True
                elif direction == S2C and t == hs_mod.SERVER_KEY_EXCHANGE:
                    if h.suite is None or "PSK" not in h.suite.kex:
                        h.full_handshake = True
                elif t == hs_mod.CLIENT_KEY_EXCHANGE and direction == C2S:
                    if h.suite is not None and "PSK" in h.suite.kex:
                        h.psk_identity = hs_mod.parse_psk_identity(msg.body)
                    h.cke_slot = h.transcript.index(used) if used in h.transcript else None
                    self._derive_and_flag(h)
            ev = self._generic(direction, rec, msg, ts, frame, retrans)
            if t == hs_mod.CLIENT_KEY_EXCHANGE and h.psk_identity is not None and not retrans:
                ev = DTLSHandshakeMessage(ev.direction, ev.msg_type, ev.name, ev.message_seq, ev.length, ev.body,
                                          ev.epoch, ev.seq, ev.retransmission, ev.ts, ev.frame, ev.frames,
                                          h.psk_identity)
            return [ev]
        except HandshakeParseError as exc:
            return [DTLSRecordError(f"malformed {handshake_name(t)}: {exc}", ts, frame, direction)]

    def _generic(self, direction: str, rec: RawRecord, msg: Message, ts: float, frame: int,
                 retrans: bool) -> DTLSHandshakeMessage:
        return DTLSHandshakeMessage(direction, msg.msg_type, handshake_name(msg.msg_type), msg.message_seq,
                                    len(msg.body), msg.body[:MAX_BODY_IN_EVENT], rec.epoch, rec.seq, retrans, ts,
                                    frame, msg.frames)

    def _client_hello(self, direction: str, rec: RawRecord, msg: Message, ts: float, frame: int) -> list:
        ch = hs_mod.parse_client_hello(msg.body)
        key = (msg.message_seq, msg.body)
        cur = None
        for h in reversed(self._handshakes):
            if h.epoch == rec.epoch and h.client_random == ch["random"]:
                cur = h
                break
        new_session = False
        retrans = False
        if cur is not None and key in cur.client_hellos:
            retrans = True
        elif cur is not None:
            # same client random, different body: the ClientHello repeated with the cookie
            cur.client_hellos.add(key)
            self._record_transcript(cur, msg, None)
            cur.client_session_id = ch["session_id"]
            self._note_client_exts(cur, ch["extensions"])
        else:
            h = self._hs if (self._hs is not None and self._hs.client_random is None
                             and self._hs.epoch == rec.epoch and not self._hs.transcript) else None
            if h is None:
                h = self._new_handshake(rec.epoch)
            new_session = True
            cur = h
            cur.client_random = ch["random"]
            cur.client_session_id = ch["session_id"]
            cur.client_hellos.add(key)
            self._note_client_exts(cur, ch["extensions"])
            self._record_transcript(cur, msg, None)
            self._derive(cur)
        return [DTLSClientHello(direction, ch["version"], rec.version, ch["random"], ch["session_id"], ch["cookie"],
                                ch["cipher_suites"], ch["compression_methods"], ch["extensions"], msg.message_seq,
                                rec.epoch, rec.seq, retrans, new_session, ts, frame, msg.frames)]

    @staticmethod
    def _note_client_exts(h: _Handshake, exts) -> None:
        types = {t for t, _ in exts}
        h.client_ems = EXT_EXTENDED_MASTER_SECRET in types
        h.client_etm = EXT_ENCRYPT_THEN_MAC in types

    def _hello_verify(self, direction: str, rec: RawRecord, msg: Message, ts: float, frame: int,
                      h: _Handshake, retrans: bool) -> list:
        hv = hs_mod.parse_hello_verify_request(msg.body)
        if not retrans:
            h.hvr_seen = True
            self._record_transcript(h, msg, None)  # hashed only for 0x0100, see hash_input()
        return [DTLSHelloVerifyRequest(direction, hv["version"], hv["cookie"], msg.message_seq, rec.epoch, rec.seq,
                                       retrans, ts, frame)]

    def _server_hello(self, direction: str, rec: RawRecord, msg: Message, ts: float, frame: int,
                      h: _Handshake, retrans: bool) -> list:
        sh = hs_mod.parse_server_hello(msg.body)
        sid = sh["session_id"]
        resumed = bool(sid) and sid == h.client_session_id
        if not retrans:
            h.server_random = sh["random"]
            h.server_session_id = sid
            h.version = sh["version"]
            h.suite = suite_info(sh["cipher_suite"])
            h.resumed = resumed
            types = {t for t, _ in sh["extensions"]}
            h.server_ems = EXT_EXTENDED_MASTER_SECRET in types
            h.server_etm = EXT_ENCRYPT_THEN_MAC in types
            self._record_transcript(h, msg, None)
            self._derive_and_flag(h)
        return [DTLSServerHello(direction, sh["version"], rec.version, sh["random"], sid, sh["cipher_suite"],
                                sh["compression_method"], sh["extensions"], resumed, msg.message_seq, rec.epoch,
                                rec.seq, retrans, ts, frame, msg.frames)]

    def _finished(self, direction: str, rec: RawRecord, msg: Message, ts: float, frame: int, h: _Handshake,
                  retrans: bool, slot: _Slot | None) -> list:
        verified = None
        if not retrans:
            h.finished[direction] = True
            if slot is not None and slot in h.transcript:
                prior = h.transcript_before(slot)
            else:
                prior = h.transcript_before(None, include=True)
                slot = None
            if prior is not None and h.master is not None and h.suite is not None and h.version is not None:
                label = b"client finished" if direction == C2S else b"server finished"
                digest = ks.session_hash(h.version, h.suite.prf_hash, prior)
                expect = ks.prf(h.version, h.suite.prf_hash, h.master, label, digest, len(msg.body) or 12)
                verified = expect == msg.body
            h.finished_verified[direction] = verified
            self._record_transcript(h, msg, slot)
        elif slot is not None and slot in h.transcript and slot.items is None:
            slot.items = []  # a retransmitted Finished adds nothing to the transcript
        return [DTLSFinished(direction, msg.body, verified, msg.message_seq, rec.epoch, rec.seq, retrans, ts, frame)]

    # --- keys ---------------------------------------------------------------------------------

    def _derive_and_flag(self, h: _Handshake) -> None:
        if self._derive(h) and self._backlog:
            self._replay_wanted = True

    def _derive(self, h: _Handshake) -> bool:
        """Derive the record keys of ``h`` if possible; True when they became available now."""
        if h.protections is not None:
            return False
        keys = self._keys
        if h.client_random is None or h.server_random is None or h.suite is None or h.version is None:
            h.key_error = "handshake incomplete (ClientHello/ServerHello not seen)"
            return False
        if not h.suite.supported:
            h.key_error = f"cipher suite {h.suite.name} cannot be decrypted"
            return False
        if keys is None:
            h.key_error = "no keys"
            return False
        master = h.master
        if master is None:
            master = keys.master_for(h.client_random)
        if master is None:
            if keys.is_keylog:
                h.key_error = "no key log entry for this handshake's client random"
                return False
            if keys.is_legacy:
                if not h.resumed:
                    h.key_error = ("the server did not resume the session (full handshake): "
                                   "the master secret is unknown")
                    return False
                master = keys.master_secret
            elif keys.is_psk:
                if h.suite.kex != "PSK":
                    h.key_error = f"PSK keys but the server chose {h.suite.name}"
                    return False
                premaster = ks.psk_premaster(keys.psk_secret)
                if h.client_ems and h.server_ems:
                    if h.cke_slot is None:
                        h.key_error = "extended master secret: waiting for ClientKeyExchange"
                        return False
                    msgs = h.transcript_before(h.transcript[h.cke_slot], include=True) \
                        if h.cke_slot < len(h.transcript) else None
                    if msgs is None:
                        h.key_error = "extended master secret: handshake transcript incomplete"
                        return False
                    session_hash = ks.session_hash(h.version, h.suite.prf_hash, msgs)
                    master = ks.extended_master_secret(h.version, h.suite.prf_hash, premaster, session_hash)
                else:
                    master = ks.master_secret(h.version, h.suite.prf_hash, premaster, h.client_random,
                                              h.server_random)
            else:
                h.key_error = f"unknown key mode {keys.mode!r}"
                return False
        etm = h.client_etm and h.server_etm and h.suite.kind == "cbc"
        try:
            h.protections = tls12_protections(h.suite, h.version, master, h.client_random, h.server_random, etm)
        except (ValueError, KeyError) as exc:
            h.key_error = f"cannot build record protection: {exc}"
            return False
        h.master = master
        h.keys_used = keys
        h.ok = h.fail = 0
        h.key_error = ""
        return True
