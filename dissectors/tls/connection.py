"""Sans-I/O TLS connection dissector with decryption.

``TLSConnection(keys, session_cache=None).feed(direction, data, ts, frame) -> list[event]`` where
``data`` is the next piece of one direction's reassembled TCP byte stream ("c2s" or "s2c").

Keys, in the order they are tried (TLS <= 1.2):
  1. key log ``CLIENT_RANDOM`` for the handshake's client random (also covers ticket resumption when the
     key log has the resumed handshake's client random);
  2. abbreviated handshake: the :class:`~dissectors.tls.session.SessionCache` (ticket, then session id),
     then key log ``RSA Session-ID:… Master-Key:…`` lines;
  3. full handshake: key log ``PMS_CLIENT_RANDOM``; for RSA key exchange a key log ``RSA`` line or the
     server's RSA private key (PKCS#1 v1.5 decryption of the ClientKeyExchange, RFC 5246 §7.4.7.1);
     then the (extended, RFC 7627) master secret computation.
TLS 1.3: the key log's ``*_HANDSHAKE_TRAFFIC_SECRET`` / ``*_TRAFFIC_SECRET_0`` (/``CLIENT_EARLY_TRAFFIC_SECRET``)
lines; KeyUpdate derives the next generation (RFC 8446 §7.2).

Lost bytes (:meth:`TLSConnection.gap`): the record layer rescans for a plausible header; on an
encrypted direction a candidate is accepted only when it decrypts, trying sequence numbers in this order:
  * TLS 1.2 GCM/CCM: the explicit nonce minus the (explicit nonce - sequence number) offset seen on the
    last good record (OpenSSL, GnuTLS and NSS send the sequence number as explicit nonce, offset 0);
  * then an estimate: next expected seq + (stream bytes skipped / mean record size on the wire), moving
    outwards, bounded by the fewest/most records that fit in the skipped bytes (when the gap size is known)
    and by ``gap_search`` attempts.
If nothing validates within 2 maximal records' worth of scanned bytes, the direction falls back to
plausible-header framing: TLS 1.2 CBC and GCM then deliver data decrypted *without* integrity check
(CBC: explicit IV; GCM: AES-CTR) and say so in a DecryptionStatus; ChaCha20 and TLS 1.3 (nonce depends
on the sequence number) keep trying a window around the estimate on each record.

Nothing raises to the caller: malformed input becomes RecordError / DecryptionStatus events.
"""

from __future__ import annotations

import zlib

from .._fastevent import fast_constructor
from ..keylog import CLIENT_RANDOM, KeyStore
from . import keyschedule as ks
from .ciphers import DecryptError, TLS13Protection, suite_info, tls12_protections
from .events import (
    Alert,
    ApplicationData,
    ChangeCipherSpec,
    ClientHello,
    DecryptionStatus,
    EncryptedRecord,
    HandshakeMessage,
    OtherRecord,
    RecordError,
    ServerHello,
)
from .handshake import (
    HandshakeReassembler,
    ParseError,
    parse_certificate,
    parse_certificate_request,
    parse_client_hello,
    parse_encrypted_extensions,
    parse_key_update,
    parse_new_session_ticket,
    parse_server_hello,
    parse_server_key_exchange,
    rsa_encrypted_premaster,
)
from .names import alert_name, handshake_name, version_name
from .record import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    HEADER_LEN,
    MAX_CIPHERTEXT,
    Record,
    RecordReader,
)
from .session import SessionCache

__all__ = ["C2S", "S2C", "KeyWait", "TLSConnection"]


_new_app_data = fast_constructor(ApplicationData)  # per-record events without frozen-dataclass stores

C2S = "c2s"
S2C = "s2c"

_TLS13_LABELS = {
    C2S: ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_"),
    S2C: ("SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_"),
}


class KeyWait:
    """Waiting for keys that arrive late (a live capture: the client writes its key log during or after the
    handshake). A `TLSConnection` given one (attribute ``key_wait``) parks its records, in arrival order, from the
    first protected record whose key the key log does not hold (yet), instead of reporting them undecrypted; the
    caller calls `TLSConnection.retry_keys` when the key store gained entries, which decrypts and delivers them.
    ``limit`` bounds the bytes parked by all the connections sharing it: past it the connection that parked last
    stops waiting (`TLSConnection.key_wait_overflow`) and its records are reported as without keys.
    ``max_wait``: a connection whose key has not come this many seconds (capture time) after it began to wait stops
    waiting too. ``waiting``: the connections parking records now (the DTLS tracker holds datagrams meanwhile).
    Only `TLSConnection` changes these."""

    __slots__ = ("limit", "max_wait", "overflows", "used", "waiting")

    def __init__(self, limit: int = 32 << 20, max_wait: float = 300.0) -> None:
        self.limit = limit
        self.max_wait = max_wait
        self.used = 0
        self.overflows = 0
        self.waiting: set = set()


_LATE_MAX = 64  # segments whose times `_Dir.late_ts` keeps


class _Dir:
    """Per-direction state."""

    __slots__ = (
        "app_gen",
        "app_probe",
        "app_secret",
        "cipher",
        "dead",
        "decrypting",
        "early",
        "early_seq",
        "encrypted",
        "epoch",
        "fail_epoch",
        "gapped",
        "hs",
        "late_ts",
        "missing",
        "name",
        "nonce_offset",
        "ok_epoch",
        "phase",
        "reader",
        "reason",
        "region_known",
        "seq",
        "seq_lost",
        "steady_gen",
        "switch",
        "tls13",
        "unverified",
        "zlib",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.reader = RecordReader()
        # frame -> time of the segments fed while the reader was out of step (after missing data): a record they
        # completed may come out only with a later segment (a resynchronised record waits for the next header),
        # and keeps its own time and frame
        self.late_ts: dict[int, float] = {}
        self.gapped = False  # the capture missed some of this direction's bytes (`TLSConnection.gap`)
        self.hs = HandshakeReassembler()
        self.encrypted = False  # records of this direction are protected
        self.cipher = None  # current protection (None: no key)
        self.seq = 0  # next record sequence number
        self.epoch = 0  # bumped on every key change (status events are per epoch)
        self.dead = False  # current key proved wrong: stop trying
        self.reason = ""  # why there is no usable key
        self.phase = "plain"  # TLS 1.3: plain / hs / app
        self.app_secret: bytes | None = None  # TLS 1.3 application traffic secret (generation app_gen)
        self.app_gen = 0
        self.app_probe: TLS13Protection | None = None
        self.early: list = []  # TLS 1.3 0-RTT candidate protections (one per offered suite)
        self.early_seq = 0
        self.switch: str | None = None  # key change due after the current record ("finished", "keyupdate")
        self.ok_epoch = -1
        self.fail_epoch = -1
        self.decrypting = False
        self.region_known = True  # stream offsets since reader.last_end are exact (gap sizes known)
        self.nonce_offset: int | None = None  # explicit nonce - seq on the last good GCM/CCM record
        self.seq_lost = False  # resync gave up: framing without decryption validation
        self.unverified = False  # delivering data whose integrity could not be checked
        self.zlib = None
        self.tls13 = False
        self.steady_gen = -1  # TLSConnection.gen at which `TLSConnection._steady` last found this direction steady
        self.missing = False  # no key because the key log has no line for it (yet): see `TLSConnection.retry_keys`

    def set_cipher(self, cipher, reason: str = "") -> None:
        self.cipher = cipher
        self.seq = 0
        self.epoch += 1
        self.dead = False
        self.seq_lost = False
        self.unverified = False
        self.nonce_offset = None
        self.reason = reason
        self.encrypted = True
        self.missing = False
        if cipher is not None:
            self.reader.min_len = cipher.min_len


class TLSConnection:
    """One TLS connection (both directions).  See the module docstring for the key lookup order and
    what happens on lost bytes."""

    #: give up validating resync candidates by decryption after scanning this many bytes
    resync_budget = 2 * (MAX_CIPHERTEXT + HEADER_LEN)
    #: per-record sequence number search window once resync gave up
    lost_seq_window = 256

    def __init__(self, keys: KeyStore | None = None, session_cache: SessionCache | None = None, *,
                 gap_search: int = 4096) -> None:
        self.keys = keys if keys is not None else KeyStore()
        self.session_cache = session_cache
        self.gap_search = gap_search  # most sequence numbers tried on a resync candidate
        self._d = {C2S: _Dir(C2S), S2C: _Dir(S2C)}
        self.client_hello: ClientHello | None = None
        self.server_hello: ServerHello | None = None
        self.version: int | None = None
        self.cipher_suite = None  # ciphers.CipherSuite (.id, .name)
        self.client_random: bytes | None = None
        self.server_random: bytes | None = None
        self.master_secret: bytes | None = None  # TLS <= 1.2
        self.session_id: bytes | None = None
        self.sni: str | None = None
        self.alpn: str | None = None
        self.resumed = False
        self.extended_master_secret = False
        self.encrypt_then_mac = False
        self.compression = 0
        self.hello_retry_request = False
        self.server_certificates: tuple[bytes, ...] = ()
        self.client_certificates: tuple[bytes, ...] = ()
        self.key_source: str | None = None  # where the TLS <= 1.2 master secret came from
        self._tls13 = False
        self._keys12 = None  # (client_write, server_write) protections once derived for this handshake
        self._keys12_error: str | None = None
        self._transcript: dict[str, list[bytes]] | None = None  # handshake messages until ClientKeyExchange
        self._session_hash_input: bytes | None = None
        self._cke_seen = False
        self._enc_pms: bytes | None = None
        self._pending_tickets: list[bytes] = []
        self._keys12_missing = False  # _keys12_error is "the key log has no line for it" (retry_keys may find it)
        # waiting for late keys (KeyWait): records parked in arrival order, (direction, Record, ts, frame) or
        # (direction, None, length, frame) for a gap; None when not parking
        self.key_wait: KeyWait | None = None
        self._parked: list | None = None
        self._parked_bytes = 0
        self._parked_since = 0.0  # capture time of the first parked record
        self.key_wait_overflow = False  # gave up waiting: the records held exceeded KeyWait.limit
        self._wait_over = False  # no more waiting (closed, or past the limit)
        self.gen = 0  # bumped by every feed/gap/close: `feed_application_data` relies on state checked at the same gen

    # --- public API -----------------------------------------------------------------------------
    @property
    def tls13(self) -> bool:
        return self._tls13

    @property
    def version_name(self) -> str:
        return version_name(self.version)

    @property
    def decrypting(self) -> dict[str, bool]:
        """Per direction: is the last protected record decrypted (True) or not (False)."""
        return {name: d.decrypting for name, d in self._d.items()}

    def feed(self, direction: str, data, ts: float = 0.0, frame: int = 0) -> list:
        self.gen += 1
        d = self._d.get(direction)
        if d is None:
            return [RecordError(str(direction), f"unknown direction {direction!r}", ts, frame)]
        out: list = []
        try:
            reader = d.reader
            late = d.late_ts
            if not reader.synced:
                if len(late) >= _LATE_MAX:
                    del late[next(iter(late))]
                late[frame] = ts
            reader.feed(data, frame)
            self._drain(d, out, ts, frame)
            if late and reader.synced:
                late.clear()
        except Exception as exc:  # noqa: BLE001 - last-resort guard: a dissector bug must not kill the analysis
            out.append(RecordError(direction, f"internal error: {type(exc).__name__}: {exc}", ts, frame))
            d.reader.gap(None)
            d.hs.reset()
            d.region_known = False
        return out

    def feed_application_data(self, direction: str, data, frame: int = 0) -> list | None:
        """`feed` for the common case of an established connection: ``data`` continues a direction that is in step
        and decrypting under its current key (see `_steady`), and every record it completes is application data
        that decrypts. Does what `feed` does and returns the contents of those records (the non-empty ones, in
        order: the ApplicationData events `feed` would return; none while a record is incomplete) without making
        events. None for anything else, having changed nothing: `feed` the data."""
        try:
            d = self._d[direction]  # (not .get: a subscript costs less than a method call)
        except KeyError:
            return None
        if d.steady_gen != self.gen and not self._steady(d):
            return None
        reader = d.reader
        before = reader.records
        contents = reader.open_records(data, frame, d.cipher, d.seq)
        if contents is not None:
            d.seq += reader.records - before
        return contents

    def _steady(self, d: _Dir) -> bool:
        """Is direction ``d`` in the state `feed_application_data` takes on: application data of the current key,
        the record layer in step, decrypting, no key change, early data, compression or lost sequence number in
        play? Remembered until `feed`, `gap` or `close` runs again. Every `_Dir` field that changes how `_drain`
        → `_record` → `_decrypt` → `_content` treat an application-data record that decrypts is checked here."""
        cipher = d.cipher
        if (cipher is None or self._parked is not None or not cipher.repeatable or not d.reader.in_step
                or not d.encrypted or d.dead or d.seq_lost or d.unverified or d.early or d.zlib is not None
                or d.switch is not None or not d.decrypting
                or d.ok_epoch != d.epoch or d.tls13 != isinstance(cipher, TLS13Protection)):
            return False
        d.steady_gen = self.gen
        return True

    def gap(self, direction: str, length: int | None = None, ts: float = 0.0, frame: int = 0,
            cut: bool = False) -> list:
        """The caller lost ``length`` bytes (None: unknown) of this direction before the next ``feed``; ``cut``:
        the end of a segment the capture cut short (a snapshot length) — when inside the record being read, the
        reader stays in step and the record, cut, is counted (`_cut_record`).
        Returns events (the record a cut ended; problems surface on the following records)."""
        self.gen += 1
        d = self._d.get(direction)
        if d is None:
            return [RecordError(str(direction), f"unknown direction {direction!r}", ts, frame)]
        d.reader.gap(length, cut)
        if cut and d.reader.synced:
            # inside a record: it comes out of the reader, cut, once its last bytes went by — now, when the cut
            # took them all (one record per segment), at the cut segment's time and frame
            out: list = []
            if self._parked is None:
                self._drain(d, out, ts, frame)
            return out
        d.gapped = True
        if length is None:
            d.region_known = False
        if self._parked is not None:  # the records before it are parked: so is the gap
            self._parked.append((d, None, length, frame))
            return []
        self._gap_after_records(d)
        return []

    def _gap_after_records(self, d: _Dir) -> None:
        d.hs.reset()
        if self._transcript is not None:  # extended master secret needs every handshake byte
            self._transcript = None

    def close(self, ts: float = 0.0, frame: int = 0) -> list:
        """End of both streams: report data left inside an incomplete record or handshake message."""
        self.gen += 1
        out: list = []
        if self._parked is not None:  # no more keys can come
            self._stop_waiting(out)
        for d in self._d.values():
            rec = d.reader.final() if not d.reader.synced else None
            if rec is not None:  # out of step since missing data: the last record, ending with the stream
                rts, rframe = self._own_time(d, rec, ts, frame)
                if not self._accept_resync(d, rec, out, rts, rframe):
                    d.reader.reject()
            pending = d.reader.pending_record()
            if pending:
                have, need = pending
                what = f"{have} of {need} bytes" if need else f"{have} bytes"
                out.append(RecordError(d.name, f"stream ended inside a record ({what})", ts, frame))
            if d.hs.pending:
                out.append(RecordError(d.name, f"stream ended inside a handshake message ({d.hs.pending} bytes)",
                                       ts, frame))
        return out

    def export_keying_material(self, label: bytes, context: bytes | None, length: int) -> bytes | None:
        """RFC 5705 (TLS <= 1.2, needs the master secret) / RFC 8446 §7.5 (TLS 1.3, needs the key log's
        EXPORTER_SECRET).  None when the needed secret is unknown.  The openconnect DTLS PSK is
        ``export_keying_material(b"EXPORTER-openconnect-psk", None, 32)``."""
        try:
            if self._tls13:
                if self.client_random is None or self.cipher_suite is None:
                    return None
                secret = self.keys.secret("EXPORTER_SECRET", self.client_random)
                if secret is None:
                    return None
                return ks.export_keying_material_13(self.cipher_suite.prf_hash, secret, bytes(label), context,
                                                    length)
            if self.master_secret is None or self.client_random is None or self.server_random is None:
                return None
            return ks.export_keying_material_12(self.version or ks.TLS12, self.cipher_suite.prf_hash,
                                                self.master_secret, self.client_random, self.server_random,
                                                bytes(label), context, length)
        except (ValueError, TypeError):
            return None

    # --- keys that arrive late (KeyWait) --------------------------------------------------------
    @property
    def waiting_for_keys(self) -> bool:
        """Records are parked until the key store holds this connection's keys (see `KeyWait`)."""
        return self._parked is not None

    @property
    def keys_missing(self) -> bool:
        """Waiting (`KeyWait`) for a key the key log did not hold when it was needed: `retry_keys` may find it."""
        return self.key_wait is not None and not self._wait_over and (
            self._parked is not None or self._d[C2S].missing or self._d[S2C].missing)

    def retry_keys(self, ts: float = 0.0, frame: int = 0) -> list:
        """The key store gained entries: if they hold this connection's missing keys, decrypt the parked records
        and return their events (with the time and frame each record arrived at); else nothing changes. (A
        direction whose key is missing and has no parked record yet has had no protected record since: its key is
        simply set.)"""
        if not self.keys_missing:
            return []
        self.gen += 1
        out: list = []
        try:
            if self._retry_lookup(out, ts, frame) and self._parked is not None:
                self._unpark(out)
        except Exception as exc:  # noqa: BLE001 - last-resort guard, as in feed
            out.append(RecordError(C2S, f"internal error: {type(exc).__name__}: {exc}", ts, frame))
        return out

    def stop_waiting(self) -> list:
        """No more keys will come: the parked records are reported (undecrypted); returns their events."""
        if self._parked is None:
            return []
        self.gen += 1
        out: list = []
        self._stop_waiting(out)
        return out

    def _retry_lookup(self, out: list, ts: float, frame: int) -> bool:
        """Look the missing keys up again; True if a direction waiting for one now has it."""
        cr, suite = self.client_random, self.cipher_suite
        if cr is None or suite is None:
            return False
        found = False
        if not self._tls13:
            if self._keys12 is None and self._keys12_missing and self.server_hello is not None \
                    and self.client_hello is not None:
                self._keys12_error = None
                self._derive_tls12(out, ts, frame)
                if self._keys12 is not None:
                    for i, name in enumerate((C2S, S2C)):
                        d = self._d[name]
                        if d.missing and d.cipher is None:
                            d.set_cipher(self._keys12[i])
                            found = True
            return found
        for d in self._d.values():
            if not d.missing or d.cipher is not None:
                continue
            hs_label, app_prefix = _TLS13_LABELS[d.name]
            app = self.keys.secret(f"{app_prefix}{d.app_gen}", cr)
            if d.phase == "hs":
                secret = self.keys.secret(hs_label, cr)
                if secret is not None:
                    d.app_secret = app
                    d.set_cipher(TLS13Protection(suite, secret))
                    found = True
                elif app is not None:  # handshake records stay undecrypted; the application ones decrypt
                    d.app_secret = app
                    d.missing = False
                    found = True
            elif app is not None:
                d.app_secret = app
                d.set_cipher(TLS13Protection(suite, app))
                found = True
        return found

    def _park(self, d: _Dir, rec: Record, out: list, ts: float, frame: int) -> None:
        n = HEADER_LEN + len(rec.fragment)
        self._parked.append((d, rec, ts, frame))
        self._parked_bytes += n
        kw = self.key_wait
        kw.used += n
        if kw.used > kw.limit:
            why = f"past its limit of {kw.limit} bytes for all connections"
        elif ts - self._parked_since > kw.max_wait:
            why = f"past its limit of {kw.max_wait:g} s"
        else:
            return
        self.key_wait_overflow = True
        kw.overflows += 1
        for dd in self._d.values():
            if dd.missing:
                dd.reason = (f"{dd.reason}; acflow held {self._parked_bytes} bytes of this connection waiting for "
                             f"the key log, {why}")
        self._stop_waiting(out)

    def _stop_waiting(self, out: list) -> None:
        """No keys will come (end of input, or past the limit): the parked records are reported without keys."""
        self._wait_over = True
        self._unpark(out)

    def _unpark(self, out: list) -> None:
        parked, self._parked = self._parked, None
        kw = self.key_wait
        if kw is not None:
            kw.used -= self._parked_bytes
            kw.waiting.discard(self)
        self._parked_bytes = 0
        for d, rec, ts, frame in parked:
            if rec is None:  # a gap
                if self._parked is not None:
                    self._parked.append((d, rec, ts, frame))
                else:
                    self._gap_after_records(d)
                continue
            self._process(d, rec, out, ts, frame)

    # --- record loop ----------------------------------------------------------------------------
    def _drain(self, d: _Dir, out: list, ts: float, frame: int) -> None:
        reader = d.reader
        while True:
            if not reader.synced:
                # a resync candidate that cannot be checked by decryption needs a plausible next header
                reader.require_chain = not self._can_validate(d) or d.seq_lost
            rec = reader.next()
            if rec is None:
                return
            if rec.__class__ is str:
                out.append(RecordError(d.name, rec, ts, frame))
                d.hs.reset()
                continue
            rts, rframe = self._own_time(d, rec, ts, frame) if d.late_ts else (ts, frame)
            if rec.cut:
                self._cut_record(d, rec, out, ts, frame)
                continue
            if rec.resync:
                if not self._accept_resync(d, rec, out, rts, rframe):
                    reader.reject()
                    if reader.scanned > self.resync_budget and not d.seq_lost and self._can_validate(d):
                        d.seq_lost = True
                        if not getattr(d.cipher, "can_skip_integrity", False):
                            what = "records cannot be decrypted until it is found again (it is part of the nonce)"
                        else:
                            what = "records will be decrypted without integrity check until it is found again"
                        self._status(d, False, "lost the record sequence number after missing data; " + what,
                                     out, ts, frame, force=True)
                continue
            self._record(d, rec, out, rts, rframe)

    @staticmethod
    def _own_time(d: _Dir, rec: Record, ts: float, frame: int) -> tuple[float, int]:
        """(time, frame) of the segment that completed ``rec``, when the reader, out of step since missing data,
        gives it only with a later segment (the current: ``ts``, ``frame``)."""
        end = d.reader.frame_at(rec.offset + HEADER_LEN + len(rec.fragment) - 1)
        if end != frame and end in d.late_ts:
            return d.late_ts[end], end
        return ts, frame

    def _cut_record(self, d: _Dir, rec: Record, out: list, ts: float, frame: int) -> None:
        """A record the capture cut short (`Record.cut`: its length): its contents are lost, its place is not. A
        protected one is counted undecrypted (its size still tells what it was, analyzer/keyless.py) and uses its
        sequence number (the next record decrypts); a handshake record in the clear breaks the handshake messages
        (as a gap does)."""
        n = rec.cut
        d.reader.note_record(rec.offset + HEADER_LEN + n, HEADER_LEN + n)
        ct = rec.content_type
        if ct == CT_APPLICATION_DATA or (d.encrypted and (not d.tls13 or ct == CT_ALERT)):
            if d.cipher is not None and not d.dead and not d.seq_lost:
                d.seq += 1
            out.append(EncryptedRecord(d.name, ct, n, ts, frame))
            return
        self._gap_after_records(d)
        out.append(RecordError(d.name, f"record of {n} bytes (type {ct}) cut by the capture (a snapshot length)",
                               ts, frame))

    def _can_validate(self, d: _Dir) -> bool:
        return d.encrypted and d.cipher is not None and not d.dead

    def _record(self, d: _Dir, rec: Record, out: list, ts: float, frame: int) -> None:
        wire = HEADER_LEN + len(rec.fragment)
        d.reader.note_record(rec.offset + wire, wire)
        self._process(d, rec, out, ts, frame)

    def _process(self, d: _Dir, rec: Record, out: list, ts: float, frame: int) -> None:
        if self._parked is not None:
            self._park(d, rec, out, ts, frame)
            return
        ct = rec.content_type
        if ct == CT_CHANGE_CIPHER_SPEC:
            out.append(ChangeCipherSpec(d.name, ts, frame))
            self._on_ccs(d, out, ts, frame)
            return
        protected = d.encrypted and (not d.tls13 or ct == CT_APPLICATION_DATA)
        if (not d.encrypted and ct == CT_APPLICATION_DATA and d.gapped and not self._tls13
                and self.server_hello is not None and self.client_hello is not None):
            # TLS 1.2 application data in a direction whose ChangeCipherSpec the capture missed (with its
            # Finished, record 0 under the new keys): its keys are the handshake's; the sequence number is searched
            # from 1 on
            self._on_ccs(d, out, ts, frame)
            if d.cipher is not None:
                d.seq = 1
                d.seq_lost = True
            protected = True
        elif not protected and ct == CT_APPLICATION_DATA:
            protected = True  # TLS never sends application data in the clear: capture began mid-session
            if d.cipher is None and not d.reason:
                d.reason = "application data before any handshake was seen (capture started mid-session?)"
        elif not protected and ct == CT_ALERT and len(rec.fragment) != 2 and self.server_hello is None:
            protected = True  # an alert record that is not 2 bytes is an encrypted one
            if not d.reason:
                d.reason = "encrypted records before any handshake was seen (capture started mid-session?)"
        if protected:
            if d.cipher is None and d.missing and self.key_wait is not None and not self._wait_over \
                    and self.client_random is not None and not d.early:
                self._parked = []
                self._parked_since = ts
                self.key_wait.waiting.add(self)
                self._park(d, rec, out, ts, frame)
                return
            res = self._decrypt(d, rec, out, ts, frame)
            if res is None:
                self._undecryptable(d, rec, out, ts, frame)
                return
            ct, data = res
        else:
            data = rec.fragment
        self._content(d, ct, data, rec, protected, out, ts, frame)

    def _content(self, d: _Dir, ct: int, data, rec: Record, encrypted: bool, out: list, ts: float,
                 frame: int) -> None:
        if d.zlib is not None and encrypted:
            try:
                data = d.zlib.decompress(bytes(data))
            except zlib.error as exc:
                out.append(RecordError(d.name, f"DEFLATE decompression failed: {exc}", ts, frame))
                return
        if ct == CT_APPLICATION_DATA:
            if data:
                out.append(_new_app_data(d.name, bytes(data), ts, frame, rec.first_frame))
        elif ct == CT_HANDSHAKE:
            for item in d.hs.feed(data):
                if item.__class__ is str:
                    out.append(RecordError(d.name, item, ts, frame))
                else:
                    self._handshake(d, item[0], item[1], encrypted, out, ts, frame)
        elif ct == CT_ALERT:
            if len(data) < 2 or len(data) % 2:
                out.append(RecordError(d.name, f"malformed alert record ({len(data)} bytes)", ts, frame))
            for i in range(0, len(data) - 1, 2):
                level, desc = data[i], data[i + 1]
                out.append(Alert(d.name, level, desc, alert_name(desc), encrypted, ts, frame))
        elif ct == CT_CHANGE_CIPHER_SPEC:
            out.append(RecordError(d.name, "ChangeCipherSpec inside a protected record", ts, frame))
        else:
            out.append(OtherRecord(d.name, ct, len(data), ts, frame))
        if d.switch is not None:
            self._switch_keys(d, out, ts, frame)

    def _undecryptable(self, d: _Dir, rec: Record, out: list, ts: float, frame: int) -> None:
        ct = rec.content_type
        n = len(rec.fragment)
        if ct == CT_ALERT:
            out.append(Alert(d.name, None, None, "encrypted_alert", True, ts, frame))
        elif ct == CT_HANDSHAKE:
            out.append(HandshakeMessage(d.name, -1, "encrypted_handshake_message", n, b"", True, {}, ts, frame))
        else:
            out.append(EncryptedRecord(d.name, ct, n, ts, frame))

    # --- decryption -----------------------------------------------------------------------------
    def _status(self, d: _Dir, ok: bool, reason: str, out: list, ts: float, frame: int,
                force: bool = False) -> None:
        """One DecryptionStatus per direction, key epoch and outcome (unless forced)."""
        if ok:
            if force or d.ok_epoch != d.epoch or not d.decrypting:
                d.ok_epoch = d.epoch
                out.append(DecryptionStatus(d.name, True, reason, ts, frame))
            d.decrypting = True
        else:
            if force or d.fail_epoch != d.epoch or d.decrypting:
                d.fail_epoch = d.epoch
                out.append(DecryptionStatus(d.name, False, reason, ts, frame))
            d.decrypting = False

    def _cr_hex(self) -> str:
        return self.client_random.hex() if self.client_random else "(no ClientHello seen)"

    def _ok_reason(self, d: _Dir) -> str:
        if d.tls13:
            which = "handshake" if d.phase == "hs" else f"application (generation {d.app_gen})"
            if d.phase == "early":
                which = "early data"
            return f"decrypting with TLS 1.3 {which} traffic keys from the key log ({self.cipher_suite})"
        return f"decrypting with {self.cipher_suite} keys (master secret from {self.key_source})"


    def _good(self, d: _Dir, seq: int, rec: Record) -> None:
        """A record decrypted with sequence number ``seq`` after a (re)start: remember how the peer's
        explicit nonce relates to the sequence number (used to resynchronise after lost data)."""
        d.seq = seq + 1
        hint = d.cipher.seq_hint(rec.fragment) if d.cipher is not None else None
        if hint is not None:
            d.nonce_offset = hint - seq

    def _decrypt(self, d: _Dir, rec: Record, out: list, ts: float, frame: int):
        """(content type, plaintext) or None."""
        if d.tls13 and d.early and (d.phase == "early" or d.cipher is None or d.dead):
            res = self._try_early(d, rec)
            if res is not None:
                self._status(d, True, "decrypting TLS 1.3 early data with CLIENT_EARLY_TRAFFIC_SECRET", out, ts,
                             frame)
                return res
        cipher = d.cipher
        if cipher is None or d.dead:
            if d.tls13 and d.phase == "hs":
                res = self._probe_app(d, rec, out, ts, frame)
                if res is not None:
                    return res
            self._status(d, False, d.reason or "no key", out, ts, frame)
            return None
        if d.seq_lost:
            return self._decrypt_seq_lost(d, rec, out, ts, frame)
        seq = d.seq
        try:
            res = cipher.open(seq, rec.header, rec.fragment)
        except DecryptError as exc:
            return self._decrypt_failed(d, rec, exc, out, ts, frame)
        d.seq = seq + 1
        if d.ok_epoch != d.epoch or not d.decrypting:  # first good record under this key
            self._good(d, seq, rec)
            self._status(d, True, self._ok_reason(d), out, ts, frame)
        return res

    def _try_early(self, d: _Dir, rec: Record):
        for p in d.early:
            try:
                res = p.decrypt(d.early_seq, rec.header, rec.fragment)
            except DecryptError:
                continue
            d.early = [p]
            d.early_seq += 1
            return res
        return None

    def _probe_app(self, d: _Dir, rec: Record, out: list, ts: float, frame: int):
        """TLS 1.3 handshake phase without usable handshake keys: the first application record (seq 0)
        still decrypts with the application secret (partial key log, or a missed Finished)."""
        if d.app_secret is None or self.cipher_suite is None:
            return None
        if d.app_probe is None:
            d.app_probe = TLS13Protection(self.cipher_suite, d.app_secret)
        try:
            res = d.app_probe.decrypt(0, rec.header, rec.fragment)
        except DecryptError:
            return None
        d.phase = "app"
        d.set_cipher(d.app_probe)
        d.app_probe = None
        d.seq = 1
        self._status(d, True, self._ok_reason(d) + " (handshake records skipped)", out, ts, frame)
        return res

    def _decrypt_failed(self, d: _Dir, rec: Record, exc: DecryptError, out: list, ts: float, frame: int):
        if d.tls13 and d.early:  # 0-RTT records may still follow the ClientHello (RFC 8446 §4.2.10)
            res = self._try_early(d, rec)
            if res is not None:
                return res
        if d.tls13 and d.phase == "hs":
            res = self._probe_app(d, rec, out, ts, frame)
            if res is not None:
                return res
        if d.ok_epoch != d.epoch:
            # the very first record under this key fails: the key is wrong
            d.dead = True
            label = self._key_label(d)
            self._status(d, False, f"wrong key for client random {self._cr_hex()}: {label} failed to decrypt "
                         f"the first protected record ({exc})", out, ts, frame, force=True)
            return None
        # worked before: maybe records were dropped silently; look a little ahead
        found = self._search(d, rec, range(d.seq + 1, d.seq + 33))
        if found is not None:
            seq, res = found
            self._status(d, True, f"record sequence number jumped from {d.seq} to {seq}", out, ts, frame,
                         force=True)
            self._good(d, seq, rec)
            return res
        self._status(d, False, f"record {d.seq} failed to decrypt ({exc}); corrupted or lost data?", out, ts,
                     frame)
        d.seq += 1
        return None

    def _key_label(self, d: _Dir) -> str:
        if d.tls13:
            if d.phase == "hs":
                return f"key log {_TLS13_LABELS[d.name][0]}"
            return f"key log {_TLS13_LABELS[d.name][1]}{d.app_gen}"
        return f"master secret from {self.key_source}"

    def _search(self, d: _Dir, rec: Record, seqs):
        """Try sequence numbers; (seq, (ct, plaintext)) or None."""
        cipher = d.cipher
        if hasattr(cipher, "search"):  # CBC: decrypt once, check the MAC per candidate
            try:
                seq, content = cipher.search(seqs, rec.content_type, rec.version, rec.fragment)
            except DecryptError:
                return None
            return None if seq is None else (seq, (rec.content_type, content))
        for seq in seqs:
            try:
                return seq, cipher.open(seq, rec.header, rec.fragment)
            except DecryptError:
                continue
        return None

    def _seq_candidates(self, d: _Dir, rec: Record, limit: int, use_region: bool = True) -> list[int]:
        base = d.seq
        cipher = d.cipher
        first: list[int] = []
        hint = cipher.seq_hint(rec.fragment)
        if hint is not None:
            first.append(hint - (d.nonce_offset or 0))
            if d.nonce_offset:
                first.append(hint)
        min_wire = HEADER_LEN + max(cipher.min_len, 1)
        lo, hi, est = base, base + limit, base
        reader = d.reader
        if use_region and d.region_known and reader.last_end is not None and rec.offset >= reader.last_end:
            region = rec.offset - reader.last_end
            avg = reader.avg_wire or 1000.0
            lo = base + -(-region // (MAX_CIPHERTEXT + HEADER_LEN))
            hi = min(base + region // min_wire, base + limit)
            est = min(max(base + round(region / avg), lo), hi)
        out = [s for s in first if s >= 0]
        seen = set(out)
        step = 0
        while len(out) < limit + len(first):
            a, b = est + step, est - step - 1
            if a > hi and b < lo:
                break
            for s in (a, b):
                if lo <= s <= hi and s not in seen:
                    seen.add(s)
                    out.append(s)
            step += 1
        return out

    def _accept_resync(self, d: _Dir, rec: Record, out: list, ts: float, frame: int) -> bool:
        """A header found by scanning: check it (by decryption when possible) and process the record."""
        if not self._can_validate(d) or d.seq_lost or rec.content_type == CT_CHANGE_CIPHER_SPEC:
            if rec.chain_ok is not True:
                return False
            d.region_known = True
            self._record(d, rec, out, ts, frame)
            return True
        if d.tls13 and rec.content_type != CT_APPLICATION_DATA:
            return False
        found = self._search(d, rec, self._seq_candidates(d, rec, self.gap_search))
        if found is None and d.tls13 and d.phase == "hs":
            # the capture missed the rest of the handshake (the Finished with it): the record may be the first
            # under the application keys
            res = self._probe_app(d, rec, out, ts, frame)
            if res is None:
                return False
            wire = HEADER_LEN + len(rec.fragment)
            d.reader.note_record(rec.offset + wire, wire)
            d.region_known = True
            self._content(d, res[0], res[1], rec, True, out, ts, frame)
            return True
        if found is None:
            return False
        seq, (ct, data) = found
        estimated = d.seq
        wire = HEADER_LEN + len(rec.fragment)
        d.reader.note_record(rec.offset + wire, wire)
        d.region_known = True
        self._good(d, seq, rec)
        self._status(d, True, f"resynchronised after missing data: record sequence number {seq} "
                     f"(next expected was {estimated})", out, ts, frame, force=True)
        self._content(d, ct, data, rec, True, out, ts, frame)
        return True

    def _decrypt_seq_lost(self, d: _Dir, rec: Record, out: list, ts: float, frame: int):
        """Framing by headers only; try to find the sequence number again, else deliver unverified data."""
        found = self._search(d, rec, self._seq_candidates(d, rec, self.lost_seq_window, use_region=False))
        if found is not None:
            seq, res = found
            d.seq_lost = False
            d.unverified = False
            self._good(d, seq, rec)
            self._status(d, True, f"record sequence number recovered: {seq}", out, ts, frame, force=True)
            return res
        d.seq += 1
        if getattr(d.cipher, "can_skip_integrity", False):
            plain = d.cipher.decrypt_unverified(rec.fragment)
            if plain is not None:
                if not d.unverified:
                    d.unverified = True
                    self._status(d, True, "decrypting without integrity check: the record sequence number "
                                 "(part of the MAC/AEAD input) was lost with missing data", out, ts, frame,
                                 force=True)
                return rec.content_type, plain
        self._status(d, False, "cannot decrypt: the record sequence number (part of the nonce) was lost with "
                     "missing data", out, ts, frame)
        return None

    # --- ChangeCipherSpec / key changes ---------------------------------------------------------
    def _on_ccs(self, d: _Dir, out: list, ts: float, frame: int) -> None:
        ch = self.client_hello
        if self._tls13 or d.tls13 or (self.server_hello is None and ch is not None and ch.offers_tls13):
            return  # TLS 1.3 middlebox-compatibility CCS (RFC 8446 §D.4): no key change
        if self.server_hello is None or ch is None:
            d.set_cipher(None, "ChangeCipherSpec without a ClientHello/ServerHello (capture started mid-handshake?)")
            return
        if self._keys12 is None and self._keys12_error is None:
            self._derive_tls12(out, ts, frame)
        if self._keys12 is not None:
            d.set_cipher(self._keys12[0 if d.name == C2S else 1])
        else:
            d.set_cipher(None, self._keys12_error or "no key")
            d.missing = self._keys12_missing
        d.zlib = zlib.decompressobj() if self.compression == 1 else None  # RFC 3749 DEFLATE

    def _switch_keys(self, d: _Dir, out: list, ts: float, frame: int) -> None:
        what, d.switch = d.switch, None
        suite = self.cipher_suite
        if what == "finished":  # RFC 8446 §7.1: application traffic secrets after the Finished messages
            d.phase = "app"
            d.app_probe = None
            if d.app_secret is not None and suite is not None and suite.supported:
                d.set_cipher(TLS13Protection(suite, d.app_secret))
            else:
                label = _TLS13_LABELS[d.name][1] + "0"
                d.set_cipher(None, f"key log has no {label} for client random {self._cr_hex()}")
                d.missing = suite is not None and suite.supported
        elif what == "keyupdate":  # RFC 8446 §7.2
            d.app_gen += 1
            if isinstance(d.cipher, TLS13Protection):
                nxt = d.cipher.next_generation()
                d.app_secret = nxt.secret
                d.set_cipher(nxt)
            else:
                label = f"{_TLS13_LABELS[d.name][1]}{d.app_gen}"
                secret = self.keys.secret(label, self.client_random) if self.client_random else None
                if secret is not None and suite is not None and suite.supported:
                    d.app_secret = secret
                    d.set_cipher(TLS13Protection(suite, secret))
                else:
                    d.set_cipher(None, d.reason or f"no application traffic secret for generation {d.app_gen}")
                    d.missing = suite is not None and suite.supported
        elif what == "end_of_early_data":
            d.early = []

    # --- handshake ------------------------------------------------------------------------------
    def _handshake(self, d: _Dir, msg_type: int, raw: bytes, encrypted: bool, out: list, ts: float,
                   frame: int) -> None:
        body = memoryview(raw)[4:]
        name = handshake_name(msg_type)
        if self._transcript is not None and msg_type != 0:
            self._transcript[d.name].append(raw)
        try:
            if msg_type == 1:
                ch = parse_client_hello(body, direction=d.name, ts=ts, frame=frame)
                out.append(ch)
                self._on_client_hello(ch, raw)
                return
            if msg_type == 2:
                sh = parse_server_hello(body, direction=d.name, ts=ts, frame=frame)
                out.append(sh)
                self._on_server_hello(sh, out, ts, frame)
                return
            if msg_type == 11:
                cm = parse_certificate(body, tls13=self._tls13, direction=d.name, encrypted=encrypted, ts=ts,
                                       frame=frame)
                if d.name == S2C:
                    self.server_certificates = cm.certificates
                else:
                    self.client_certificates = cm.certificates
                out.append(cm)
                return
            if msg_type == 13:
                out.append(parse_certificate_request(body, version=self.version or ks.TLS12, direction=d.name,
                                                     encrypted=encrypted, ts=ts, frame=frame))
                return
            info: dict = {}
            if msg_type == 12:
                info = parse_server_key_exchange(body, self.cipher_suite.kex if self.cipher_suite else "")
            elif msg_type == 16:
                self._on_client_key_exchange(body)
            elif msg_type == 4:
                info = parse_new_session_ticket(body, tls13=self._tls13)
                self._on_ticket(info)
            elif msg_type == 8:
                info = parse_encrypted_extensions(body)
                if info.get("alpn"):
                    self.alpn = info["alpn"]
            elif msg_type == 24:
                info = parse_key_update(body)
                if d.tls13:
                    d.switch = "keyupdate"
            elif msg_type == 20:
                info = {"verify_data": bytes(body)}
                if d.tls13 and d.phase == "hs":
                    d.switch = "finished"
            elif msg_type == 5 and d.tls13:
                d.switch = "end_of_early_data"
            out.append(HandshakeMessage(d.name, msg_type, name, len(body), bytes(body), encrypted, info, ts, frame))
        except ParseError as exc:
            out.append(RecordError(d.name, f"malformed {name}: {exc}", ts, frame))

    def _reset_handshake(self) -> None:
        self._keys12 = None
        self._keys12_error = None
        self._keys12_missing = False
        self._cke_seen = False
        self._enc_pms = None
        self._session_hash_input = None
        self._pending_tickets = []

    def _on_client_hello(self, ch: ClientHello, raw: bytes) -> None:
        retry = self.hello_retry_request and self.server_hello is None
        self.client_hello = ch
        self.client_random = ch.random
        self.sni = ch.sni
        if not retry:
            self.server_hello = None
        self._reset_handshake()
        self._transcript = {C2S: [raw], S2C: []}
        c = self._d[C2S]
        if ch.early_data and ch.offers_tls13 and not retry:
            # RFC 8446 §2.3: 0-RTT data follows the ClientHello under client_early_traffic_secret
            secret = self.keys.secret("CLIENT_EARLY_TRAFFIC_SECRET", ch.random)
            c.tls13 = True
            c.phase = "early"
            if secret is not None:
                suites = [suite_info(s) for s in ch.cipher_suites]
                c.early = [TLS13Protection(s, secret) for s in suites if s.tls13 and s.supported]
                c.early_seq = 0
                c.set_cipher(None, "0-RTT record did not decrypt with the key log's CLIENT_EARLY_TRAFFIC_SECRET")
            else:
                c.set_cipher(None, f"key log has no CLIENT_EARLY_TRAFFIC_SECRET for client random {ch.random.hex()}")

    def _on_server_hello(self, sh: ServerHello, out: list, ts: float, frame: int) -> None:
        ch = self.client_hello
        suite = suite_info(sh.cipher_suite)
        self.version = sh.version
        self.cipher_suite = suite
        if sh.is_hello_retry_request:
            self.hello_retry_request = True  # RFC 8446 §4.1.4: a second ClientHello follows, same random
            self._transcript = None
            return
        self.server_hello = sh
        self.server_random = sh.random
        self.session_id = sh.session_id
        if sh.alpn:
            self.alpn = sh.alpn
        self.compression = sh.compression_method
        record_version = sh.legacy_version
        for dd in self._d.values():
            dd.reader.set_expected_version(record_version)
        if sh.version == ks.TLS13:
            self._tls13 = True
            self._transcript = None
            self.resumed = sh.selected_psk is not None  # RFC 8446 §4.2.11: the server accepted a PSK
            self._setup_tls13(out, ts, frame)
            return
        for dd in self._d.values():
            if dd.tls13:  # the client offered TLS 1.3 (and 0-RTT) but the server chose an older version
                dd.tls13, dd.phase, dd.early, dd.encrypted, dd.cipher, dd.reason = False, "plain", [], False, None, ""
        self.extended_master_secret = bool(ch and ch.extended_master_secret and sh.extended_master_secret)
        self.encrypt_then_mac = bool(ch and ch.encrypt_then_mac and sh.encrypt_then_mac and suite.kind == "cbc")
        self.resumed = bool(ch and sh.session_id and sh.session_id == ch.session_id)
        if self.compression not in (0, 1):
            self._keys12_error = f"unsupported compression method {self.compression}"
        elif sh.version == ks.SSL30 or not (ks.TLS10 <= sh.version <= ks.TLS12):
            self._keys12_error = f"{version_name(sh.version)} decryption is not supported"

    def _setup_tls13(self, out: list, ts: float, frame: int) -> None:
        suite = self.cipher_suite
        cr = self.client_random
        for d in self._d.values():
            hs_label, app_prefix = _TLS13_LABELS[d.name]
            d.tls13 = True
            d.phase = "hs"
            d.app_gen = 0
            d.app_probe = None
            if cr is None:
                d.app_secret = None
                d.set_cipher(None, "no ClientHello seen: the key log is indexed by client random")
                continue
            if not suite.supported:
                d.app_secret = None
                d.set_cipher(None, f"cipher suite {suite.name} is not supported for decryption")
                continue
            d.app_secret = self.keys.secret(app_prefix + "0", cr)
            secret = self.keys.secret(hs_label, cr)
            if secret is not None:
                d.set_cipher(TLS13Protection(suite, secret))
            else:
                missing = [hs_label] + ([] if d.app_secret else [app_prefix + "0"])
                what = " and ".join(missing)
                d.set_cipher(None, f"key log has no {what} for client random {cr.hex()}")
                d.missing = d.app_secret is None

    def _on_client_key_exchange(self, body) -> None:
        self._cke_seen = True
        suite = self.cipher_suite
        if suite is not None and suite.rsa_key_exchange:
            self._enc_pms = rsa_encrypted_premaster(body)
        if self._transcript is not None:
            # RFC 7627 §3: session_hash covers every handshake message up to and including ClientKeyExchange
            c, s = self._transcript[C2S], self._transcript[S2C]
            self._session_hash_input = b"".join(c[:1] + s + c[1:])
            self._transcript = None

    def _on_ticket(self, info: dict) -> None:
        if self._tls13:
            return
        ticket = info.get("ticket")
        if not ticket:
            return
        if self._keys12 is not None and self.master_secret is not None:
            self._cache_ticket(ticket)
        else:
            self._pending_tickets.append(ticket)

    def _cache_ticket(self, ticket: bytes) -> None:
        if self.session_cache is not None and self.master_secret is not None:
            self.session_cache.add_ticket(ticket, self.master_secret, cipher_suite=self.cipher_suite.id,
                                          version=self.version, extended_master_secret=self.extended_master_secret)

    # --- TLS <= 1.2 key derivation --------------------------------------------------------------
    def _derive_tls12(self, out: list, ts: float, frame: int) -> None:
        ch, sh, suite, version = self.client_hello, self.server_hello, self.cipher_suite, self.version
        cr, sr = ch.random, sh.random
        if not suite.supported:
            self._keys12_error = f"cipher suite {suite.name} is not supported for decryption"
            return
        keys = self.keys
        self._keys12_missing = False
        ms = keys.master_secret(cr)
        source = "key log CLIENT_RANDOM"
        abbreviated = not self._cke_seen
        rsa_error = ""
        if ms is None and abbreviated:
            self.resumed = True
            cache = self.session_cache
            hit = None
            if cache is not None and ch.session_ticket:
                hit, source = cache.lookup_ticket(ch.session_ticket), "session cache (ticket)"
            if hit is None and cache is not None:
                hit, source = cache.lookup_session(sh.session_id), f"session cache (session id {sh.session_id.hex()})"
            if hit is not None:
                ms = hit.master_secret
            else:
                ms = keys.master_secret_for_session_id(sh.session_id)
                source = "key log RSA Session-ID"
        if ms is None and not abbreviated:
            pms = keys.premaster_for_client_random(cr)
            source = "key log PMS_CLIENT_RANDOM"
            if pms is None and suite.rsa_key_exchange and self._enc_pms:
                pms = keys.premaster_for_rsa(self._enc_pms)
                source = "key log RSA premaster"
                if pms is None:
                    pms, rsa_error = self._rsa_decrypt(self._enc_pms)
                    source = "RSA private key"
            if pms is not None:
                if self.extended_master_secret:
                    if self._session_hash_input is None:
                        self._keys12_error = ("extended master secret (RFC 7627) needs every handshake message up "
                                              "to ClientKeyExchange, but some were lost")
                        return
                    sh_hash = ks.session_hash(version, suite.prf_hash, self._session_hash_input)
                    ms = ks.extended_master_secret(version, suite.prf_hash, pms, sh_hash)
                else:
                    ms = ks.master_secret(version, suite.prf_hash, pms, cr, sr)
        if ms is None:
            self._keys12_error = self._no_key_reason(abbreviated, rsa_error)
            self._keys12_missing = True
            return
        self.master_secret = ms
        self.key_source = source
        self._keys12 = tls12_protections(suite, version, ms, cr, sr, etm=self.encrypt_then_mac)
        if source != "key log CLIENT_RANDOM":
            keys.add_secret(CLIENT_RANDOM, cr, ms)  # so KeyStore.to_keylog_lines() can feed Wireshark
        if self.session_cache is not None and sh.session_id:
            self.session_cache.add_session(sh.session_id, ms, cipher_suite=suite.id, version=version,
                                           extended_master_secret=self.extended_master_secret)
        for t in self._pending_tickets:
            self._cache_ticket(t)
        self._pending_tickets = []

    def _no_key_reason(self, abbreviated: bool, rsa_error: str) -> str:
        suite = self.cipher_suite
        head = f"no key for client random {self._cr_hex()}: "
        if abbreviated:
            sid = self.server_hello.session_id.hex() or "-"
            ticket = " / ticket" if self.client_hello.session_ticket else ""
            return head + (f"resumed session (session id {sid}{ticket}) is not in the session cache and the key "
                           "log has no CLIENT_RANDOM line for it")
        if suite.rsa_key_exchange:
            if rsa_error:
                return head + f"no CLIENT_RANDOM line in the key log and {rsa_error}"
            return head + "no CLIENT_RANDOM line in the key log and no RSA private key"
        msg = head + "no CLIENT_RANDOM line in the key log"
        if self.keys.rsa_keys:
            msg += (f"; an RSA private key cannot help: {suite.name} uses {suite.kex} key exchange "
                    "(forward secrecy)")
        return msg

    def _rsa_decrypt(self, enc: bytes) -> tuple[bytes | None, str]:
        """RFC 5246 §7.4.7.1: PKCS#1 v1.5-decrypt the premaster with the server's RSA key."""
        keys = list(self.keys.rsa_keys)
        if not keys:
            return None, "no RSA private key"
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if self.server_certificates:
            try:
                pub = x509.load_der_x509_certificate(self.server_certificates[0]).public_key()
            except Exception:  # noqa: BLE001 - malformed certificate from the wire: try every key instead
                pub = None
            if pub is not None:
                if not isinstance(pub, rsa.RSAPublicKey):
                    return None, "the server certificate key is not RSA"
                key = self.keys.rsa_key_for_modulus(pub.public_numbers().n)
                if key is None:
                    return None, "no RSA private key matches the server certificate"
                keys = [key]

        for key in keys:
            if (key.key_size + 7) // 8 != len(enc):
                continue
            try:
                pms = key.decrypt(enc, padding.PKCS1v15())
            except ValueError:
                continue
            if len(pms) == 48:
                return pms, ""
        return None, "RSA decryption of the premaster failed (wrong private key?)"
