"""Captures as support cases arrive: compressed, or inside zip and tar archives (I/O edge).

Every capture and key log acflow reads is opened by `open_input(path)`, which yields a binary stream of its bytes
and the compression it was read through (None: none):

* a compressed file is told by its first bytes, never its name: gzip, xz, bzip2 (Python's standard library) and
  zstd (the `zstandard` package, a small compiled wheel; Python 3.11 has no zstd of its own);
* a member of a zip or tar archive (tar plain, or compressed as above) is named by a path through the archive,
  ``case.zip/captures/outside.pcapng``: the archive's own path, then the member's name inside it (`split_member`),
  the same name the report prints, so a name from a report can be given back to acflow. A member may be compressed
  itself (``case.zip/outside.pcapng.gz``).

`expand_archives(paths)` replaces each archive among the paths by the captures in it — members whose bytes
(decompressed) start as a pcap or pcapng file does, whatever their names: ASA and FTD captures are often saved
without an extension — and finds the key logs in it (members holding an NSS key log line).

Nothing is extracted: members are streamed to the reader, so no member name (``../../etc/passwd``, an absolute
path, a link) writes or reads anything outside the archive. Members inside a member that is itself an archive are
not read (said, with what to do). Hostile archives: at most MAX_MEMBERS members are looked at, each by its first
HEAD_BYTES bytes; a key log is read up to MAX_KEYLOG_BYTES; a capture is read as a stream (memory does not grow with
it, however far it decompresses).
"""
from __future__ import annotations

import contextlib
import errno
import functools
import gzip
import hashlib
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from dissectors.pcapfile import CAPTURE_MAGICS

__all__ = ["ArchiveError", "Expansion", "Member", "Prefixed", "Salvaging", "TarMember", "archive_kind",
           "damage_errors", "expand_archives", "input_sha256", "is_archive_name", "is_keylog_text",
           "looks_like_archive", "members", "open_input", "read_head", "read_input", "split_member", "stat_input"]

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")  # a member first; an empty archive; a spanned one
_KEYLOG_LABELS = (b"CLIENT_RANDOM ", b"CLIENT_HANDSHAKE_TRAFFIC_SECRET ", b"SERVER_HANDSHAKE_TRAFFIC_SECRET ",
                  b"CLIENT_TRAFFIC_SECRET_0 ", b"SERVER_TRAFFIC_SECRET_0 ", b"EXPORTER_SECRET ",
                  b"EARLY_EXPORTER_SECRET ", b"CLIENT_EARLY_TRAFFIC_SECRET ", b"RSA ")
#: names a directory walk takes as archives (given by name, any file is looked at by its content)
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst")

MAX_MEMBERS = 100_000
HEAD_BYTES = 1 << 16
MAX_KEYLOG_BYTES = 256 << 20

def damage_errors() -> tuple:
    """What reading a damaged or truncated compressed stream or archive raises (the reader reports it after the
    frames it could read). The modules of the formats acflow met so far only (evaluated when an exception is being
    matched: `except damage_errors()`): xz, zip, tar and zstd are imported when a file needs them, not at start-up."""
    errs: list = [EOFError, gzip.BadGzipFile, zlib.error, OSError]
    loaded = sys.modules
    for module, name in (("lzma", "LZMAError"), ("zipfile", "BadZipFile"), ("tarfile", "TarError"),
                         ("zstandard", "ZstdError")):
        if module in loaded:
            errs.append(getattr(loaded[module], name))
    return tuple(errs)


def _zstd():
    """The `zstandard` module, or None when it is not installed (a zstd file then gets a hint, like lz4's)."""
    try:
        import zstandard  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on the installation
        return None
    return zstandard


class ArchiveError(ValueError):
    """An archive member that cannot be read as it is (password-protected, a compression method Python lacks)."""


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


# -- compression ----------------------------------------------------------------------------------------------

class Prefixed:
    """A read-only stream: ``head`` (bytes already read to look at the magic number), then the rest of ``stream``."""

    def __init__(self, head: bytes, stream) -> None:
        self.head = head
        self.stream = stream

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.stream.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out + self.stream.read(n - len(out)) if len(out) < n else out
        return self.stream.read(n)

    def close(self) -> None:
        pass


class Salvaging:
    """A stream read in pieces of PIECE bytes, so that a read meeting damage (a truncated gzip, a cut archive)
    returns what came before it, the error being raised by the next read: the decompressors raise on a read that
    meets the damage without returning the bytes they decompressed for it, which on a 1 MiB read of a capture
    would lose up to its last MiB."""

    PIECE = 1 << 14

    def __init__(self, stream, eof_on_damage: bool = False) -> None:
        self.stream = stream
        self.error: BaseException | None = None
        #: at the damage, end (the error kept in ``error`` for the reader above, `TarMember`) instead of raising
        self.eof_on_damage = eof_on_damage

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.error is not None:
            if self.eof_on_damage:
                return b""
            err, self.error = self.error, None
            raise err
        pieces: list = []
        got = 0
        while n is None or n < 0 or got < n:
            want = self.PIECE if n is None or n < 0 else min(self.PIECE, n - got)
            try:
                chunk = self.stream.read(want)
            except damage_errors() as e:
                if not pieces and not self.eof_on_damage:
                    raise
                self.error = e
                break
            if not chunk:
                break
            pieces.append(chunk)
            got += len(chunk)
        return b"".join(pieces)

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()


def compression_of(head: bytes) -> str | None:
    """The compression a stream starting with ``head`` (at least 6 bytes, when it has them) is in, else None."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[3:4] != b"0":
        return "bzip2"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def decompressed(stream) -> tuple[object, str | None]:
    """(the bytes of ``stream`` decompressed, the compression's name) — ``stream`` itself (behind its first bytes,
    read to tell) and None when it is not compressed, or compressed with zstd and `zstandard` is missing (the
    capture reader then names the compression). Only ``read`` of ``stream`` is used: a pipe will do."""
    head = b""
    while len(head) < 6:
        chunk = stream.read(6 - len(head))
        if not chunk:
            break
        head += chunk
    src = Prefixed(head, stream)
    kind = compression_of(head)
    if kind == "gzip":
        return Salvaging(gzip.GzipFile(fileobj=src, mode="rb")), kind
    if kind == "xz":
        import lzma  # noqa: PLC0415

        return Salvaging(lzma.LZMAFile(src, "rb")), kind
    if kind == "bzip2":
        import bz2  # noqa: PLC0415

        return Salvaging(bz2.BZ2File(src, "rb")), kind
    zstd = _zstd() if kind == "zstd" else None
    if zstd is not None:
        return Salvaging(zstd.ZstdDecompressor().stream_reader(src, read_across_frames=True, closefd=False)), kind
    return src, None


def read_head(stream, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


# -- archives -------------------------------------------------------------------------------------------------

def archive_kind(path) -> str | None:
    """"zip" or "tar" (plain or compressed) when the regular file ``path`` is such an archive, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if head.startswith(_ZIP_MAGICS):
                return "zip"
            f.seek(0)
            src, _kind = decompressed(f)
            block = read_head(src, 512)
    except (*damage_errors(), ValueError):
        return None
    return "tar" if _is_tar_block(block) else None


def _is_tar_block(block: bytes) -> bool:
    """A tar header block: POSIX ustar or GNU magic at offset 257 and a header checksum that adds up."""
    if len(block) < 512 or block[257:262] != b"ustar":
        return False
    try:
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:512])


def looks_like_archive(head: bytes) -> str | None:
    """"zip" or "tar" when the (decompressed) bytes ``head`` (512 of them for a tar) start such an archive."""
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    return "tar" if _is_tar_block(head[:512]) else None


def split_member(path) -> tuple[str, str] | None:
    """(archive, member) when ``path`` names a member inside an archive file (``case.zip/dir/x.pcap``), else None —
    also when ``path`` exists as it is."""
    where = _locate(path)
    return where[:2] if where is not None else None


def _locate(path) -> tuple[str, str, str] | None:
    """`split_member` and the archive's kind (`archive_kind`), read once."""
    p = os.fspath(path)
    if not p or os.path.exists(p):
        return None
    parts = p.replace(os.sep, "/").split("/")
    for i in range(len(parts) - 1, 0, -1):
        prefix = "/".join(parts[:i])
        if prefix and os.path.isfile(prefix):
            kind = archive_kind(prefix)
            return (prefix, "/".join(parts[i:]), kind) if kind else None
        if prefix and os.path.isdir(prefix):
            return None
    return None


@dataclass(frozen=True)
class Member:
    """A member of an archive, as `members` found it: ``kind`` capture, keylog, archive, other, or unreadable (the
    reason in ``note``)."""
    name: str
    size: int
    kind: str
    compression: str | None = None
    note: str = ""


def is_keylog_text(head: bytes) -> bool:
    """The first bytes of a file hold an NSS key log line (a client or gateway log beside a capture do not)."""
    return any(line.lstrip().startswith(_KEYLOG_LABELS) for line in head.splitlines())


def classify_head(head: bytes) -> str:
    """What the first bytes of a (decompressed) member are: capture, keylog, archive or other."""
    if head[:4] in CAPTURE_MAGICS:
        return "capture"
    if looks_like_archive(head) is not None:
        return "archive"
    return "keylog" if is_keylog_text(head) else "other"


def _look(name: str, size: int, opener) -> Member:
    """A member, by its first bytes (decompressed when it is compressed itself). A member damaged further on (a cut
    archive) is taken by the bytes before the damage: the capture reader reads up to it and says where it stopped."""
    try:
        with opener() as f:
            src, comp = decompressed(f)
            guard = Salvaging(src, eof_on_damage=True)  # the bytes before a damage, the damage kept
            head = read_head(guard, HEAD_BYTES)
    except ArchiveError as e:
        return Member(name, size, "unreadable", None, str(e))
    except (*damage_errors(), ValueError) as e:
        return Member(name, size, "unreadable", None, f"damaged ({e})")
    if guard.error is not None and len(head) < 64:
        return Member(name, size, "unreadable", None, f"damaged ({guard.error})")
    return Member(name, size, classify_head(head), comp)


def members(archive) -> list[Member]:
    """The regular-file members of ``archive`` (zip or tar, see `archive_kind`), at most MAX_MEMBERS, in the
    archive's order. Raises ArchiveError when it is not an archive or cannot be listed at all. Listed once per
    version of the archive file (its path, size and modification time): a batch asks for every member's."""
    st = os.stat(archive)
    return list(_members(os.fspath(archive), st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _members(archive: str, _size: int, _mtime_ns: int) -> tuple[Member, ...]:
    return tuple(_list(archive))


def _list(archive: str) -> list[Member]:
    import zipfile  # noqa: PLC0415

    kind = archive_kind(archive)
    out: list[Member] = []
    if kind == "zip":
        try:
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist()[:MAX_MEMBERS]:
                    if not info.is_dir():
                        out.append(_look(info.filename, info.file_size, lambda i=info: _zip_open(z, i)))
        except (*damage_errors(), ValueError) as e:
            raise ArchiveError(f"{archive}: a damaged zip archive ({e})") from e
        return out
    if kind == "tar":
        try:
            with open(archive, "rb") as raw:
                t, guard = _tar_stream(raw)
                with t:
                    for info in t:
                        if len(out) >= MAX_MEMBERS:
                            break
                        if not info.isreg():
                            continue
                        out.append(_look(_tar_name(info.name), info.size, lambda i=info: TarMember(t, i, guard)))
                if guard.error is not None:
                    raise guard.error
        except (*damage_errors(), ValueError) as e:
            if not out:
                raise ArchiveError(f"{archive}: a damaged tar archive ({e})") from e
            out.append(Member("", 0, "unreadable", None, f"the archive is damaged after this member ({e})"))
        return out
    raise ArchiveError(f"{archive}: not a zip or tar archive")


def _tar_name(name: str) -> str:
    """A tar member's name as acflow shows it: without the ``./`` of `tar -C DIR .`."""
    while name.startswith("./"):
        name = name[2:]
    return name


class TarMember:
    """The bytes of the tar member the stream-mode TarFile ``t`` is at (its header just read), read from the archive's
    stream itself: tarfile's own member reader raises at a damage without the bytes before it. ``guard``: the
    `Salvaging` (eof_on_damage) stream under ``t``, whose error is raised once the bytes before it are read."""

    def __init__(self, t, info, guard: Salvaging) -> None:
        self.stream = t.fileobj
        self.left = info.size
        self.guard = guard

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if n is None or n < 0 else min(n, self.left)
        data = self.stream.read(min(want, 8192)) if want > 8192 else self.stream.read(want)
        self.left -= len(data)
        if not data:
            self.left = 0
            raise self.guard.error or EOFError("the tar archive ends inside this member")
        return data

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _tar_stream(raw):
    """(stream-mode TarFile over the file ``raw``, plain or compressed; the `Salvaging` guard under it)."""
    import tarfile  # noqa: PLC0415

    src, _comp = decompressed(raw)
    guard = Salvaging(src, eof_on_damage=True)
    return tarfile.open(fileobj=guard, mode="r|"), guard


def _zip_open(z, info):
    """The member ``info`` of the zip ``z``, opened; ArchiveError when it cannot be read as it is."""
    if info.flag_bits & 1:
        raise ArchiveError("password-protected (extract it with its password first)")
    try:
        return z.open(info)
    except NotImplementedError as e:  # Deflate64 (Windows' compressed folders for big files), PPMd…
        raise ArchiveError(f"compressed with a method Python's zipfile cannot read ({e}): extract it with 7-Zip "
                           "or unzip first") from e
    except RuntimeError as e:  # encrypted
        raise ArchiveError(f"cannot be read without a password ({e})") from e


@contextlib.contextmanager
def _open_member(archive: str, member: str, kind: str) -> Iterator:
    import zipfile  # noqa: PLC0415

    name = f"{archive}/{member}"
    if kind == "zip":
        with zipfile.ZipFile(archive) as z:
            try:
                info = z.getinfo(member)
            except KeyError:
                raise FileNotFoundError(errno.ENOENT, "no such member in the zip archive", name) from None
            try:
                f = _zip_open(z, info)
            except ArchiveError as e:
                raise ArchiveError(f"{name}: {e}") from e
            with f:
                yield f
        return
    if kind == "tar":
        with open(archive, "rb") as raw:
            t, guard = _tar_stream(raw)
            with t:
                for info in t:
                    if _tar_name(info.name) == member and info.isreg():
                        yield TarMember(t, info, guard)
                        return
        raise FileNotFoundError(errno.ENOENT, "no such member in the tar archive", name)
    raise FileNotFoundError(errno.ENOENT, "no such file", name)


@contextlib.contextmanager
def open_input(path, decompress: bool = True) -> Iterator[tuple[object, str | None]]:
    """(a binary stream of the bytes of ``path`` — a file, or a member inside an archive — decompressed, the
    compression's name or None). Raises OSError (FileNotFoundError…) when it cannot be opened, ArchiveError when
    an archive member cannot be read as it is. ``decompress`` False: the bytes as stored (a member as extracting
    it would write it), compression None."""
    where = _locate(path)
    with (open(path, "rb") if where is None else _open_member(*where)) as raw:
        if where is not None:  # a member of a compressed tar, of a deflated zip: read up to any damage
            raw = Salvaging(raw)
        if not decompress:
            yield raw, None
            return
        src, kind = decompressed(raw)
        try:
            yield src, kind
        finally:
            if kind is not None:
                src.close()


def input_sha256(path, bufsize: int = 1 << 20) -> str:
    """The SHA-256 of ``path``'s bytes as stored: a file's, or an archive member's as extracting it would write it
    (the same capture zipped or not has the same hash)."""
    h = hashlib.sha256()
    with open_input(path, decompress=False) as (f, _none):
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def read_input(path, limit: int = MAX_KEYLOG_BYTES) -> bytes:
    """The bytes of ``path`` (see `open_input`), at most ``limit`` of them (ValueError beyond: a key log that big
    is not one)."""
    with open_input(path) as (src, _kind):
        data = read_head(src, limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path}: more than {limit >> 20} MiB once decompressed")
    return data


def stat_input(path) -> tuple[int, int]:
    """(size, mtime in ns) of ``path``: a file's own, or for an archive member its size in the archive and the
    archive's modification time (the member changes only with the archive). Raises OSError."""
    where = split_member(path)
    if where is None:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    archive, member = where
    st = os.stat(archive)
    try:
        listed = members(archive)
    except ArchiveError as e:
        raise OSError(errno.EIO, str(e), os.fspath(path)) from e
    for m in listed:
        if m.name == member:
            return m.size, st.st_mtime_ns
    raise FileNotFoundError(errno.ENOENT, "no such member in the archive", os.fspath(path))


# -- expansion ------------------------------------------------------------------------------------------------

@dataclass
class Expansion:
    """What `expand_archives` made of the paths given."""
    captures: list = field(default_factory=list)
    keylogs: list = field(default_factory=list)  # key logs found inside the archives
    notes: list = field(default_factory=list)  # for standard error: what was found, what was not read and why
    problem: str | None = None  # an archive with no capture in it


def expand_archives(paths, stdio: str = "-") -> Expansion:
    """``paths`` with each archive replaced by the captures in it (their paths through the archive, in the
    archive's order), the key logs in them, and notes on what was not read."""
    out = Expansion()
    for p in paths:
        s = os.fspath(p)
        if s == stdio or not os.path.isfile(s) or archive_kind(s) is None:
            out.captures.append(p)
            continue
        try:
            found = members(s)
        except ArchiveError as e:
            out.problem = str(e)
            return out
        caps = [m for m in found if m.kind == "capture"]
        keys = [m for m in found if m.kind == "keylog"]
        out.captures += [f"{s}/{m.name}" for m in caps]
        out.keylogs += [f"{s}/{m.name}" for m in keys]
        skipped = [m for m in found if m.kind in ("archive", "unreadable")]
        for m in skipped:
            why = m.note if m.kind == "unreadable" else "an archive inside the archive (extract it first)"
            out.notes.append(f"{s}: not read: {m.name or '(end)'}: {why}")
        if not caps:
            held = ", ".join(m.name for m in found[:8]) + (", …" if len(found) > 8 else "")
            out.problem = (f"{s}: no pcap or pcapng capture could be read in it (see above)" if skipped else
                           f"{s}: an archive without a pcap or pcapng capture in it"
                           + (f" (it holds: {held})" if found else " (it is empty)"))
            if any(m.name.lower().endswith(".etl") for m in found):
                out.problem += ("; its .etl files are Windows traces (pktmon, netsh trace): convert them first "
                                "(pktmon etl2pcap IN --out OUT.pcapng, or Microsoft's etl2pcapng)")
            return out
        shown = ", ".join(m.name for m in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        out.notes.append(f"{s}: {len(caps)} capture(s)" + (f", key log(s) used: {shown}" if keys else ""))
    return out
