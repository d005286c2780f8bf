"""Incremental, sans-I/O parser for pcap and pcapng capture files.

This is the first stage of the ingestion pipeline (see ``docs/architecture.md``): bytes in, frames out.
:class:`PcapParser` is fed arbitrary chunks of a capture file (``feed(chunk)``) and returns typed events:

* :class:`Frame` -- one captured packet: 1-based ``number`` in file order, ``ts`` (epoch seconds, float),
  ``linktype`` (a LINKTYPE_* value), ``data`` (the captured bytes), ``orig_len`` (length on the wire)
  and ``interface`` (pcapng interface id, 0 for pcap).
* :class:`Secrets` -- the payload of a pcapng Decryption Secrets Block (``kind`` 0x544c534b is an NSS
  TLS key log).
* :class:`Interface` -- a pcapng Interface Description Block: the interface's ``id`` in its section, link type,
  and the ``name`` and ``description`` options the capturing program wrote (``eth0``; on Windows npcap's
  ``\\Device\\NPF_{…}`` and the adapter's description), each at most 256 characters.
* :class:`CaptureError` -- malformed, hostile or truncated input, with the file ``offset`` of the
  offending record. Structural errors (impossible lengths, bad magic, truncation) end parsing; every
  frame before the error has already been emitted. Errors in a single otherwise well-formed block
  (e.g. an unknown interface id) are reported and the block is skipped.

Formats handled:

* classic libpcap files, both byte orders, microsecond (magic 0xa1b2c3d4) and nanosecond (0xa1b23c4d)
  timestamps (https://www.tcpdump.org/manpages/pcap-savefile.5.html, draft-ietf-opsawg-pcap);
* pcapng (draft-ietf-opsawg-pcapng): Section Header Blocks in either byte order (a file may contain
  several sections), any number of Interface Description Blocks with ``if_tsresol`` (decimal and
  power-of-two resolutions) and ``if_tsoffset``, Enhanced Packet Blocks, Simple Packet Blocks, the
  obsolete Packet Block, Decryption Secrets Blocks; other blocks are skipped.

Frame numbering follows Wireshark: every record Wireshark shows as a frame gets a number, including
systemd journal export blocks and custom blocks. Those are counted but not emitted (they are not
network packets), so frame numbers stay aligned with Wireshark's ``frame.number``. A Simple Packet
Block carries no timestamp; its frame gets the timestamp of the previous packet (0.0 if none).

Robustness: the parser never raises on input data, never loops without consuming input, bounds every
claimed length (``max_block``, 256 MiB by default) before buffering it, and keeps at most one
incomplete record plus the last chunk in memory, independent of file size.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass

from ._fastevent import fast_constructor

__all__ = [
    "CAPTURE_MAGICS",
    "MAX_BLOCK",
    "SECRETS_TLS_KEYLOG",
    "SECRETS_WIREGUARD",
    "CaptureError",
    "Frame",
    "Interface",
    "PcapParser",
    "Secrets",
    "head_length",
]

#: Decryption Secrets Block secrets types (draft-ietf-opsawg-pcapng, section 4.7).
SECRETS_TLS_KEYLOG = 0x544C534B
SECRETS_WIREGUARD = 0x57474B4C

#: Upper bound for one record/block; larger claimed lengths are reported as errors, never buffered.
MAX_BLOCK = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured packet."""

    number: int  # 1-based, file order, as Wireshark numbers frames
    ts: float  # capture timestamp, epoch seconds
    linktype: int  # LINKTYPE_* (1 Ethernet, 101 raw IP, 113 SLL, 276 SLL2, ...)
    data: bytes  # captured bytes (possibly shorter than orig_len: snaplen)
    orig_len: int  # length of the packet on the wire
    interface: int  # pcapng interface id (0 for pcap)


@dataclass(frozen=True, slots=True)
class Interface:
    """A pcapng Interface Description Block (the interface a section's packets with this ``id`` were captured on)."""

    id: int
    linktype: int
    name: str | None
    description: str | None


@dataclass(frozen=True, slots=True)
class InterfaceStatistics:
    """A pcapng Interface Statistics Block: the capturing program's counters for interface ``interface`` of the
    section, as of when it wrote the block (dumpcap writes one per interface when the capture ends). ``received``:
    packets the interface received (isb_ifrecv), ``dropped``: packets it or the capture buffer dropped
    (isb_ifdrop: the kernel's ring buffer full), ``os_dropped``: packets the operating system dropped (isb_osdrop);
    None when the block does not say."""

    interface: int
    received: int | None
    dropped: int | None
    os_dropped: int | None


@dataclass(frozen=True, slots=True)
class Secrets:
    """Secrets embedded in a pcapng Decryption Secrets Block."""

    kind: int  # secrets type, SECRETS_TLS_KEYLOG for an NSS key log
    data: bytes


@dataclass(frozen=True, slots=True)
class CaptureError:
    """Malformed or truncated capture data."""

    message: str
    offset: int  # file offset of the record/block concerned


# --- fast construction of the per-packet event (see dissectors/_fastevent.py) -----------------------------
_new_frame = fast_constructor(Frame)


# --- constants -------------------------------------------------------------------------------------

_PCAP_MAGIC = {
    # first four bytes of the file -> (byte order, timestamp units per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAP_UNSUPPORTED = {
    b"\x34\xcd\xb2\xa1": "modified (Kuznetzov) pcap",
    b"\xa1\xb2\xcd\x34": "modified (Kuznetzov) pcap",
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_SHB_BYTES = b"\x0a\x0d\x0d\x0a"
#: the first four bytes of every file this parser recognises as a capture (pcap, modified pcap, pcapng): what an
#: archive member's content is looked at for (analyzer/archive.py)
CAPTURE_MAGICS = frozenset({*_PCAP_MAGIC, *_PCAP_UNSUPPORTED, _PCAPNG_SHB_BYTES})
_BOM_LE = b"\x4d\x3c\x2b\x1a"
_BOM_BE = b"\x1a\x2b\x3c\x4d"

_BT_IDB = 0x00000001
_BT_OPB = 0x00000002  # obsolete Packet Block
_BT_SPB = 0x00000003
_BT_EPB = 0x00000006
_BT_JOURNAL = 0x00000009  # systemd journal export block: a Wireshark frame
_BT_DSB = 0x0000000A
_BT_ISB = 0x00000005
_BT_CUSTOM = 0x00000BAD
_BT_CUSTOM_NOCOPY = 0x40000BAD

_OPT_ENDOFOPT = 0
_OPT_IF_NAME = 2
_OPT_IF_DESCRIPTION = 3
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14

_MAX_INTERFACES = 65536  # per section; more is hostile
#: pcapng blocks a range index passes over: they emit nothing and number no frame (NRB, ISB)
_INDEX_PASSED = frozenset({0x00000004, 0x00000005})
_RESYNC_CHAIN = 4  # blocks that must chain up after a candidate boundary (or the file end) for resync to take it
_RESYNC_WINDOW = 4 << 20  # bytes resync searches: real packet blocks are far smaller (snaplen 262 144 at most)

# parser states
_ST_MAGIC = 0
_ST_PCAP_HDR = 1
_ST_PCAP = 2
_ST_PCAPNG = 3
_ST_DEAD = 4

_LE = {
    "I": struct.Struct("<I"),
    "II": struct.Struct("<II"),
    "EPB": struct.Struct("<IIIII"),
    "EPBHEAD": struct.Struct("<IIIIIII"),  # block type and length, then the EPB fields
    # the EPB head and, in the packet of an Ethernet frame, its EtherType, IPv4 protocol and address field (bytes 12,
    # 23, 26-33: `index_range`'s plain frames; network order, read as bytes)
    "EPBPLAIN": struct.Struct("<III8xI4x12x2s9xB2x8s"),  # (the times and original length skipped)
    "RECPLAIN": struct.Struct("<8xI4x12x2s9xB2x8s"),  # a classic pcap record's included length, then the same
    "OPB": struct.Struct("<HHIIII"),
    "IDB": struct.Struct("<HHI"),
    "OPT": struct.Struct("<HH"),
    "q": struct.Struct("<q"),
    "Q": struct.Struct("<Q"),
    "SHB": struct.Struct("<HH"),
    "REC": struct.Struct("<IIII"),
    "HDR": struct.Struct("<HHiIII"),
}
_BE = {k: struct.Struct(">" + v.format[1:]) for k, v in _LE.items()}


class _Interface:
    __slots__ = ("linktype", "offset", "snaplen", "units")

    def __init__(self, linktype: int, snaplen: int, units: int, offset: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.units = units  # timestamp units per second
        self.offset = offset  # if_tsoffset, seconds


class PcapParser:
    """Incremental pcap/pcapng parser.

    ``feed(chunk)`` accepts any split of the file into chunks and returns the events completed by that
    chunk; ``close()`` must be called at end of input and reports an incomplete trailing record.
    Attributes ``format`` (``None``, ``"pcap"`` or ``"pcapng"``) and ``frames`` (packets numbered so
    far) are informative. ``unrecognized`` is true when the input is not a pcap/pcapng file at all.
    """

    __slots__ = (
        "_base",
        "_closed",
        "_ifaces",
        "_last_ts",
        "_need",
        "_pcap_linktype",
        "_pcap_units",
        "_pending",
        "_plen",
        "_rec",
        "_s",
        "_seen_any",
        "_state",
        "format",
        "frames",
        "keep",
        "max_block",
        "unrecognized",
    )

    def __init__(self, max_block: int = MAX_BLOCK, keep=None) -> None:
        self.max_block = max_block
        # keep(linktype, buffer, start, length, ts) -> bool, asked for every frame: those it refuses are numbered
        # but not emitted (no Frame built: analyzer/parallel.py reads each shard's frames only); None keeps all
        self.keep = keep
        self.format: str | None = None
        self.frames = 0  # last frame number assigned
        self.unrecognized = False
        self._state = _ST_MAGIC
        self._pending: list[bytes] = []
        self._plen = 0
        self._need = 4  # bytes needed (from the current position) before parsing can progress
        self._base = 0  # file offset of the first pending byte
        self._closed = False
        self._seen_any = False
        self._rec = _LE["REC"]
        self._pcap_units = 1_000_000
        self._pcap_linktype = 0
        self._s = _LE
        self._ifaces: list[_Interface] = []
        self._last_ts = 0.0

    # --- public API --------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list:
        """Consume ``chunk`` (any bytes-like) and return the events it completes."""
        if self._state == _ST_DEAD or self._closed or not chunk:
            return []
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        self._seen_any = True
        if self._pending:
            self._pending.append(chunk)
            self._plen += len(chunk)
            if self._plen < self._need:
                return []
            data = b"".join(self._pending)
        else:
            if len(chunk) < self._need:
                self._pending.append(chunk)
                self._plen = len(chunk)
                return []
            data = chunk
        out: list = []
        pos = 0
        try:
            pos = self._parse(data, out)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - defensive: parsing must never raise
            out.append(CaptureError(f"internal parser error: {exc!r}", self._base + pos))
            self._state = _ST_DEAD
        if self._state == _ST_DEAD:
            self._pending = []
            self._plen = 0
            return out
        self._base += pos
        if pos < len(data):
            rest = data[pos:] if pos else data
            self._pending = [rest]
            self._plen = len(rest)
        else:
            self._pending = []
            self._plen = 0
        return out

    def close(self) -> list:
        """Signal end of input; reports a truncated trailing record or an empty input."""
        if self._closed:
            return []
        self._closed = True
        if self._state == _ST_DEAD:
            return []
        if not self._seen_any:
            self._state = _ST_DEAD
            self.unrecognized = True
            return [CaptureError("empty input: no pcap/pcapng header", 0)]
        if self._plen:
            what = {
                _ST_MAGIC: "file header (magic number)",
                _ST_PCAP_HDR: "pcap file header",
                _ST_PCAP: "pcap packet record",
                _ST_PCAPNG: "pcapng block",
            }.get(self._state, "record")
            if self._state == _ST_MAGIC:
                self.unrecognized = True
            err = CaptureError(
                f"truncated {what}: {self._plen} byte(s) at end of input, "
                f"{max(self._need, self._plen + 1)} needed",
                self._base,
            )
            self._state = _ST_DEAD
            self._pending = []
            self._plen = 0
            return [err]
        self._state = _ST_DEAD
        return []

    # --- parsing -----------------------------------------------------------------------------------

    def _fail(self, out: list, message: str, offset: int) -> None:
        out.append(CaptureError(message, self._base + offset))
        self._state = _ST_DEAD

    def _parse(self, data: bytes, out: list) -> int:
        pos = 0
        while True:
            st = self._state
            if st == _ST_PCAPNG:
                return self._parse_pcapng(data, pos, out)
            if st == _ST_PCAP:
                return self._parse_pcap(data, pos, out)
            if st == _ST_DEAD:
                return pos
            if st == _ST_MAGIC:
                if len(data) - pos < 4:
                    self._need = 4
                    return pos
                magic = data[pos : pos + 4]
                if magic in _PCAP_MAGIC:
                    order, units = _PCAP_MAGIC[magic]
                    self._s = _LE if order == "<" else _BE
                    self._rec = self._s["REC"]
                    self._pcap_units = units
                    self.format = "pcap"
                    self._state = _ST_PCAP_HDR
                    self._need = 24
                elif magic == _PCAPNG_SHB_BYTES:
                    self.format = "pcapng"
                    self._state = _ST_PCAPNG
                    self._need = 8
                else:
                    self.unrecognized = True
                    kind = _PCAP_UNSUPPORTED.get(magic)
                    msg = (
                        f"unsupported capture format: {kind}"
                        if kind
                        else f"not a pcap or pcapng file (magic {magic.hex()})"
                    )
                    self._fail(out, msg, pos)
                    return pos
            elif st == _ST_PCAP_HDR:
                if len(data) - pos < 24:
                    self._need = 24
                    return pos
                major, minor, _zone, _sig, _snaplen, network = self._s["HDR"].unpack_from(data, pos + 4)
                if major != 2:
                    self._fail(out, f"unsupported pcap version {major}.{minor}", pos)
                    return pos
                self._pcap_linktype = network & 0xFFFF
                self._state = _ST_PCAP
                self._need = 16
                pos += 24

    def _parse_pcap(self, data: bytes, pos: int, out: list) -> int:
        unpack = self._rec.unpack_from
        end = len(data)
        units = self._pcap_units
        linktype = self._pcap_linktype
        maxb = self.max_block
        number = self.frames
        append = out.append
        keep = self.keep
        while end - pos >= 16:
            sec, frac, incl, orig = unpack(data, pos)
            if incl > maxb:
                self.frames = number
                self._fail(
                    out,
                    f"pcap record claims {incl} captured bytes (more than the {maxb} byte limit)",
                    pos,
                )
                return pos
            nxt = pos + 16 + incl
            if nxt > end:
                self._need = 16 + incl
                self.frames = number
                return pos
            number += 1
            ts = (sec * units + frac) / units
            if keep is None or keep(linktype, data, pos + 16, incl, ts):
                append(_new_frame(number, ts, linktype, data[pos + 16 : nxt], orig, 0))
            pos = nxt
        self._need = 16
        self.frames = number
        return pos

    def _parse_pcapng(self, data: bytes, pos: int, out: list) -> int:
        end = len(data)
        maxb = self.max_block
        s = self._s
        u_II = s["II"].unpack_from
        u_I = s["I"].unpack_from
        u_EPB = s["EPB"].unpack_from
        ifaces = self._ifaces
        append = out.append
        number = self.frames
        keep = self.keep
        while True:
            if end - pos < 8:
                self._need = 8
                break
            btype, blen = u_II(data, pos)
            if btype == _PCAPNG_SHB:
                if end - pos < 12:
                    self._need = 12
                    break
                bom = data[pos + 8 : pos + 12]
                if bom == _BOM_LE:
                    s = _LE
                elif bom == _BOM_BE:
                    s = _BE
                else:
                    self.frames = number
                    self._fail(out, f"pcapng section header with bad byte-order magic {bom.hex()}", pos)
                    return pos
                u_II = s["II"].unpack_from
                u_I = s["I"].unpack_from
                u_EPB = s["EPB"].unpack_from
                btype, blen = u_II(data, pos)
            if blen < 12 or blen & 3:
                self.frames = number
                self._fail(out, f"pcapng block (type 0x{btype:08x}) with invalid length {blen}", pos)
                return pos
            if blen > maxb:
                self.frames = number
                self._fail(
                    out,
                    f"pcapng block (type 0x{btype:08x}) claims {blen} bytes (more than the {maxb} byte limit)",
                    pos,
                )
                return pos
            nxt = pos + blen
            if nxt > end:
                self._need = blen
                break
            if u_I(data, nxt - 4)[0] != blen:
                self.frames = number
                self._fail(
                    out,
                    f"pcapng block (type 0x{btype:08x}): trailing length {u_I(data, nxt - 4)[0]} "
                    f"!= leading length {blen}",
                    pos,
                )
                return pos

            if btype == _BT_EPB:
                if blen < 32:
                    self.frames = number
                    self._fail(out, f"enhanced packet block too short ({blen} bytes)", pos)
                    return pos
                iface, th, tl, caplen, orig = u_EPB(data, pos + 8)
                if caplen > blen - 32:
                    self.frames = number
                    self._fail(
                        out, f"enhanced packet block: captured length {caplen} exceeds block length", pos
                    )
                    return pos
                if iface >= len(ifaces):
                    append(
                        CaptureError(
                            f"enhanced packet block references unknown interface {iface}; skipped",
                            self._base + pos,
                        )
                    )
                else:
                    itf = ifaces[iface]
                    units = itf.units
                    ts = ((th << 32) | tl) / units
                    if itf.offset:
                        ts += itf.offset
                    self._last_ts = ts
                    number += 1
                    if keep is None or keep(itf.linktype, data, pos + 28, caplen, ts):
                        append(_new_frame(number, ts, itf.linktype, data[pos + 28 : pos + 28 + caplen], orig, iface))
            elif btype == _BT_IDB:
                self._s = s
                self._read_idb(data, pos, blen, out)
            elif btype == _PCAPNG_SHB:
                if blen < 28:
                    self.frames = number
                    self._fail(out, f"section header block too short ({blen} bytes)", pos)
                    return pos
                major, minor = s["SHB"].unpack_from(data, pos + 12)
                if major != 1:
                    self.frames = number
                    self._fail(out, f"unsupported pcapng version {major}.{minor}", pos)
                    return pos
                self._s = s
                ifaces = self._ifaces = []
            elif btype == _BT_SPB:
                if blen < 16:
                    self.frames = number
                    self._fail(out, f"simple packet block too short ({blen} bytes)", pos)
                    return pos
                (orig,) = u_I(data, pos + 8)
                if not ifaces:
                    append(
                        CaptureError("simple packet block without interface description; skipped", self._base + pos)
                    )
                else:
                    itf = ifaces[0]
                    caplen = min(orig, blen - 16)
                    if itf.snaplen and caplen > itf.snaplen:
                        caplen = itf.snaplen
                    number += 1
                    if keep is None or keep(itf.linktype, data, pos + 12, caplen, self._last_ts):
                        append(_new_frame(number, self._last_ts, itf.linktype, data[pos + 12 : pos + 12 + caplen],
                                          orig, 0))
            elif btype == _BT_DSB:
                if blen < 20:
                    self.frames = number
                    self._fail(out, f"decryption secrets block too short ({blen} bytes)", pos)
                    return pos
                kind, slen = s["II"].unpack_from(data, pos + 8)
                if slen > blen - 20:
                    self.frames = number
                    self._fail(out, f"decryption secrets block: secrets length {slen} exceeds block", pos)
                    return pos
                append(Secrets(kind, data[pos + 16 : pos + 16 + slen]))
            elif btype == _BT_OPB:
                if blen < 32:
                    self.frames = number
                    self._fail(out, f"packet block too short ({blen} bytes)", pos)
                    return pos
                iface, _drops, th, tl, caplen, orig = s["OPB"].unpack_from(data, pos + 8)
                if caplen > blen - 32:
                    self.frames = number
                    self._fail(out, f"packet block: captured length {caplen} exceeds block length", pos)
                    return pos
                if iface >= len(ifaces):
                    append(
                        CaptureError(
                            f"packet block references unknown interface {iface}; skipped", self._base + pos
                        )
                    )
                else:
                    itf = ifaces[iface]
                    ts = ((th << 32) | tl) / itf.units
                    if itf.offset:
                        ts += itf.offset
                    self._last_ts = ts
                    number += 1
                    if keep is None or keep(itf.linktype, data, pos + 28, caplen, ts):
                        append(_new_frame(number, ts, itf.linktype, data[pos + 28 : pos + 28 + caplen], orig, iface))
            elif btype == _BT_JOURNAL or btype == _BT_CUSTOM or btype == _BT_CUSTOM_NOCOPY:
                number += 1  # a frame for Wireshark, not a network packet: counted, not emitted
            elif btype == _BT_ISB:
                stats = self._read_isb(data, pos, blen)
                if stats is not None:
                    append(stats)
            # anything else (NRB, local-use, unknown): skipped
            pos = nxt
        self._s = s
        self.frames = number
        return pos

    def _read_isb(self, data, pos: int, blen: int) -> InterfaceStatistics | None:
        """The Interface Statistics Block at ``pos`` (``blen`` bytes, checked by the caller), or None when it holds
        no counter or is malformed (only counters: nothing else depends on it, so a bad one is passed over)."""
        s = self._s
        if blen < 24:
            return None
        (iface,) = s["I"].unpack_from(data, pos + 8)
        opt, u64 = s["OPT"].unpack_from, s["Q"].unpack_from
        counters: dict[int, int] = {}
        p, end = pos + 20, pos + blen - 4
        while end - p >= 4:
            code, olen = opt(data, p)
            p += 4
            if code == _OPT_ENDOFOPT or olen > end - p:
                break
            if code in (4, 5, 7) and olen == 8:  # isb_ifrecv, isb_ifdrop, isb_osdrop (RFC draft pcapng §4.6)
                counters[code] = u64(data, p)[0]
            p += (olen + 3) & ~3
        if not counters:
            return None
        return InterfaceStatistics(iface, counters.get(4), counters.get(5), counters.get(7))

    def statistics_at(self, buf, offsets) -> list:
        """The InterfaceStatistics of the blocks at ``offsets`` of ``buf`` (`index_range`'s ``statistics``)."""
        out = []
        for pos in offsets:
            (blen,) = self._s["I"].unpack_from(buf, pos + 4)
            stats = self._read_isb(buf, pos, blen)
            if stats is not None:
                out.append(stats)
        return out

    def _read_idb(self, data: bytes, pos: int, blen: int, out: list) -> None:
        s = self._s
        if blen < 20:
            out.append(CaptureError(f"interface description block too short ({blen} bytes); skipped", self._base + pos))
            return
        if len(self._ifaces) >= _MAX_INTERFACES:
            out.append(
                CaptureError(f"more than {_MAX_INTERFACES} interfaces in a section; skipped", self._base + pos)
            )
            return
        linktype, _res, snaplen = s["IDB"].unpack_from(data, pos + 8)
        units = 1_000_000
        offset = 0
        texts: dict = {}
        opt = s["OPT"].unpack_from
        p = pos + 16
        end = pos + blen - 4
        while end - p >= 4:
            code, olen = opt(data, p)
            p += 4
            if code == _OPT_ENDOFOPT:
                break
            if olen > end - p:
                out.append(CaptureError("interface description block: option overruns block", self._base + pos))
                break
            if code == _OPT_IF_TSRESOL and olen >= 1:
                v = data[p]
                if v & 0x80:
                    units = 1 << (v & 0x7F)
                elif v <= 18:
                    units = 10**v
                else:
                    out.append(
                        CaptureError(f"interface description block: unsupported if_tsresol {v}", self._base + pos)
                    )
            elif code == _OPT_IF_TSOFFSET and olen >= 8:
                (offset,) = s["q"].unpack_from(data, p)
            elif code in (_OPT_IF_NAME, _OPT_IF_DESCRIPTION) and code not in texts:
                texts[code] = bytes(data[p:p + min(olen, 1024)]).split(b"\0", 1)[0].decode("utf-8", "replace")[:256]
            p += (olen + 3) & ~3
        out.append(Interface(len(self._ifaces), linktype, texts.get(_OPT_IF_NAME) or None,
                             texts.get(_OPT_IF_DESCRIPTION) or None))
        self._ifaces.append(_Interface(linktype, snaplen, units, offset))

    # --- reading by ranges (analyzer/parallel.py: each process indexes a part of the file, reads its own frames) --

    def index_range(self, buf, start: int, end: int, classify, counted: int = 0, plain: dict | None = None) -> dict:
        """Index the packets (pcapng: Enhanced Packet Blocks; classic pcap: records) of the capture file ``buf``
        (all of it, e.g. an mmap) from the packet boundary ``start`` up to the first one at or past ``end``. This
        parser must have been fed the file's head (``buf[:head_length(buf)]``: byte order, interfaces). Returns
        ``offsets`` (array of each packet's offset, in file order) and ``shards`` (bytearray: each packet's
        ``classify(linktype, buf, offset, length)``, 0…255); the packet at index i is the range's frame
        ``counted + i + 1`` (``counted``: frames of the range already indexed, by a call for the bytes before
        ``start``; ``count`` includes them). ``crossing`` is the offset of the first packet at or past ``end``
        (the file's size at its end); ``first_ts``/``last_ts`` the times of this call's first and last packet.
        ``statistics``: the offsets of the last Interface Statistics Block with counters of each interface in the
        range (`statistics_at` reads them). ``status`` is "ok", or "other" when the range holds anything this walk
        does not reproduce exactly as `feed` would (a new section, interface or secrets block, other packet blocks,
        a block `feed` would report as damaged): the caller then reads the file whole.

        ``plain``, if given, is a cache (dict) of ``classify``'s answers for plain frames — Ethernet, IPv4, not ICMP,
        at least 34 bytes — by their raw 8-byte address field (bytes 26-33): for a classifier whose answer for such
        a frame depends on that field alone (the --jobs address-pair buckets), the walk reads the field with the
        block's head and calls ``classify`` once per address pair instead of once per packet."""
        if self.format == "pcap":
            return self._index_pcap(buf, start, end, classify, counted, plain)
        s = self._s
        u_II, u_I, u_head = s["II"].unpack_from, s["I"].unpack_from, s["EPBHEAD"].unpack_from
        u_plain = s["EPBPLAIN"].unpack_from
        cached = plain.get if plain is not None else None
        linktypes = [itf.linktype for itf in self._ifaces]
        nif, maxb, size = len(linktypes), self.max_block, len(buf)
        offsets, shards = array("Q"), bytearray()
        add_offset, add_shard = offsets.append, shards.append
        statistics: dict[int, int] = {}  # interface -> the offset of the last Interface Statistics Block for it
        pos, status = start, "ok"
        etype = proto = addrs = None
        while pos < end:
            if cached is not None and size - pos >= 62:  # the head and the packet's plain fields in one call
                btype, blen, iface, caplen, etype, proto, addrs = u_plain(buf, pos)
            elif size - pos >= 28:  # block header and EPB fields in one call (a block this close to the end: below)
                btype, blen, iface, _th, _tl, caplen, _orig = u_head(buf, pos)
                etype = None
            elif size - pos >= 12:
                (btype, blen), iface, caplen = u_II(buf, pos), 0, 0
                etype = None
            else:
                status = "other"  # a truncated block: `feed` reports it
                break
            if blen < 12 or blen & 3 or blen > maxb or blen > size - pos or u_I(buf, pos + blen - 4)[0] != blen:
                status = "other"
                break
            if btype == _BT_EPB:
                if blen < 32 or caplen > blen - 32 or iface >= nif:
                    status = "other"
                    break
                add_offset(pos)
                if etype == b"\x08\x00" and caplen >= 34 and proto != 1 and linktypes[iface] == 1:
                    c = cached(addrs)
                    if c is None:
                        c = plain[addrs] = classify(1, buf, pos + 28, caplen)
                    add_shard(c)
                else:
                    add_shard(classify(linktypes[iface], buf, pos + 28, caplen))
            elif btype == _BT_ISB:
                # (counters run from the capture's start: the last block of an interface that has them says all)
                if self._read_isb(buf, pos, blen) is not None:
                    statistics[u_I(buf, pos + 8)[0]] = pos
            elif btype not in _INDEX_PASSED:
                status = "other"
                break
            pos += blen
        return {"status": status, "start": start, "crossing": pos, "count": counted + len(offsets),
                "offsets": offsets, "shards": shards, "statistics": sorted(statistics.values()),
                "first_ts": self._epb_ts(buf, offsets[0]) if offsets else None,
                "last_ts": self._epb_ts(buf, offsets[-1]) if offsets else None}

    def resync(self, buf, near: int) -> int | None:
        """The first offset at or after ``near`` where an Enhanced Packet Block starts, as far as the bytes tell
        (the block and the next few chain up with matching trailing lengths, or reach the file's end exactly);
        None if none is found within a few MiB. A guess: `index_range` callers check it against where the previous
        range ended."""
        if self.format == "pcap":
            return self._resync_pcap(buf, near)
        s = self._s
        u_II, u_I = s["II"].unpack_from, s["I"].unpack_from
        size = len(buf)
        p = (near + 3) & ~3  # blocks are 32-bit aligned from the section header at 0
        stop = min(size, p + _RESYNC_WINDOW)
        while p + 12 <= stop:
            q, ok = p, True
            for _ in range(_RESYNC_CHAIN):
                if q == size:
                    break
                if size - q < 12:
                    ok = False
                    break
                btype, blen = u_II(buf, q)
                if (q == p and btype != _BT_EPB) or btype not in (_BT_EPB, *_INDEX_PASSED) or blen < 12 or \
                        blen & 3 or blen > size - q or u_I(buf, q + blen - 4)[0] != blen:
                    ok = False
                    break
                q += blen
            if ok:
                return p
            p += 4
        return None

    def frames_at(self, buf, offsets, ordinals, base: int) -> list:
        """The Frames of the Enhanced Packet Blocks at ``offsets`` of ``buf`` as `index_range` found them, frame
        ``base + ordinal`` each."""
        out: list = []
        append = out.append
        if self.format == "pcap":
            unpack, units, linktype = self._rec.unpack_from, self._pcap_units, self._pcap_linktype
            for pos, ordinal in zip(offsets, ordinals):
                sec, frac, incl, orig = unpack(buf, pos)
                append(_new_frame(base + ordinal, (sec * units + frac) / units, linktype,
                                  buf[pos + 16:pos + 16 + incl], orig, 0))
            return out
        u_EPB = self._s["EPB"].unpack_from
        ifaces = self._ifaces
        for pos, ordinal in zip(offsets, ordinals):
            iface, th, tl, caplen, orig = u_EPB(buf, pos + 8)
            itf = ifaces[iface]
            ts = ((th << 32) | tl) / itf.units
            if itf.offset:
                ts += itf.offset
            append(_new_frame(base + ordinal, ts, itf.linktype, buf[pos + 28:pos + 28 + caplen], orig, iface))
        return out

    def _index_pcap(self, buf, start: int, end: int, classify, counted: int, plain: dict | None = None) -> dict:
        """`index_range` of a classic pcap file: records, no block types (nothing but packets to pass over)."""
        unpack, linktype = self._rec.unpack_from, self._pcap_linktype
        u_plain = self._s["RECPLAIN"].unpack_from  # (the byte order of the file's header, as `_rec`)
        cached = plain.get if plain is not None and linktype == 1 else None
        maxb, size = self.max_block, len(buf)
        offsets, shards = array("Q"), bytearray()
        add_offset, add_shard = offsets.append, shards.append
        pos, status = start, "ok"
        while pos < end:
            if cached is not None and size - pos >= 50:
                incl, etype, proto, addrs = u_plain(buf, pos)
            elif size - pos < 16:
                status = "other"  # a truncated record: `feed` reports it
                break
            else:
                _sec, _frac, incl, _orig = unpack(buf, pos)
                etype = None
            if incl > maxb or incl > size - pos - 16:
                status = "other"
                break
            add_offset(pos)
            if etype == b"\x08\x00" and incl >= 34 and proto != 1:
                c = cached(addrs)
                if c is None:
                    c = plain[addrs] = classify(linktype, buf, pos + 16, incl)
                add_shard(c)
            else:
                add_shard(classify(linktype, buf, pos + 16, incl))
            pos += 16 + incl
        return {"status": status, "start": start, "crossing": pos, "count": counted + len(offsets),
                "offsets": offsets, "shards": shards, "statistics": [],
                "first_ts": self._record_ts(buf, offsets[0]) if offsets else None,
                "last_ts": self._record_ts(buf, offsets[-1]) if offsets else None}

    def _resync_pcap(self, buf, near: int) -> int | None:
        """`resync` in a classic pcap file, whose records say nothing of themselves but their lengths and times:
        a record header at p is taken when it and the next few chain up (each captured length within the file's
        bounds and no more than the length on the wire, sub-second fields below a second, the times within an hour
        of the first's), or reach the file's end exactly."""
        unpack, units, maxb = self._rec.unpack_from, self._pcap_units, self.max_block
        size = len(buf)
        stop = min(size, near + _RESYNC_WINDOW)
        p = near
        while p + 16 <= stop:
            q, ok, t0 = p, True, None
            for _ in range(_RESYNC_CHAIN * 2):
                if q == size:
                    break
                if size - q < 16:
                    ok = False
                    break
                sec, frac, incl, orig = unpack(buf, q)
                if frac >= units or incl > maxb or incl > orig or orig > maxb or incl > size - q - 16 or \
                        (t0 is not None and abs(sec - t0) > 3600):
                    ok = False
                    break
                t0 = sec if t0 is None else t0
                q += 16 + incl
            if ok:
                return p
            p += 1
        return None

    def _record_ts(self, buf, pos: int) -> float:
        sec, frac, _incl, _orig = self._rec.unpack_from(buf, pos)
        return (sec * self._pcap_units + frac) / self._pcap_units

    def _epb_ts(self, buf, pos: int) -> float:
        iface, th, tl, _caplen, _orig = self._s["EPB"].unpack_from(buf, pos + 8)
        itf = self._ifaces[iface]
        ts = ((th << 32) | tl) / itf.units
        return ts + itf.offset if itf.offset else ts


def head_length(buf) -> int | None:
    """The bytes before the first packet of the capture file ``buf`` when `PcapParser.index_range` can read it by
    ranges: a classic pcap file (its 24-byte header), or pcapng whose first packet block is an Enhanced Packet Block
    of the first section (the section header, interfaces, secrets… before it); else None (another format, another
    packet block first, a second section before any packet, a damaged head)."""
    if len(buf) >= 24 and bytes(buf[:4]) in _PCAP_MAGIC:
        return 24
    if len(buf) < 12 or buf[:4] != _PCAPNG_SHB_BYTES:
        return None
    bom = buf[8:12]
    s = _LE if bom == _BOM_LE else _BE if bom == _BOM_BE else None
    if s is None:
        return None
    u_II, u_I = s["II"].unpack_from, s["I"].unpack_from
    pos, size = 0, len(buf)
    while size - pos >= 12:
        btype, blen = u_II(buf, pos)
        if blen < 12 or blen & 3 or blen > size - pos or u_I(buf, pos + blen - 4)[0] != blen:
            return None
        if btype == _BT_EPB:
            return pos
        if (btype == _PCAPNG_SHB and pos) or btype in (_BT_SPB, _BT_OPB, _BT_JOURNAL, _BT_CUSTOM, _BT_CUSTOM_NOCOPY):
            return None
        pos += blen
    return None
