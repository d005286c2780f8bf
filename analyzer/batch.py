"""`acflow batch`: many captures as independent tasks on Dask distributed, results into a DuckDB store (I/O edge).

    acflow batch CAPTURES… | DIR [--keylog-dir D] [--engine local | dask://HOST:PORT] [-o results.duckdb]
                                 [--parquet DIR] [--workers N] [--force]

Each capture is one task (``analyze_capture``): the same analysis as ``acflow analyze CAPTURE --keylog …`` with the
capture's own key material, its JSON report (docs/json-schema.md) sent back to this process, which alone writes the
store (analyzer/store.py). The engine is a `distributed.LocalCluster` of one single-threaded worker process per core
(the analysis is pure Python: processes, not threads), or the scheduler of an existing cluster; its workers must be
able to read the capture paths (a shared file system) and import acflow.

* Isolation: a capture that cannot be read, or whose analysis raises, is a row with status ``unreadable`` /
  ``error`` and the reason; never the end of the batch. A capture that kills its worker (memory, a crash) is
  retried by the scheduler on another worker; one that kills every worker it is given is a ``lost`` row.
* Time limit: ``--task-timeout S`` (default 1800 s; 0: none) stops an analysis that runs longer (checked between
  the reader's batches of frames) with status ``timeout`` and how far it got; a re-run tries it again (give a
  longer limit). Only regular files are analysed: a FIFO, device or socket named as a capture is refused before
  it is read (reading one could block for ever).
* Lost workers: the scheduler reruns the tasks of a worker that disappears; results already stored stay.
* Resumable: the store is written as each result arrives (one transaction per capture) and keyed by the SHA-256 of
  the capture; a re-run skips every capture whose content is already stored as ``ok`` or ``unreadable`` with the
  same key material (``--force`` analyses everything again). A file whose path, size and mtime are unchanged is not
  hashed again.
* Key material, per capture: key logs beside it (``<name>.keys``, ``<stem>.keys``, ``<stem>.keylog``,
  ``<stem>.log``, ``keys.log``, ``sslkeys.log`` in its directory — only files that look like an NSS key log),
  keys embedded in the pcapng (Decryption Secrets Blocks; always read), ``--keylog-dir D``: every key log under D,
  given to every capture (the key store matches them by client random), and ``--rsa-key`` for all.
* Archives (a support case's zip or tar, also compressed; named, or found in a directory): each capture in it is a
  capture of the batch, by its path through the archive (``cases/4711.zip/outside.pcapng``; analyzer/archive.py),
  with every key log in that archive beside it; its hash is that of its bytes as extracting it would write them (the
  same capture zipped and not is one capture), its mtime the archive's.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .archive import (
    ARCHIVE_SUFFIXES,
    ArchiveError,
    expand_archives,
    input_sha256,
    is_archive_name,
    is_keylog_text,
    members,
    read_input,
    split_member,
    stat_input,
)

EXIT_OK = 0
EXIT_INPUT = 4
EXIT_ENGINE = 6  # the Dask scheduler could not be reached / the cluster could not start

#: file names taken as captures when a directory is given (explicit file arguments are always taken)
CAPTURE_SUFFIXES = tuple(f"{base}{comp}" for base in (".pcap", ".pcapng", ".cap")
                         for comp in ("", ".gz", ".zst", ".xz", ".bz2"))
#: statuses a re-run does not analyse again (the same bytes and keys give the same result)
FINAL_STATUSES = ("ok", "unreadable")
#: seconds one capture's analysis may take by default (--task-timeout)
DEFAULT_TASK_TIMEOUT = 1800.0


class BatchInputError(Exception):
    """An argument that names nothing usable (the message says which)."""


# -- discovery (client side) ---------------------------------------------------------------------------------

def is_capture_name(name: str) -> bool:
    """A name a directory walk takes: a capture's, a ring buffer file's, or an archive's (zip, tar: the captures in
    it are taken, analyzer/archive.py)."""
    n = name.lower()
    return n.endswith(CAPTURE_SUFFIXES) or _TCPDUMP_RING.match(name) is not None or is_archive_name(n)


#: dumpcap's (and tshark's, editcap's) ring buffer and multiple files: PREFIX_NNNNN_YYYYmmddHHMMSS.EXT
_DUMPCAP_RING = re.compile(r"^(?P<prefix>.+)_(?P<n>\d{5,})_(?P<t>\d{14})"
                           r"(?P<ext>\.(?:pcapng|pcap|cap)(?:\.gz|\.zst|\.xz|\.bz2)?)$", re.IGNORECASE)
#: tcpdump -C / -W: NAME, NAME1, NAME2, … (-W: NAME0, NAME1, … zero-padded), NAME a capture file name
_TCPDUMP_RING = re.compile(r"^(?P<base>.+\.(?:pcapng|pcap|cap))(?P<n>\d+)$", re.IGNORECASE)


def ring_sets(paths: list[str]) -> list[list[str]]:
    """``paths`` as the units a batch analyses: the files of one ring buffer (dumpcap's PREFIX_NNNNN_TIME.EXT of
    one prefix and extension in one directory; tcpdump's NAME, NAME1, NAME2…) are one capture, a session cut across
    them holding together as in `acflow analyze FILES…` (which reads them in the time order of their first
    packets); every other file is a unit of its own. Units in the order of their first file."""
    numbered = {(d, t["base"]) for d, t in ((os.path.dirname(p), _TCPDUMP_RING.match(os.path.basename(p)))
                                            for p in paths) if t is not None}
    groups: dict[tuple, list[tuple]] = {}
    for p in paths:
        d, name = os.path.split(p)
        m = _DUMPCAP_RING.match(name)
        t = _TCPDUMP_RING.match(name) if m is None else None
        if m is not None:
            key, order = ("dumpcap", d, m["prefix"], m["ext"].lower()), (m["t"], int(m["n"]))
        elif t is not None:
            key, order = ("tcpdump", d, t["base"]), ("", int(t["n"]) + 1)
        elif (d, name) in numbered:
            key, order = ("tcpdump", d, name), ("", 0)  # the first file of tcpdump -C: NAME itself
        else:
            key, order = ("file", p), ("", 0)
        groups.setdefault(key, []).append((order, p))
    units = [[p for _o, p in sorted(members)] for members in groups.values()]
    return sorted(units, key=lambda u: u[0])


def discover(args, notes: list | None = None, expand: bool = True) -> list[str]:
    """Absolute paths of the captures named by ``args`` (files as given; directories walked for capture file
    names, in sorted order), without duplicates. An archive (zip, tar; named or found) stands for the captures in
    it, by their paths through it (``case.zip/outside.pcapng``); what an archive holds that is not read is added to
    ``notes``. An archive that holds no capture stays as it is (its analysis says why). ``expand`` False: archives
    stay as they are (`acflow analyze DIR` expands them itself, with their key logs)."""
    out: list[str] = []
    seen: set[str] = set()
    for a in args:
        p = Path(a)
        if p.is_dir():
            found = sorted(str(Path(root, f)) for root, _dirs, files in os.walk(p) for f in files
                           if is_capture_name(f) and Path(root, f).is_file())
        elif p.is_file() or split_member(p) is not None:
            found = [str(p)]
        elif p.exists():
            raise BatchInputError(f"{a}: not a regular file (a FIFO, device or socket is not read: it could block)")
        else:
            raise BatchInputError(f"{a}: no such file or directory")
        for f in found:
            f = os.path.abspath(f)
            if not expand:
                if f not in seen:
                    seen.add(f)
                    out.append(f)
                continue
            inside = expand_archives([f])
            if notes is not None:
                notes += inside.notes + ([inside.problem] if inside.problem else [])
            for c in inside.captures if inside.problem is None else [f]:
                if c not in seen:
                    seen.add(c)
                    out.append(c)
    return out


def looks_like_keylog(path: Path) -> bool:
    """A file whose first 64 KiB hold an NSS key log line (a client or gateway log beside the capture is not)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return is_keylog_text(head)


def neighbour_keylogs(capture: str) -> list[str]:
    """The key logs beside ``capture`` (see the module doc), in a fixed order; for a capture inside an archive, every
    key log in that archive (a support case's archive holds the case's key logs, wherever in it)."""
    where = split_member(capture)
    if where is not None:
        try:
            return [f"{where[0]}/{m.name}" for m in members(where[0]) if m.kind == "keylog"]
        except (ArchiveError, OSError):
            return []
    p = Path(capture)
    name = p.name
    stems = [name]
    for suffix in (".gz", ".zst", ".xz", ".bz2"):
        if name.lower().endswith(suffix):
            stems.append(name[:-len(suffix)])
    stems += [s.rsplit(".", 1)[0] for s in list(stems) if "." in s]
    candidates: list[str] = []
    for s in dict.fromkeys(stems):
        candidates += [f"{s}.keys", f"{s}.keylog", f"{s}.log"]
    candidates += ["keys.log", "sslkeys.log"]
    out = []
    for c in dict.fromkeys(candidates):
        q = p.with_name(c)
        if q != p and q.is_file() and looks_like_keylog(q):
            out.append(str(q))
    return out


def keylog_dir_files(directory) -> list[str]:
    """Every key log under ``directory`` (recursively, sorted)."""
    d = Path(directory)
    if not d.is_dir():
        raise BatchInputError(f"--keylog-dir {directory}: not a directory")
    return sorted(os.path.abspath(Path(root, f)) for root, _dirs, files in os.walk(d) for f in files
                  if looks_like_keylog(Path(root, f)))


def file_sha256(path, bufsize: int = 1 << 20) -> str:
    """The SHA-256 of a capture's bytes as stored (an archive member's as extracting it would write them)."""
    return input_sha256(path, bufsize)


# -- the task (worker side) ----------------------------------------------------------------------------------

@dataclass
class Item:
    """One capture to analyse: what the worker needs (paths must be readable there). A ring buffer's files are one
    capture: ``files`` (``path`` is the first; hash, size and mtime are the set's, see `plan`)."""
    path: str
    hash: str
    size: int
    mtime_ns: int
    files: list[str] = field(default_factory=list)  # a ring buffer's files, in name order; empty: ``path`` alone
    keylogs: list[str] = field(default_factory=list)  # key logs beside the capture
    rsa_keys: list[str] = field(default_factory=list)
    keys_digest: str = ""
    timeout: float | None = None  # seconds the analysis may take (--task-timeout), None: no limit


def load_capture_keys(keylogs, rsa_keys, shared=()):
    """(KeyStore, key info) as `acflow analyze --keylog K… --rsa-key R…` builds them, the key logs being
    ``keylogs`` read from disk followed by ``shared``: (path, text) pairs read once by the batch client
    (--keylog-dir), accounted for exactly as if they had been given with --keylog."""
    from .analyze import load_keys  # noqa: PLC0415

    keys, info = load_keys(keylogs, rsa_keys)
    if shared:
        rsa_files = info.pop("rsa_keys")
        errs = info.pop("keylog_errors")
        for path, text in shared:
            errors = keys.add_keylog_text(text)
            info["keylog_files"].append(path)
            errs += [f"{path}: {e}" for e in errors[:20]]
        info["rsa_keys"], info["keylog_errors"] = rsa_files, errs
        info["entries"] = len(keys)
    return keys, info


def analyze_capture(item: Item, shared=()) -> dict:
    """Analyse one capture; never raises for anything the capture or the analysis does: the outcome is the
    ``status`` (ok / unreadable / error) with the ``error`` reason, and the JSON report when ok."""
    from .analyze import AnalysisTimeout, InputError, analyze_paths  # noqa: PLC0415
    from .report.json_report import to_document  # noqa: PLC0415

    t0 = time.perf_counter()
    deadline = time.monotonic() + item.timeout if item.timeout else None
    status, error, doc = "ok", None, None
    try:
        keys, info = load_capture_keys(item.keylogs, item.rsa_keys, shared)
        files = item.files or [item.path]
        if len(files) > 1:
            from .capture import in_time_order  # noqa: PLC0415

            files = in_time_order(files)[0]  # tcpdump -W reuses its file names: names need not be time order
        analysis = analyze_paths(files, keys, info, deadline=deadline)
        doc = to_document(analysis, version=__version__)
    except InputError as e:
        status, error = "unreadable", str(e)
    except AnalysisTimeout as e:
        status, error = "timeout", (f"the analysis took longer than --task-timeout {item.timeout:g} s and was "
                                    f"stopped ({e}); analyse it alone with `acflow analyze`, or give a longer limit")
    except Exception as e:  # noqa: BLE001 - isolation: a bug on one capture is that capture's row, not the batch's
        status, error = "error", _describe(e)
    return {"hash": item.hash, "status": status, "error": error, "document": doc,
            "seconds": time.perf_counter() - t0, "worker": _worker_address()}


def _describe(e: BaseException) -> str:
    where = ""
    tb = traceback.extract_tb(e.__traceback__)
    if tb:
        last = tb[-1]
        where = f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    msg = str(e)
    if len(msg) > 500:
        msg = msg[:500] + "…"
    return f"{type(e).__name__}: {msg}{where}"


def _worker_address() -> str | None:
    try:
        from distributed import get_worker  # noqa: PLC0415

        return get_worker().address
    except (ImportError, ValueError):
        return None


# -- the batch (client side) ---------------------------------------------------------------------------------

@dataclass
class BatchResult:
    total: int = 0
    skipped: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, path with the same content)
    by_status: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (path, status, reason)


def plan(captures: list, store, *, keylogs_shared: list[tuple[str, str]], rsa_keys: list[str],
         timeout: float | None = None,
         force: bool = False) -> tuple[list[Item], BatchResult]:
    """The captures still to analyse (hashing what changed), and the counts of the others. A capture is a path or
    a ring buffer's files (`ring_sets`): its hash is the SHA-256 of its files' hashes in order, its size their sum,
    its mtime the latest (a file added to a ring that is still written makes it a new capture)."""
    res = BatchResult(total=len(captures))
    done = store.done()
    by_path = {v[2]: (h, v) for h, v in done.items()}
    shared_digest = hashlib.sha256()
    for path, text in keylogs_shared:
        shared_digest.update(path.encode() + b"\0" + text.encode("utf-8", "replace") + b"\0")
    for path in rsa_keys:
        shared_digest.update(b"rsa\0" + _read_bytes(path) + b"\0")
    items: list[Item] = []
    first_of: dict[str, str] = {}
    for unit in captures:
        files = [unit] if isinstance(unit, str) else list(unit)
        path = files[0]
        try:
            stats = [stat_input(f) for f in files]  # (size, mtime): an archive member's mtime is its archive's
            size, mtime = sum(st[0] for st in stats), max(st[1] for st in stats)
            known = by_path.get(path)
            if known is not None and known[1][3] == size and known[1][4] == mtime:
                h = known[0]
            elif len(files) == 1:
                h = file_sha256(path)
            else:
                h = hashlib.sha256(b"ring\0" + b"".join(file_sha256(f).encode() + b"\0" for f in files)).hexdigest()
        except OSError as e:  # no content, no hash, no row: said in the summary
            res.by_status["unreadable"] = res.by_status.get("unreadable", 0) + 1
            res.failed.append((path, "unreadable", f"cannot read {e.filename or path}: {e.strerror or e} "
                                                   "(not stored)"))
            continue
        if h in first_of:
            res.duplicates.append((path, first_of[h]))
            continue
        first_of[h] = path
        neighbours = list(dict.fromkeys(k for f in files for k in neighbour_keylogs(f)))
        kd = shared_digest.copy()
        for k in neighbours:
            kd.update(k.encode() + b"\0" + _read_bytes(k) + b"\0")
        keys_digest = kd.hexdigest()
        prev = done.get(h)
        if not force and prev is not None and prev[0] in FINAL_STATUSES and prev[1] == keys_digest:
            res.skipped += 1
            continue
        items.append(Item(path=path, hash=h, size=size, mtime_ns=mtime, files=files if len(files) > 1 else [],
                          keylogs=neighbours, rsa_keys=list(rsa_keys), keys_digest=keys_digest,
                          timeout=timeout or None))
    return items, res


def _read_bytes(path) -> bytes:
    try:
        return read_input(path)
    except (OSError, ValueError):
        return b""


def engine_address(engine: str) -> str | None:
    """None for a LocalCluster, else the scheduler address Dask understands (dask://H:P → tcp://H:P)."""
    if engine in ("local", ""):
        return None
    if engine.startswith("dask://"):
        return "tcp://" + engine[len("dask://"):]
    if engine.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        return engine
    raise ValueError(f"--engine {engine}: expected local or dask://HOST:PORT")


SHARED_INLINE_MAX = 4 << 20  # bytes of --keylog-dir text sent with each task rather than scattered


def run_items(client, items: list[Item], shared, on_result) -> None:
    """Submit every item to ``client`` (largest first) and call ``on_result(item, result)`` as each completes;
    a task the cluster gave up on (every worker running it died) is analysed again alone (see below) and becomes a
    ``lost`` result when that fails too."""
    from distributed import as_completed  # noqa: PLC0415

    # the --keylog-dir texts go with every task: scattered data lives only on the workers that hold it, and a
    # worker that dies (or one that joined after the scatter) would lose every task depending on it. Only a key
    # log directory too large to send with each task is scattered (to every worker).
    shared = list(shared)
    shared_f = shared
    if sum(len(text) for _path, text in shared) > SHARED_INLINE_MAX:
        shared_f = client.scatter(shared, broadcast=True)
    futures = {}
    for it in sorted(items, key=lambda i: -i.size):
        f = client.submit(analyze_capture, it, shared_f, key=f"acflow-analyze-{it.hash}-{it.keys_digest[:16]}",
                          priority=min(it.size, 1 << 62), pure=False)
        futures[f] = it
    given_up: list[Item] = []
    for f in as_completed(list(futures)):
        it = futures.pop(f)
        if f.status == "finished":
            on_result(it, f.result())
        else:
            given_up.append(it)
        f.release()
    # When a worker dies, the scheduler counts it against every task the worker held, the ones queued behind the
    # task that killed it too: an innocent capture can be given up on with a killer. Each is analysed again, one at a
    # time (nothing else running), before it is called lost.
    for it in given_up:
        f = client.submit(analyze_capture, it, shared_f, key=f"acflow-alone-{it.hash}-{it.keys_digest[:16]}",
                          pure=False)
        try:
            res = f.result()
        except Exception as exc:  # noqa: BLE001 - KilledWorker, or the cluster went away: the capture is lost
            res = {"hash": it.hash, "status": "lost", "document": None, "seconds": None, "worker": None,
                   "error": _lost_reason(exc)}
        f.release()
        on_result(it, res)


def _lost_reason(exc) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return ("every worker that analysed this capture died while doing so (out of memory or killed), also "
                f"when it was analysed alone; the scheduler gave up ({name})")
    return f"the cluster did not complete the task: {name}: {exc}"


def start_client(engine: str, workers: int | None):
    """(dask Client, cluster or None) for ``engine``."""
    from distributed import Client, LocalCluster  # noqa: PLC0415

    addr = engine_address(engine)
    if addr is not None:
        return Client(addr, timeout="20s"), None
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=40)
    return Client(cluster), cluster


def run_batch(*, inputs, keylog_dir, rsa_keys, engine, output, parquet, workers, force, quiet=False,
              task_timeout: float | None = DEFAULT_TASK_TIMEOUT) -> int:
    from .store import Store  # noqa: PLC0415

    err = sys.stderr
    try:
        engine_address(engine)
        notes: list = []
        captures = ring_sets(discover(inputs, notes))
        shared_files = keylog_dir_files(keylog_dir) if keylog_dir else []
        shared = [(p, Path(p).read_text(encoding="utf-8", errors="replace")) for p in shared_files]
        for r in rsa_keys:
            if not Path(r).is_file():
                raise BatchInputError(f"--rsa-key {r}: no such file")
    except (BatchInputError, ValueError, OSError) as e:
        print(f"acflow batch: {e}", file=err)
        return EXIT_INPUT
    if not quiet:
        for note in notes:
            print(f"acflow batch: {note}", file=err)
    if not captures:
        print(f"acflow batch: no capture found in {', '.join(map(str, inputs))} (capture files end in .pcap, "
              ".pcapng or .cap, also compressed: .gz, .zst, .xz, .bz2; archives holding captures: "
              f"{', '.join(ARCHIVE_SUFFIXES)})", file=err)
        return EXIT_INPUT
    rsa = [os.path.abspath(r) for r in rsa_keys]
    try:
        store = Store(output)
    except Exception as e:  # noqa: BLE001 - duckdb.Error (locked by another process, not a DuckDB file), OSError
        print(f"acflow batch: cannot open the results file {output}: {e}", file=err)
        return EXIT_INPUT
    try:
        items, res = plan(captures, store, keylogs_shared=shared, rsa_keys=rsa, force=force, timeout=task_timeout)
        rings = [u for u in captures if len(u) > 1]
        print(f"acflow batch: {len(captures)} capture(s)"
              + (f" ({len(rings)} ring buffer(s) of {sum(map(len, rings))} files, each one capture)" if rings else "")
              + f": {res.skipped} already in {output}, "
              f"{len(res.duplicates)} duplicate(s), {len(items)} to analyse"
              + (f"; key logs from {keylog_dir}: {len(shared)}" if keylog_dir else ""), file=err, flush=True)
        if items:
            try:
                client, cluster = start_client(engine, workers)
            except (OSError, TimeoutError) as e:
                print(f"acflow batch: cannot reach the Dask scheduler {engine}: {e}", file=err)
                return EXIT_ENGINE
            try:
                print(f"acflow batch: engine {engine}: {len(client.scheduler_info().get('workers', {}))} "
                      f"worker(s)", file=err, flush=True)
                _run_with_progress(client, items, shared, store, res, quiet=quiet)
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        if parquet:
            store.export_parquet(parquet)
    finally:
        store.close()
    _summary(res, output, parquet)
    return EXIT_OK


def _run_with_progress(client, items, shared, store, res: BatchResult, *, quiet: bool) -> None:
    err = sys.stderr
    n = len(items)
    count = 0
    bar = task = None
    if err.isatty() and not quiet:
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

        bar = Progress(TextColumn("acflow batch"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       TextColumn("{task.description}"), console=Console(stderr=True), transient=True)
        bar.start()
        task = bar.add_task("", total=n)

    def on_result(it: Item, r: dict) -> None:
        nonlocal count
        count += 1
        store.put(hash=it.hash, path=it.path, size=it.size, mtime_ns=it.mtime_ns, keys_digest=it.keys_digest,
                  status=r["status"], error=r.get("error"), version=__version__, seconds=r.get("seconds"),
                  worker=r.get("worker"), document=r.get("document"), files=it.files or [it.path])
        res.by_status[r["status"]] = res.by_status.get(r["status"], 0) + 1
        if r["status"] != "ok":
            res.failed.append((it.path, r["status"], r.get("error") or ""))
        if bar is not None:
            bar.update(task, advance=1, description="/".join(Path(it.path).parts[-2:]))
        elif not quiet:
            doc = r.get("document") or {}
            what = (f"{len(doc.get('sessions') or [])} session(s)" if r["status"] == "ok"
                    else r.get("error") or "")
            ring = f" (+{len(it.files) - 1} ring files)" if len(it.files) > 1 else ""
            print(f"[{count}/{n}] {r['status']:<10} {it.path}{ring}: {what}", file=err, flush=True)

    try:
        run_items(client, items, shared, on_result)
    finally:
        if bar is not None:
            bar.stop()


def _summary(res: BatchResult, output, parquet) -> None:
    out = sys.stdout
    parts = [f"{k} {v}" for k, v in sorted(res.by_status.items())]
    print(f"acflow batch: {res.total} capture(s): " + ", ".join(parts + [f"skipped {res.skipped}"]
          + ([f"duplicate {len(res.duplicates)}"] if res.duplicates else [])) + f"; results in {output}"
          + (f", Parquet in {parquet}" if parquet else ""), file=out)
    for path, status, reason in res.failed:
        print(f"  {status}: {path}: {reason}", file=out)
    for path, same in res.duplicates:
        print(f"  duplicate: {path}: same content as {same}", file=out)
