"""Output files that never lose work (I/O edge shared by `analyze`, `keys`, `live`, `lab`).

* `check_outputs` runs before any analysis: every output path must be writable (its directory exists, is a
  directory and may be written; an existing file may be replaced), must not be one of the inputs (a capture, a key
  log, an RSA key — compared by resolved path and by device/inode, so a hard link or `./x` is caught too), must
  not be given twice, and must not lie inside acflow's own installation. A failure is one line and exit status 4.
* ``-`` means standard output for an output and standard input for a capture (`is_stdio`).
* `AtomicFile` writes to a temporary file in the target's own directory and renames it over the target only when
  everything was written: an error or Ctrl-C leaves no partial file behind (and an older file of that name intact).
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

STDIO = "-"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class OutputError(Exception):
    """An output path that cannot or must not be written (the message says which and why)."""


def is_stdio(path) -> bool:
    return path is not None and os.fspath(path) == STDIO


def installation_dirs() -> list[Path]:
    """The directories of acflow's own installed packages (analyzer, dissectors, replay): never an output place."""
    here = Path(__file__).resolve().parent
    root = here.parent
    return [root / name for name in ("analyzer", "dissectors", "replay") if (root / name).is_dir()]


def site_root() -> Path | None:
    """The directory acflow's packages were installed into (site-packages), or None when running from a
    checkout (a source tree: pyproject.toml and lab/ beside analyzer/)."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "lab").is_dir():
        return None
    return root


def fences() -> list[Path]:
    """Where no output may go: acflow's package directories, and the site-packages they are installed in (when
    acflow runs from an installation, not from a checkout)."""
    site = site_root()
    return installation_dirs() + ([site] if site is not None else [])


def inside(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
        return True
    except ValueError:
        return False


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def check_output(label: str, path, inputs=()) -> None:
    """Raise OutputError unless ``path`` (for ``label``, e.g. "report", "inner packets") can be written without
    harm. ``inputs``: the paths read by this command."""
    if path is None or is_stdio(path):
        return
    p = Path(path)
    if str(path) == "":
        raise OutputError(f"{label}: empty output path")
    resolved = p.resolve()
    parent = resolved.parent
    if not parent.exists():
        raise OutputError(f"cannot write the {label} to {path}: directory {p.parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"cannot write the {label} to {path}: {p.parent} is not a directory")
    if p.is_dir():
        raise OutputError(f"cannot write the {label} to {path}: it is a directory")
    for d in fences():
        if inside(resolved, d):
            raise OutputError(f"refusing to write the {label} to {path}: it is inside acflow's installation ({d})")
    me = _identity(p)
    for src in inputs or ():
        if src is None or is_stdio(src):
            continue
        s = Path(src)
        if s.resolve() == resolved or (me is not None and _identity(s) == me):
            raise OutputError(f"refusing to write the {label} to {path}: it is an input ({src}); "
                              "choose another output file")
    try:
        # the one sure test (permissions, read-only file systems, /proc…): create a file there, as the end will
        fd, probe = _mkstemp(f".{p.name}.", ".acflow-check", parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write the {label} to {path}: cannot create files in {p.parent} "
                          f"({e.strerror or e})") from None
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputError(f"cannot write the {label} to {path}: the file exists and is not writable")


def _mkstemp(prefix: str, suffix: str, directory) -> tuple[int, str]:
    """A new file (mode 0600, opened for writing) with a random name in ``directory``: tempfile.mkstemp's
    contract, without loading tempfile (and shutil, bz2, lzma behind it) at every start of acflow."""
    for _ in range(100):
        name = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def check_lab_output(out) -> None:
    """`acflow lab --out`: a directory outside acflow's installation (its packages, and site-packages when acflow
    is installed rather than run from a checkout). It need not exist yet; its nearest existing parent must be a
    directory."""
    p = Path(out).resolve()
    for d in fences():
        if inside(p, d):
            raise OutputError(f"refusing to write lab output to {out}: it is inside acflow's installation ({d}); "
                              "give --out DIR or run from another directory")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot write lab output to {out}: {probe} is not a directory")


def check_outputs(outputs: dict, inputs=()) -> None:
    """`check_output` for each {label: path}; also refuses one file named for two outputs, and two outputs both
    on standard output."""
    seen: dict = {}
    stdout_users = [label for label, path in outputs.items() if is_stdio(path)]
    if len(stdout_users) > 1:
        raise OutputError(f"only one output can go to standard output ('-'): {' and '.join(stdout_users)}")
    for label, path in outputs.items():
        if path is None or is_stdio(path):
            continue
        check_output(label, path, inputs)
        key = _identity(Path(path)) or Path(path).resolve()
        other = seen.get(key) or seen.get(Path(path).resolve())
        if other is not None:
            raise OutputError(f"the {other} and the {label} would both be written to {path}")
        seen[key] = label
        seen[Path(path).resolve()] = label


class AtomicFile:
    """A file written to ``path`` all at once: data goes to a hidden temporary file in the same directory;
    `commit` renames it over ``path``, `abort` (or an exception inside ``with``, Ctrl-C included) removes it.
    ``path`` ``-`` writes to standard output directly (nothing to roll back there)."""

    def __init__(self, path, mode: str = "w") -> None:
        if mode not in ("w", "wb"):
            raise ValueError(mode)
        self.path = path
        self._tmp: str | None = None
        if is_stdio(path):
            self.file = sys.stdout.buffer if mode == "wb" else sys.stdout
            return
        p = Path(path)
        if p.is_symlink():
            # write through the link, as open() would: the file it names is replaced, the link stays
            p = p.resolve()
            self.path = p
        fd, self._tmp = _mkstemp(f".{p.name}.", ".acflow-partial", p.parent)
        try:
            # mkstemp makes the file 0600: give the result the mode a plain open() would have
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        except OSError:
            pass
        self.file = os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {}))

    def write(self, data) -> int:
        return self.file.write(data)

    def commit(self) -> None:
        if self._tmp is None:
            self.file.flush()
            return
        self.file.close()
        os.replace(self._tmp, self.path)
        self._tmp = None

    def abort(self) -> None:
        if self._tmp is None:
            return
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)
        self._tmp = None

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_text(path, text: str) -> None:
    """``text`` to ``path`` (``-``: standard output) atomically."""
    with AtomicFile(path, "w") as f:
        f.write(text)


def write_bytes(path, data: bytes) -> None:
    with AtomicFile(path, "wb") as f:
        f.write(data)


def say_interrupted(command: str) -> int:
    """Ctrl-C: clear the progress line, one line on stderr; the exit status 130."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    print(f"acflow {command}: interrupted; no output written", file=sys.stderr)
    return EXIT_INTERRUPTED
