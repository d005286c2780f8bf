"""I/O edge of the ingestion pipeline: read a capture file and yield parser events.

``read_capture(path)`` opens a pcap or pcapng file -- plain or compressed (gzip, xz, bzip2, zstd: told by
its first bytes, not by its name), or a member of a zip or tar archive (``case.zip/outside.pcapng``:
analyzer/archive.py) -- reads it in fixed-size chunks and feeds them to the sans-I/O
:class:`dissectors.pcapfile.PcapParser`, yielding its events (``Frame``, ``Secrets``,
``CaptureError``) lazily; memory use does not depend on the file size.

A file that is not a capture at all raises :class:`CaptureFormatError` (with a hint when the format
is recognisable, e.g. a key log or an lz4 file). Damage *inside* a capture (truncation, a corrupt
compressed stream, a bad block) is reported in-band as a ``CaptureError`` event after every frame that could
be read, so that an analysis of a partial capture still works.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator

from dissectors.pcapfile import CaptureError, Frame, PcapParser, Secrets

from .archive import ArchiveError, Prefixed, damage_errors, decompressed, looks_like_archive, open_input, read_head

__all__ = ["CaptureError", "CaptureFormatError", "Frame", "Secrets", "iter_frames", "read_capture",
           "read_capture_batches", "read_stream_batches"]

_HINTS = (
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file (install the zstandard package, or decompress it first: zstd -d)"),
    (b"\x04\x22\x4d\x18", "an lz4-compressed file (decompress it first: lz4 -d)"),
    (b"PK\x03\x04", "a zip archive (acflow reads the captures in an archive it is given, and this one holds "
                      "none)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive (extract the capture first: 7z x)"),
    (b"Rar!\x1a\x07", "a RAR archive (extract the capture first: unrar x)"),
    (b"snoop\x00\x00\x00", "a Solaris snoop capture (convert it with: editcap -F pcapng IN OUT)"),
    (b"GMBU", "a Microsoft Network Monitor capture (convert it with: editcap -F pcapng IN OUT)"),
    (b"RTSS", "a Microsoft Network Monitor 1.x capture (convert it with: editcap -F pcapng IN OUT)"),
    (b"CLIENT_RANDOM ", "an NSS TLS key log file, not a capture"),
    (b"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "an NSS TLS key log file, not a capture"),
    (b"SERVER_HANDSHAKE_TRAFFIC_SECRET", "an NSS TLS key log file, not a capture"),
    (b"# SSL/TLS secrets log file", "an NSS TLS key log file, not a capture"),
    (b"RSA ", "an NSS TLS key log file, not a capture"),
)


class CaptureFormatError(ValueError):
    """The file is not a pcap or pcapng capture (possibly compressed, or inside an archive)."""

    def __init__(self, path: str | os.PathLike, detail: str) -> None:
        self.path = os.fspath(path)
        self.detail = detail
        super().__init__(f"{self.path}: not a pcap/pcapng capture: {detail}")


#: the text of a Cisco ASA/FTD `show capture NAME` (a count line, then "N: HH:MM:SS.ffffff src > dst: …" per packet):
#: what a customer pastes when asked for the capture
_ASA_SHOW_CAPTURE = re.compile(rb"^\s*(?:\d+ packets? (?:captured|shown)|\d+: \d\d:\d\d:\d\d\.\d+ )", re.MULTILINE)


def _describe(head: bytes, path=None) -> str:
    if not head:
        return "the file is empty"
    for magic, hint in _HINTS:
        if head.startswith(magic):
            return f"it looks like {hint}"
    if _ASA_SHOW_CAPTURE.search(head[:4096]):
        return ("it looks like the text of an ASA/FTD `show capture` (packets listed, not captured): download the "
                "capture as pcap instead (https://ASA/admin/capture/NAME/pcap, or copy /pcap capture:NAME tftp://…)")
    if path is not None and os.fspath(path).lower().endswith(".etl"):
        return ("it looks like a Windows ETL trace (pktmon, netsh trace): convert it first (pktmon etl2pcap IN "
                "--out OUT.pcapng, or Microsoft's etl2pcapng)")
    sample = head[:64]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return f"it looks like a text file (starts with {sample[:32].decode('ascii')!r})"
    return f"unknown magic number {head[:4].hex()}"


def read_capture(path: str | os.PathLike, chunk_size: int = 1 << 20) -> Iterator[Frame | Secrets | CaptureError]:
    """Yield the events of the capture at ``path`` (decompressed; ``path`` may name an archive member).

    Raises ``CaptureFormatError`` before yielding anything if the data is not pcap/pcapng, and
    ``OSError`` if the file cannot be opened.
    """
    for batch in read_capture_batches(path, chunk_size):
        yield from batch


def read_capture_batches(path: str | os.PathLike, chunk_size: int = 1 << 20, keep=None) -> Iterator[list]:
    """`read_capture` a list at a time (the events of one chunk read): the analyzer's hot loop iterates
    the lists itself, saving a generator hop per frame. ``keep``: `PcapParser`'s frame filter."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    try:
        with open_input(path) as (stream, compression):
            yield from _pump(path, stream, chunk_size, compression, keep)
    except ArchiveError as e:  # a password-protected archive member, a compression method Python lacks
        raise CaptureFormatError(path, str(e)) from e


def read_stream_batches(stream, name: str = "<stdin>", chunk_size: int = 1 << 20) -> Iterator[list]:
    """`read_capture_batches` for an already open binary stream that cannot seek (standard input, a pipe)."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    src, compression = decompressed(stream)
    try:
        head = read_head(src, 512)
    except damage_errors():  # a corrupt compressed stream: read (and reported) by _pump
        head = b""
    kind = looks_like_archive(head)
    if kind is not None:  # (a zip needs to seek; a tar could stream, but its members' key logs come after…)
        raise CaptureFormatError(name, f"a {kind} archive: acflow reads the captures in an archive from its file "
                                 "(give its path), not from standard input")
    try:
        yield from _pump(name, Prefixed(head, src), chunk_size, compression)
    finally:
        if compression is not None:
            src.close()


def _pump(path, stream, chunk_size: int, compression: str | None, keep=None) -> Iterator:
    parser = PcapParser(keep=keep)
    inside = f" (inside {compression})" if compression else ""
    # first read: make sure the magic number is available to tell "not a capture" apart
    head = b""
    damage: BaseException | None = None
    try:
        while len(head) < 4:
            # a small first read: a truncated gzip file still yields its first bytes (a large read of a
            # damaged stream raises before returning anything)
            chunk = stream.read(64)
            if not chunk:
                break
            head += chunk
    except damage_errors() as exc:
        if len(head) < 4:
            raise CaptureFormatError(path, f"corrupt {compression or 'compressed'} data ({exc})") from exc
        damage = exc  # report it after the frames that could be read
    if len(head) < 4:
        parser.feed(head)
        parser.close()
        raise CaptureFormatError(path, ("the file is empty" if not head else "the file is too short") + inside)
    events = parser.feed(head)
    if parser.unrecognized:
        if damage is None:  # a little more to say what it is (a text's first lines)
            try:
                head += stream.read(4096)
            except damage_errors():
                pass
        raise CaptureFormatError(path, _describe(head, path) + inside)
    yield events
    while damage is None:
        try:
            chunk = stream.read(chunk_size)
        except damage_errors() as exc:
            damage = exc
            break
        if not chunk:
            yield parser.close()
            return
        yield parser.feed(chunk)
    # offset -1: the position in the compressed file is not known
    yield [CaptureError(f"compressed stream is damaged or truncated: {damage}", -1)]
    yield parser.close()


def first_frame_time(path: str | os.PathLike, limit: int = 1 << 20) -> float | None:
    """The time of the first packet of the capture at ``path`` (decompressed), read from at most ``limit``
    bytes; None when it has none there or cannot be read (the analysis says why)."""
    try:
        read = 0
        for batch in read_capture_batches(path, chunk_size=1 << 16):
            for ev in batch:
                if isinstance(ev, Frame):
                    return ev.ts
            read += 1 << 16
            if read >= limit:
                return None
    except (OSError, CaptureFormatError, ValueError):
        return None
    return None


def in_time_order(paths: list) -> tuple[list, bool]:
    """``paths`` ordered by the time of their first packets ((ordered, moved): ``moved`` when that is not the order
    given). The files of a ring buffer named so that a shell's sorting mixes them up (tcpdump -C's `cap`,
    `cap1`, …, `cap10`, `cap2`) are read in the order they were written. When a file's first packet cannot be
    read (damaged, not a capture: the analysis says so), the order given is kept."""
    times = [first_frame_time(p) for p in paths]
    if any(t is None for t in times):
        return list(paths), False
    order = sorted(range(len(paths)), key=lambda i: (times[i], i))
    return [paths[i] for i in order], order != list(range(len(paths)))


def iter_frames(
    path: str | os.PathLike,
    chunk_size: int = 1 << 20,
    on_error: Callable[[CaptureError], None] | None = None,
    on_secrets: Callable[[Secrets], None] | None = None,
) -> Iterator[Frame]:
    """Yield only the frames of a capture; errors and embedded secrets go to optional callbacks."""
    for ev in read_capture(path, chunk_size):
        if type(ev) is Frame:
            yield ev
        elif type(ev) is CaptureError:
            if on_error is not None:
                on_error(ev)
        elif type(ev) is Secrets and on_secrets is not None:
            on_secrets(ev)
