"""I/O edge of the ingestion pipeline: read a capture file and yield parser events.

``read_capture(path)`` opens a pcap or pcapng file -- plain or gzip-compressed (detected by the
1f 8b magic, not by the file name) -- reads it in fixed-size chunks and feeds them to the sans-I/O
:class:`dissectors.pcapfile.PcapParser`, yielding its events (``Frame``, ``Secrets``,
``CaptureError``) lazily; memory use does not depend on the file size.

A file that is not a capture at all raises :class:`CaptureFormatError` (with a hint when the format
is recognisable, e.g. a key log or a zstd file). Damage *inside* a capture (truncation, a corrupt
gzip stream, a bad block) is reported in-band as a ``CaptureError`` event after every frame that could
be read, so that an analysis of a partial capture still works.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterator

from dissectors.pcapfile import CaptureError, Frame, PcapParser, Secrets

__all__ = ["CaptureError", "CaptureFormatError", "Frame", "Secrets", "iter_frames", "read_capture",
           "read_capture_batches", "read_stream_batches"]

_GZIP_MAGIC = b"\x1f\x8b"

_HINTS = (
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file (decompress it first: zstd -d)"),
    (b"\x04\x22\x4d\x18", "an lz4-compressed file (decompress it first: lz4 -d)"),
    (b"\xfd7zXZ\x00", "an xz-compressed file (decompress it first: xz -d)"),
    (b"BZh", "a bzip2-compressed file (decompress it first: bunzip2)"),
    (b"PK\x03\x04", "a zip archive (extract the capture first)"),
    (b"snoop\x00\x00\x00", "a Solaris snoop capture (convert it with: editcap -F pcapng IN OUT)"),
    (b"CLIENT_RANDOM ", "an NSS TLS key log file, not a capture"),
    (b"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "an NSS TLS key log file, not a capture"),
    (b"SERVER_HANDSHAKE_TRAFFIC_SECRET", "an NSS TLS key log file, not a capture"),
    (b"# SSL/TLS secrets log file", "an NSS TLS key log file, not a capture"),
    (b"RSA ", "an NSS TLS key log file, not a capture"),
)


class CaptureFormatError(ValueError):
    """The file is not a pcap or pcapng capture (possibly compressed with gzip)."""

    def __init__(self, path: str | os.PathLike, detail: str) -> None:
        self.path = os.fspath(path)
        self.detail = detail
        super().__init__(f"{self.path}: not a pcap/pcapng capture: {detail}")


def _describe(head: bytes) -> str:
    if not head:
        return "the file is empty"
    for magic, hint in _HINTS:
        if head.startswith(magic):
            return f"it looks like {hint}"
    sample = head[:64]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return f"it looks like a text file (starts with {sample[:32].decode('ascii')!r})"
    return f"unknown magic number {head[:4].hex()}"


def read_capture(path: str | os.PathLike, chunk_size: int = 1 << 20) -> Iterator[Frame | Secrets | CaptureError]:
    """Yield the events of the capture at ``path`` (gzip-transparent).

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
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        compressed = magic == _GZIP_MAGIC
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            yield from _pump(path, stream, chunk_size, compressed, keep)
        finally:
            if compressed:
                stream.close()


class _Prefixed:
    """A read-only stream: ``head`` (bytes already read to look at the magic number), then ``stream``."""

    def __init__(self, head: bytes, stream) -> None:
        self.head = head
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.stream.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.stream.read(n)


def read_stream_batches(stream, name: str = "<stdin>", chunk_size: int = 1 << 20) -> Iterator[list]:
    """`read_capture_batches` for an already open binary stream that cannot seek (standard input, a pipe)."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    head = stream.read(2)
    compressed = head == _GZIP_MAGIC
    src = _Prefixed(head, stream)
    src = gzip.GzipFile(fileobj=src, mode="rb") if compressed else src
    try:
        yield from _pump(name, src, chunk_size, compressed)
    finally:
        if compressed:
            src.close()


def _pump(path, stream, chunk_size: int, compressed: bool, keep=None) -> Iterator:
    parser = PcapParser(keep=keep)
    inside = " (inside gzip)" if compressed else ""
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
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        if len(head) < 4:
            raise CaptureFormatError(path, f"corrupt gzip data ({exc})") from exc
        damage = exc  # report it after the frames that could be read
    if len(head) < 4:
        parser.feed(head)
        parser.close()
        raise CaptureFormatError(path, ("the file is empty" if not head else "the file is too short") + inside)
    events = parser.feed(head)
    if parser.unrecognized:
        raise CaptureFormatError(path, _describe(head) + inside)
    yield events
    while damage is None:
        try:
            chunk = stream.read(chunk_size)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
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
    """The time of the first packet of the capture at ``path`` (gzip-transparent), read from at most ``limit``
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
        elif on_secrets is not None:
            on_secrets(ev)
