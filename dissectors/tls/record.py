"""TLS record layer framing over one direction of a byte stream (RFC 8446 §5.1, RFC 5246 §6.2).

:class:`RecordReader` buffers stream bytes (records may span any number of ``feed`` calls) and hands
out whole records.  A header that cannot be a TLS record (unknown content type, major version != 3,
length > 2^14 + 2048) is reported once and the reader *resynchronises*: it scans forward for a
plausible header (content type 20-24, version 0x03 0x00-0x04 — or exactly the negotiated record
version once known —, a sane length, and, when the bytes are there, another plausible header right
after the record).  The same scan runs after :meth:`RecordReader.gap` (bytes lost by the capture).
Records found by a scan are marked ``resync=True``; the caller validates them (e.g. by decrypting)
and calls :meth:`RecordReader.reject` to continue scanning past a false candidate.
"""

from __future__ import annotations

import re
import struct

from .ciphers import DecryptError

__all__ = [
    "CT_ALERT",
    "CT_APPLICATION_DATA",
    "CT_CHANGE_CIPHER_SPEC",
    "CT_HANDSHAKE",
    "CT_HEARTBEAT",
    "HEADER_LEN",
    "MAX_CIPHERTEXT",
    "Record",
    "RecordReader",
]

CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
CT_HEARTBEAT = 24

HEADER_LEN = 5
# RFC 5246 §6.2.3: TLSCiphertext.length MUST NOT exceed 2^14 + 2048 (TLS 1.3 allows only 2^14 + 256).
MAX_CIPHERTEXT = 2**14 + 2048

_HDR = struct.Struct("!BHH")


class _Declined(Exception):
    """open_records: a record that is not the common case."""
_ANY_HEADER = re.compile(rb"[\x14-\x18]\x03[\x00-\x04]")


class Record:
    """One record as read from the stream (not an event)."""

    __slots__ = ("chain_ok", "content_type", "cut", "first_frame", "fragment", "header", "offset", "resync",
                 "version")

    def __init__(self, content_type: int, version: int, header: bytes, fragment: bytearray, offset: int,
                 first_frame: int, resync: bool = False, chain_ok: bool | None = None, cut: int = 0) -> None:
        self.content_type = content_type
        self.version = version
        self.header = header  # the 5 header bytes (TLS 1.3 AAD)
        self.fragment = fragment
        self.offset = offset  # stream offset of the header (bytes fed since the start, lost bytes excluded)
        self.first_frame = first_frame
        self.resync = resync
        self.chain_ok = chain_ok
        #: a record the capture cut short (`RecordReader.gap` with ``cut``): its length, ``fragment`` empty
        self.cut = cut

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"Record(type={self.content_type}, version=0x{self.version:04x}, len={len(self.fragment)}, "
                f"offset={self.offset}, resync={self.resync})")


class RecordReader:
    """Incremental record framer for one direction.

    ``next()`` returns a :class:`Record`, an error string (bad header; the reader is then resyncing), or
    None when more bytes are needed.
    """

    __slots__ = (
        "_base",
        "_buf",
        "_candidate",
        "_cut",
        "_frames",
        "_hole",
        "_off",
        "_pattern",
        "_scanned",
        "avg_wire",
        "expected_version",
        "last_end",
        "max_len",
        "min_len",
        "records",
        "require_chain",
        "synced",
    )

    def __init__(self, max_len: int = MAX_CIPHERTEXT) -> None:
        self._buf = bytearray()
        self._off = 0
        self._base = 0  # stream offset of _buf[0]
        self._frames: list[tuple[int, int]] = []  # (stream offset where a feed ended, frame), oldest first
        self.synced = True
        self.expected_version: int | None = None
        self.min_len = 1  # smallest plausible fragment while resyncing (set from the cipher)
        self.max_len = max_len
        self.require_chain = False  # while resyncing, accept a candidate only if the next header is plausible
        self._candidate: int | None = None
        # a record the capture cut short (`gap` with ``cut``): its body bytes still to come after the cut (they are
        # skipped as they come), and the record, given by `next` once they came
        self._hole = 0
        self._cut: Record | None = None
        self._pattern = _ANY_HEADER
        self._scanned = 0  # bytes skipped since resync began
        # records the caller handled in sync (`note_record`): how many, where the last one ended (stream offset),
        # the moving average of their size on the wire
        self.records = 0
        self.last_end: int | None = None
        self.avg_wire = 0.0

    # --- input ----------------------------------------------------------------------------------
    def feed(self, data, frame: int = 0) -> None:
        if data and self._hole:  # the rest of a record the capture cut: skipped
            k = min(len(data), self._hole)
            self._hole -= k
            self._base += k
            data = data[k:]
        if data:
            self._buf += data
            self._frames.append((self._base + len(self._buf), frame))

    def gap(self, length: int | None = None, cut: bool = False) -> None:
        """Bytes were lost before the data fed next: drop any partial record and resynchronise.  Stream
        offsets stay exact when ``length`` is given (they then count the lost bytes too). ``cut``: the bytes are
        the end of a segment the capture cut short (its snapshot length): when they lie inside the record being
        read (its header kept), the reader stays in step — the record, cut, is given by `next` once its last
        bytes went by (`Record.cut`, no fragment), and the next record is read as usual."""
        if cut and length is not None and self.synced and self._candidate is None and self._inside(length):
            return
        self._hole = 0
        self._cut = None
        self._base += len(self._buf) + (length or 0)
        self._buf = bytearray()
        self._off = 0
        self._frames.clear()
        self._candidate = None
        if self.synced:
            self._scanned = 0
        self.synced = False

    def _inside(self, length: int) -> bool:
        """`gap` of ``length`` cut bytes: within the record being read? Then note them (see `gap`)."""
        buf, off = self._buf, self._off
        if self._hole:  # more of a record already cut
            if length > self._hole:
                return False
            self._hole -= length
            self._base += length
        else:
            if len(buf) - off < HEADER_LEN:
                return False
            ctype, version, n = _HDR.unpack_from(buf, off)
            remaining = off + HEADER_LEN + n - len(buf)
            if not (20 <= ctype <= 24) or (version >> 8) != 3 or n > self.max_len or not 0 < length <= remaining:
                return False
            start = self._base + off
            self._cut = Record(ctype, version, bytes(buf[off:off + HEADER_LEN]), bytearray(), start,
                               self._frame_at(start), cut=n)
            self._hole = remaining - length
            self._base += len(buf) + length
            self._buf = bytearray()
            self._off = 0
            self._frames.clear()
        return True

    def set_expected_version(self, version: int | None) -> None:
        self.expected_version = version
        if version is None or (version >> 8) != 3:
            self._pattern = _ANY_HEADER
        else:
            self._pattern = re.compile(b"[\\x14-\\x18]" + re.escape(version.to_bytes(2, "big")))

    @property
    def in_step(self) -> bool:
        """In sync, no resync candidate on trial, nothing half-read: `open_records` can take the next bytes."""
        return self.synced and self._candidate is None and not self._off and self._cut is None

    def note_record(self, end: int, wire: int) -> None:
        """A record of ``wire`` bytes (header included) that ends at stream offset ``end`` was handled in sync."""
        self.last_end = end
        records = self.records + 1
        self.records = records
        self.avg_wire = wire if records == 1 else self.avg_wire + (wire - self.avg_wire) / 16.0

    def open_records(self, data, frame: int, protection, seq: int) -> list | None:
        """`feed`, then `next` for every record now whole, the common case of an established connection: each
        is application data that ``protection`` opens (``protection.open(seq, header, fragment)``, at sequence
        numbers ``seq``, ``seq + 1``…) to application data; each is noted (`note_record`). Returns their
        non-empty contents in order (none while the record goes on in later bytes); the caller's sequence number
        moves on by the growth of `records`. None, having changed nothing, when any record is something else
        (a header `next` rejects, another type, a record that does not open). Only `in_step`."""
        if not data:
            return []
        buf = self._buf
        mark = len(buf)
        buf += data
        n = len(buf)
        if n < HEADER_LEN:
            self._frames.append((self._base + n, frame))
            return []
        ctype, version, length = _HDR.unpack_from(buf, 0)
        if ctype != CT_APPLICATION_DATA or (version >> 8) != 3 or length > self.max_len:
            del buf[mark:]
            return None
        end = HEADER_LEN + length
        if end > n:  # the record goes on in later bytes (the common case, half the time)
            self._frames.append((self._base + n, frame))
            return []
        # every whole record: opened in order; the bookkeeping (`note_record`) is kept in locals and stored
        # only once all of them opened, so that a record that does not leaves everything as it was
        max_len = self.max_len
        records, avg = self.records, self.avg_wire
        contents = []
        pos = 0
        try:
            while True:
                ctype, content = protection.open(seq, buf[pos:pos + HEADER_LEN], buf[pos + HEADER_LEN:end])
                if ctype != CT_APPLICATION_DATA:
                    raise _Declined
                if content:
                    contents.append(content)
                wire = end - pos
                records += 1
                avg = wire if records == 1 else avg + (wire - avg) / 16.0
                seq += 1
                pos = end
                if n - pos < HEADER_LEN:
                    break
                ctype, version, length = _HDR.unpack_from(buf, pos)
                if ctype != CT_APPLICATION_DATA or (version >> 8) != 3 or length > max_len:
                    raise _Declined
                end = pos + HEADER_LEN + length
                if end > n:
                    break
        except (_Declined, DecryptError):
            del buf[mark:]
            return None
        base = self._base
        self.records, self.avg_wire, self.last_end = records, avg, base + pos
        # the records are handled: what next() and its compaction (_compact) leave behind
        if pos == n:  # all of it, the common case
            buf.clear()
            self._base = base + n
            self._frames = [(base + n, frame)]
        else:
            self._frames.append((base + n, frame))
            self._off = pos
            self._compact()
        return contents

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._off

    @property
    def scanned(self) -> int:
        """Bytes skipped while searching for a record header since synchronisation was lost."""
        return self._scanned

    def frame_at(self, offset: int) -> int:
        """The frame whose bytes hold stream ``offset`` (of those still buffered)."""
        return self._frame_at(offset)

    def _frame_at(self, offset: int) -> int:
        frames = self._frames
        if frames and frames[0][0] > offset:  # the common case: the record starts in the oldest chunk kept
            return frames[0][1]
        for end, frame in frames:
            if end > offset:
                return frame
        return frames[-1][1] if frames else 0

    def _compact(self) -> None:
        off = self._off
        if off:
            del self._buf[:off]
            self._base += off
            self._off = 0
            base = self._base
            frames = self._frames
            i = 0
            while i < len(frames) - 1 and frames[i][0] <= base:
                i += 1
            if i:
                del frames[:i]

    # --- output ---------------------------------------------------------------------------------
    def next(self) -> Record | str | None:
        if self._cut is not None:
            if self._hole:
                return None  # the rest of the cut record has not gone by yet
            rec, self._cut = self._cut, None
            return rec
        if self._candidate is not None:  # the previous candidate was not rejected: we are in sync again
            self._candidate = None
            self.synced = True
            self._scanned = 0
        if not self.synced:
            return self._scan()
        buf = self._buf
        off = self._off
        if len(buf) - off < HEADER_LEN:
            self._compact()
            return None
        ctype, version, length = _HDR.unpack_from(buf, off)
        if not (20 <= ctype <= 24) or (version >> 8) != 3 or length > self.max_len:
            self.synced = False
            self._off = off + 1
            self._scanned = 1
            if ctype & 0x80 and off + self._base == 0:
                what = "SSLv2-format record header (not supported)"
            elif not (20 <= ctype <= 24):
                what = f"unknown content type {ctype}"
            elif (version >> 8) != 3:
                what = f"bad record version 0x{version:04x}"
            else:
                what = f"record length {length} exceeds {self.max_len}"
            return f"{what} at stream offset {self._base + off}; resynchronising"
        end = off + HEADER_LEN + length
        if len(buf) < end:
            self._compact()
            return None
        rec = Record(ctype, version, bytes(buf[off:off + HEADER_LEN]), buf[off + HEADER_LEN:end], self._base + off,
                     self._frame_at(self._base + off))
        self._off = end
        return rec

    def _plausible(self, pos: int) -> bool:
        ctype, version, length = _HDR.unpack_from(self._buf, pos)
        if not (20 <= ctype <= 24) or (version >> 8) != 3 or (version & 0xFF) > 4:
            return False
        if self.expected_version is not None and version != self.expected_version:
            return False
        return 0 < length <= self.max_len

    def _scan(self) -> Record | None:
        buf = self._buf
        while True:
            m = self._pattern.search(buf, self._off)
            if m is None:
                keep = max(self._off, len(buf) - 4)
                self._scanned += keep - self._off
                self._off = keep
                self._compact()
                return None
            p = m.start()
            self._scanned += p - self._off
            self._off = p
            if len(buf) - p < HEADER_LEN:
                self._compact()
                return None
            ctype, version, length = _HDR.unpack_from(buf, p)
            if length < max(self.min_len, 1) or length > self.max_len:
                self._off = p + 1
                self._scanned += 1
                continue
            end = p + HEADER_LEN + length
            if len(buf) < end:
                self._compact()
                return None
            chain_ok = self._plausible(end) if len(buf) >= end + HEADER_LEN else None
            if chain_ok is False or (chain_ok is None and self.require_chain):
                if chain_ok is None:  # wait for the next header
                    self._compact()
                    return None
                self._off = p + 1
                self._scanned += 1
                continue
            self._candidate = p
            rec = Record(ctype, version, bytes(buf[p:p + HEADER_LEN]), buf[p + HEADER_LEN:end], self._base + p,
                         self._frame_at(self._base + p), resync=True, chain_ok=chain_ok)
            self._off = end
            return rec

    def final(self) -> Record | None:
        """At the end of the stream, out of step (missing data) with a last record the scan could not trust for
        want of a header after it: the record the buffered bytes end with exactly — a plausible header whose
        length reaches the last byte (nothing can follow to vouch for it; that exact fit does) — as a resync
        candidate (`chain_ok` True); None when there is none."""
        if self.synced or self._candidate is not None:
            return None
        buf = self._buf
        pos = self._off
        while True:
            m = self._pattern.search(buf, pos)
            if m is None:
                return None
            p = m.start()
            if len(buf) - p < HEADER_LEN:
                return None
            ctype, version, length = _HDR.unpack_from(buf, p)
            if p + HEADER_LEN + length == len(buf) and max(self.min_len, 1) <= length <= self.max_len \
                    and self._plausible(p):
                self._candidate = p
                self._off = len(buf)
                return Record(ctype, version, bytes(buf[p:p + HEADER_LEN]), buf[p + HEADER_LEN:], self._base + p,
                              self._frame_at(self._base + p), resync=True, chain_ok=True)
            pos = p + 1

    def reject(self) -> None:
        """The last resync candidate is not a real record: keep scanning after its first byte."""
        if self._candidate is not None:
            self._off = self._candidate + 1
            self._scanned += 1
            self._candidate = None

    def pending_record(self) -> tuple[int, int] | None:
        """(bytes buffered, bytes the pending record claims) for an incomplete record at end of stream."""
        avail = len(self._buf) - self._off
        if avail <= 0:
            return None
        if avail < HEADER_LEN or (not self.synced and self._candidate is None):
            return avail, 0
        length = _HDR.unpack_from(self._buf, self._off)[2]
        return avail, HEADER_LEN + length
