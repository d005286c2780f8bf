"""`acflow batch` on a real Dask distributed cluster: a scheduler and two worker processes started here as
subprocesses (`dask scheduler`, `dask worker`), the batch run as `acflow batch --engine dask://…` in its own process.

One batch over every sample, the whole hostile corpus, a garbage file and two larger captures; one worker is killed
(SIGKILL, nanny and all) while it analyses one of the large captures. Then: every capture's rows and stored JSON
report equal its own single `analyze` with the same keys, nothing is missing, the garbage failed with its reason,
the README's query answers from the DuckDB file, and a re-run analyses nothing again.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

duckdb = pytest.importorskip("duckdb")
distributed = pytest.importorskip("distributed")

from analyzer import __version__  # noqa: E402
from analyzer.analyze import InputError, analyze_paths, load_keys  # noqa: E402
from analyzer.batch import discover, file_sha256, keylog_dir_files, neighbour_keylogs  # noqa: E402
from analyzer.report.json_report import to_document  # noqa: E402
from analyzer.store import COLUMNS, rows_from_document  # noqa: E402
from bench.scale import scale_capture  # noqa: E402

from .conftest import ROOT, SAMPLES  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"
RSA_KEY = SAMPLES / "tls12-rsa" / "server-key.pem"
BIG_COPIES = (400, 401)  # baseline ×N: a few seconds each, long enough to kill the worker running one


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", None)
    return env


def _spawn(args, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], env=_env(), stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=str(log.parent))


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, [worker Popen, worker Popen], a Client to watch the scheduler)."""
    d = tmp_path_factory.mktemp("dask")
    sched_file = d / "scheduler.json"
    procs = [_spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(sched_file)], d / "scheduler.log")]
    client = None
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists():
            assert procs[0].poll() is None, (d / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.2)
        time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            procs.append(_spawn(["distributed.cli.dask_worker", address, "--nworkers", "1", "--nthreads", "1",
                                 "--no-dashboard", "--name", f"w{i}"], d / f"worker{i}.log"))
        client = distributed.Client(address, timeout="30s")
        client.wait_for_workers(2, timeout=60)
        yield address, procs[1:], client
    finally:
        if client is not None:
            client.close()
        for p in reversed(procs):
            _stop(p)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The batch's inputs: (capture arguments, keylog dir, big capture paths, garbage path)."""
    d = tmp_path_factory.mktemp("inputs")
    keydir = d / "keylogs"
    keydir.mkdir()
    for k in sorted(SAMPLES.rglob("keys.log")):  # the corpus's captures are made from the samples: their keys
        shutil.copy(k, keydir / ("-".join(k.relative_to(SAMPLES).parts[:-1]) + ".log"))
    big = []
    for n in BIG_COPIES:
        sub = d / f"big{n}"
        sub.mkdir()
        scale_capture(SAMPLES / "baseline" / "capture.pcapng", sub / "capture.pcapng", n)
        shutil.copy(SAMPLES / "baseline" / "keys.log", sub / "keys.log")
        big.append(str(sub / "capture.pcapng"))
    garbage = d / "garbage" / "junk.pcapng"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a capture, whatever its name says\n" * 50 + bytes(range(256)) * 8)
    # directories as a support team would give them, plus corpus files whose names are not capture names
    notcap = CORPUS / "generated" / "notcap"
    args = [str(SAMPLES), str(CORPUS), *(str(Path(b).parent) for b in big), str(garbage),
            str(notcap / "random.bin"), str(notcap / "gzip-of-text.gz")]
    return args, keydir, big, str(garbage)


def _batch_cmd(args, keydir, db, address) -> list[str]:
    return [sys.executable, "-c", "from analyzer.cli import main; main()", "batch", *args, "--keylog-dir",
            str(keydir), "--rsa-key", str(RSA_KEY), "--engine", "dask://" + address.removeprefix("tcp://"),
            "-o", str(db)]


@functools.cache
def _reference(path: str, keydir) -> tuple[str, str | None, dict | None]:
    """(status, reason, JSON document) of the single `analyze` of ``path`` with the key logs the batch uses."""
    keys, info = load_keys(neighbour_keylogs(path) + keylog_dir_files(keydir), [RSA_KEY])
    try:
        analysis = analyze_paths([path], keys, info)
    except InputError as e:
        return "unreadable", str(e), None
    return "ok", None, to_document(analysis, version=__version__)


def _norm(table: str, row) -> tuple:
    """A row with its JSON columns parsed (DuckDB may re-serialise JSON text)."""
    row = list(row)
    for i, col in enumerate(COLUMNS[table]):
        if col in ("evidence", "other_traffic") and isinstance(row[i], str):
            row[i] = json.loads(row[i])
    return tuple(row)


def _rows(con, table: str, capture_hash: str) -> list[tuple]:
    order = "session_id NULLS FIRST, seq" if table != "sessions" else "session_id"
    rows = con.execute(f"SELECT * FROM {table} WHERE capture_hash = ? ORDER BY {order}", [capture_hash]).fetchall()
    return [_norm(table, r) for r in rows]


@pytest.fixture(scope="module")
def batch_run(cluster, inputs, tmp_path_factory):
    """The batch, with one worker killed while it runs one of the big captures."""
    address, workers, client = cluster
    args, keydir, big, _garbage = inputs
    db = tmp_path_factory.mktemp("out") / "results.duckdb"
    big_hashes = {file_sha256(p) for p in big}
    log = db.with_name("batch.log")
    proc = subprocess.Popen(_batch_cmd(args, keydir, db, address), env=_env(), stdout=subprocess.PIPE,
                            stderr=log.open("wb"), text=True)
    killed = None
    try:
        deadline = time.monotonic() + 120
        addresses = {}
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            if not addresses:
                addresses = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
            for addr, keys in client.processing().items():
                if any(h in k for k in keys for h in big_hashes):
                    time.sleep(0.5)  # well inside the few seconds the capture takes
                    name = next(n for n, a in addresses.items() if a == addr)
                    victim = workers[int(str(name)[1:])]
                    os.killpg(victim.pid, signal.SIGKILL)
                    victim.wait(timeout=10)
                    killed = addr
                    break
            time.sleep(0.05)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"rc": proc.returncode, "stdout": out, "log": log.read_text(), "db": db, "killed": killed,
            "still_running_at_kill": killed is not None}


def test_batch_rows_equal_single_analyze_despite_a_killed_worker(batch_run, inputs):
    args, keydir, big, garbage = inputs
    assert batch_run["rc"] == 0, batch_run["log"] + batch_run["stdout"]
    assert batch_run["killed"], "no worker was running a big capture while the batch ran: " + batch_run["log"]
    captures = discover(args)
    assert len(captures) > 100  # samples + corpus + ours
    con = duckdb.connect(str(batch_run["db"]), read_only=True)
    try:
        stored = {r[0]: r for r in con.execute("SELECT path, hash, status, error, worker, report_file "
                                               "FROM captures").fetchall()}
        # nothing lost: one row per distinct content (a duplicate file is reported once)
        hashes = {p: file_sha256(p) for p in captures}
        assert {r[1] for r in stored.values()} == set(hashes.values())
        counts = {"ok": 0, "unreadable": 0}
        for path, h in hashes.items():
            row = next((r for r in stored.values() if r[1] == h), None)
            assert row is not None, path
            status, reason, ref = _reference(row[0], keydir)
            assert row[2] == status, (path, row[3])
            counts[status] += 1
            if status != "ok":
                assert row[3] == reason and reason
                assert _rows(con, "sessions", h) == [] and _rows(con, "findings", h) == []
                continue
            assert json.loads(Path(row[5]).read_text()) == ref, path
            expected = rows_from_document(ref, h, row[0])
            for table in ("sessions", "phases", "findings"):
                assert _rows(con, table, h) == [_norm(table, r) for r in expected[table]], (path, table)
        assert counts["ok"] >= 40 and counts["unreadable"] >= 5, counts
        # the big captures: analysed by the surviving worker after the other one died under one of them
        for p in big:
            row = next(r for r in stored.values() if r[1] == hashes[p])
            assert row[2] == "ok" and row[4] != batch_run["killed"]
        # the garbage fails its own row with the reason, and the batch goes on
        grow = stored[garbage]
        assert grow[2] == "unreadable" and grow[3].startswith(garbage), grow
        assert f"unreadable: {garbage}: " in batch_run["stdout"]
        # every sample found its key log beside it (as keys.log), every session of it decrypted
        sample_rows = con.execute("SELECT count(*) FROM sessions s JOIN captures c ON c.hash = s.capture_hash "
                                  "WHERE c.path LIKE ? AND s.confidence = 'confirmed'",
                                  [str(SAMPLES) + "/%"]).fetchone()[0]
        assert sample_rows >= 35
    finally:
        con.close()


def _readme_query() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- batch-query -->\s*```sql\n(.*?)```", text, re.S)
    assert m, "README: the batch query block (marked <!-- batch-query -->) is missing"
    return m.group(1)


def test_readme_query_answers_from_the_duckdb_file(batch_run, inputs):
    """The README's "every session with DTLS_NO_RESPONSE last month, by gateway", run as "today" = the month after
    the samples' DTLS_NO_RESPONSE sessions; the answer must be the one the single analyses give."""
    _args, keydir, _big, _garbage = inputs
    con = duckdb.connect(str(batch_run["db"]), read_only=True)
    try:
        expected: dict[str, list] = {}
        months = set()
        for (path,) in con.execute("SELECT path FROM captures WHERE status = 'ok'").fetchall():
            _status, _reason, doc = _reference(path, keydir)
            for s in doc["sessions"]:
                if any(f["id"] == "DTLS_NO_RESPONSE" for f in s["findings"]):
                    t = time.gmtime(s["start"])
                    months.add((t.tm_year, t.tm_mon))
                    expected.setdefault((t.tm_year, t.tm_mon), []).append((s["gateway"], path, s["id"]))
        assert months, "no committed capture has a DTLS_NO_RESPONSE session"
        year, month = sorted(months)[0]
        today = f"DATE '{year + month // 12:04d}-{month % 12 + 1:02d}-15'"
        sql = _readme_query().replace("current_date", today)
        result = con.execute(sql).fetchall()
        want: dict[str, list] = {}
        for gw, path, sid in expected[(year, month)]:
            want.setdefault(gw, []).append((path, sid))
        got = {r[0]: r for r in result}
        assert set(got) == set(want)
        for gw, sessions in want.items():
            assert got[gw][1] == len(sessions)
            assert sorted(got[gw][2]) == sorted(f"{p} {sid}" for p, sid in sessions)
    finally:
        con.close()


def test_rerun_skips_what_is_stored(batch_run, inputs, cluster):
    address, _workers, _client = cluster
    args, keydir, _big, _garbage = inputs
    db = batch_run["db"]
    con = duckdb.connect(str(db), read_only=True)
    before = con.execute("SELECT hash, analysed_at FROM captures ORDER BY hash").fetchall()
    con.close()
    r = subprocess.run(_batch_cmd(args, keydir, db, address), env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"{len(before)} already in .*, 0 to analyse", r.stderr), r.stderr
    con = duckdb.connect(str(db), read_only=True)
    after = con.execute("SELECT hash, analysed_at FROM captures ORDER BY hash").fetchall()
    con.close()
    assert after == before


def test_local_engine_and_parquet(tmp_path):
    """The default engine (a LocalCluster of worker processes) and the Parquet copy of every table."""
    db, pq = tmp_path / "r.duckdb", tmp_path / "pq"
    args = [str(SAMPLES / "baseline"), str(SAMPLES / "dtls-blocked")]
    r = subprocess.run([sys.executable, "-c", "from analyzer.cli import main; main()", "batch", *args,
                        "--workers", "2", "-o", str(db), "--parquet", str(pq)], env=_env(), capture_output=True,
                       text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "ok 2" in r.stdout
    con = duckdb.connect(str(db), read_only=True)
    try:
        for table in ("captures", "sessions", "phases", "findings"):
            want = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            got = con.execute("SELECT * FROM read_parquet(?) ORDER BY ALL", [str(pq / f"{table}.parquet")]).fetchall()
            assert got == want and want, table
        assert con.execute("SELECT count(*) FROM phases").fetchone()[0] == 12
        # the verdict's outcome and the login's username, for a user's failed sessions
        assert sorted(con.execute("SELECT outcome, username FROM sessions").fetchall()) == \
            [("degraded", "alice"), ("healthy", "alice")]
    finally:
        con.close()
    # nothing to analyse: a directory without captures
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([sys.executable, "-c", "from analyzer.cli import main; main()", "batch", str(empty),
                        "-o", str(db)], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 4 and "no capture found" in r.stderr


def test_an_older_store_gets_the_new_session_columns(tmp_path):
    """A store written before `outcome` and `username` existed (the columns dropped here) gets them when opened, and
    rows from then on fill them."""
    from analyzer.store import Store

    db = tmp_path / "old.duckdb"
    Store(db).close()
    con = duckdb.connect(str(db))
    con.execute("ALTER TABLE sessions DROP COLUMN username")
    con.execute("ALTER TABLE sessions DROP COLUMN outcome")
    con.close()
    st = Store(db)
    try:
        cols = [r[0] for r in st.con.execute("DESCRIBE sessions").fetchall()]
        assert cols == COLUMNS["sessions"] and cols[-2:] == ["outcome", "username"]
    finally:
        st.close()


def _kill_worker(item, shared=()):
    """A capture whose analysis kills the worker process under it (as an out-of-memory kill does), a moment after it
    started (the worker has been given the next task meanwhile)."""
    if item.path.endswith("killer.pcapng"):
        time.sleep(0.5)
        os._exit(9)
    from analyzer.batch import analyze_capture

    return analyze_capture(item, shared)


def test_a_capture_that_kills_every_worker_is_a_lost_row(tmp_path, monkeypatch):
    """Per-capture isolation beyond exceptions: the scheduler reruns the task on a fresh worker, gives up after
    its allowed failures, and the batch reports that capture as lost and completes the others, those queued on the
    worker it killed included (the scheduler gives up on them with it: they are analysed again alone)."""
    import dask
    from distributed import Client, LocalCluster

    import analyzer.batch as B

    killer = tmp_path / "killer.pcapng"
    shutil.copy(SAMPLES / "baseline" / "capture.pcapng", killer)
    innocent = [SAMPLES / name / "capture.pcapng" for name in ("dtls-blocked", "mtu", "group-select")]
    items = [B.Item(path=str(p), hash=file_sha256(p), size=1 << 40 if p == killer else os.path.getsize(p),
                    mtime_ns=0, keys_digest="k" * 64, keylogs=[str(p.parent / "keys.log")])
             for p in (killer, *innocent)]  # (the killer first: the largest)
    monkeypatch.setattr(B, "analyze_capture", _kill_worker)
    out: dict = {}
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=50)
        client = Client(cluster)
        try:
            B.run_items(client, items, (), lambda it, r: out.__setitem__(it.path, r))
        finally:
            client.close()
            cluster.close()
    assert out[str(killer)]["status"] == "lost" and "died" in out[str(killer)]["error"]
    for p in innocent:
        assert out[str(p)]["status"] == "ok" and out[str(p)]["document"]["sessions"], p


def test_task_timeout_stops_a_long_analysis_and_a_rerun_tries_it_again(tmp_path):
    """--task-timeout: an analysis running past the limit is a `timeout` row saying how far it got (the worker is
    free for the next capture); a re-run tries it again and, given time, stores it `ok`. A FIFO named as a capture
    is refused before anything is read (reading it would block the batch)."""
    big = tmp_path / "long" / "capture.pcapng"
    scale_capture(SAMPLES / "baseline" / "capture.pcapng", big, 300)  # ~18 000 frames: many reader batches
    shutil.copy(SAMPLES / "baseline" / "keys.log", big.parent / "keys.log")
    small = SAMPLES / "dtls-blocked"
    db = tmp_path / "r.duckdb"
    cmd = [sys.executable, "-c", "from analyzer.cli import main; main()", "batch", str(big.parent), str(small),
           "--workers", "1", "-o", str(db), "-q"]
    r = subprocess.run([*cmd, "--task-timeout", "0.05"], env=_env(), capture_output=True, text=True, timeout=300,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "ok 1" in r.stdout and "timeout 1" in r.stdout, r.stdout
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = dict(con.execute("SELECT path, status FROM captures").fetchall())
        error = con.execute("SELECT error FROM captures WHERE status = 'timeout'").fetchone()[0]
    finally:
        con.close()
    assert rows == {str(big): "timeout", str(small / "capture.pcapng"): "ok"}
    assert "--task-timeout 0.05 s" in error and re.search(r"stopped at frame \d+ of ", error), error
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "ok 1" in r.stdout and "skipped 1" in r.stdout, r.stdout  # the timed-out capture again, in full
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT status FROM captures WHERE path = ?", [str(big)]).fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM sessions WHERE capture_path = ?", [str(big)]).fetchone()[0] >= 1
    finally:
        con.close()
    fifo = tmp_path / "stuck.pcapng"
    os.mkfifo(fifo)
    r = subprocess.run([*cmd[:5], str(fifo), "-o", str(db)], env=_env(), capture_output=True, text=True,
                       timeout=60, cwd=str(tmp_path))
    assert r.returncode == 4 and "not a regular file" in r.stderr, r.stderr
    assert discover([tmp_path]) == [str(big)]  # walking a directory skips the FIFO stuck.pcapng


def test_ring_buffer_files_are_grouped_by_their_names():
    from analyzer.batch import ring_sets
    d = "/cases/a"
    dumpcap = [f"{d}/gw_{n:05d}_202612060{n}0000.pcapng" for n in (1, 2, 3)]
    tcpdump = [f"{d}/cap.pcap", f"{d}/cap.pcap1", f"{d}/cap.pcap10", f"{d}/cap.pcap2"]
    wrapped = [f"{d}/w.pcapng0", f"{d}/w.pcapng1"]  # tcpdump -W: every name numbered
    other = [f"{d}/laptop.pcapng", f"{d}/gw.pcapng", "/cases/b/gw_00004_20261206040000.pcapng",
             f"{d}/gw_00001_20261206010000.pcap"]  # another directory, another extension: not the same ring
    units = ring_sets(sorted(dumpcap + tcpdump + wrapped + other))
    assert dumpcap in units
    assert [f"{d}/cap.pcap", f"{d}/cap.pcap1", f"{d}/cap.pcap2", f"{d}/cap.pcap10"] in units
    assert wrapped in units
    assert all([o] in units for o in other)
    assert len(units) == 3 + len(other)
    assert ring_sets([f"{d}/lone_00001_20261206010000.pcapng"]) == [[f"{d}/lone_00001_20261206010000.pcapng"]]


def test_a_ring_buffer_is_one_capture_in_the_store(tmp_path):
    """dumpcap's ring buffer files (editcap -c names them as dumpcap does) and tcpdump -C's, each with the key log
    beside them, next to an ordinary capture: two ring captures and one file, each ring's rows those of `acflow
    analyze` of its files; a re-run analyses nothing; one more ring file makes the ring a new capture."""
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap not installed")
    case = tmp_path / "case"
    (case / "gw").mkdir(parents=True)
    (case / "laptop").mkdir()
    subprocess.run([editcap, "-c", "30", str(SAMPLES / "keepalive-dpd" / "capture.pcapng"),
                    str(case / "gw" / "ring.pcapng")], check=True, capture_output=True)
    shutil.copy(SAMPLES / "keepalive-dpd" / "keys.log", case / "gw" / "keys.log")
    dumpcap = sorted(str(p) for p in (case / "gw").glob("ring_*.pcapng"))
    assert len(dumpcap) == 4
    pieces = tmp_path / "pieces"
    pieces.mkdir()
    subprocess.run([editcap, "-c", "25", str(SAMPLES / "dtls-blocked" / "capture.pcapng"),
                    str(pieces / "p.pcapng")], check=True, capture_output=True)
    tcpdump = []
    for i, p in enumerate(sorted(pieces.glob("p_*.pcapng"))):
        tcpdump.append(str(shutil.move(p, case / "laptop" / ("cap.pcapng" if i == 0 else f"cap.pcapng{i}"))))
    shutil.copy(SAMPLES / "dtls-blocked" / "keys.log", case / "laptop" / "keys.log")
    shutil.copy(SAMPLES / "baseline" / "capture.pcapng", case / "baseline.pcapng")
    db = tmp_path / "r.duckdb"
    cmd = [sys.executable, "-c", "from analyzer.cli import main; main()", "batch", str(case), "--workers", "1",
           "-o", str(db)]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "3 capture(s) (2 ring buffer(s) of " in r.stderr and "ok 3" in r.stdout, (r.stderr, r.stdout)
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = {row[0]: row[1:] for row in con.execute("SELECT path, files, hash, status FROM captures").fetchall()}
        sessions = {p: con.execute("SELECT count(*) FROM sessions WHERE capture_path = ?", [p]).fetchone()[0]
                    for p in stored}
    finally:
        con.close()
    assert set(stored) == {dumpcap[0], tcpdump[0], str(case / "baseline.pcapng")}
    assert stored[dumpcap[0]][0] == dumpcap
    assert stored[tcpdump[0]][0] == tcpdump[:2] + tcpdump[2:]  # cap.pcapng, cap.pcapng1, …: in number order
    assert all(v[2] == "ok" for v in stored.values())
    assert sessions == {dumpcap[0]: 1, tcpdump[0]: 1, str(case / "baseline.pcapng"): 1}
    for files, sample in ((dumpcap, "keepalive-dpd"), (tcpdump, "dtls-blocked")):
        report = json.loads((db.with_name(db.name + ".reports") / f"{stored[files[0]][1]}.json").read_text())
        keys, info = load_keys([SAMPLES / sample / "keys.log"], [])
        want = to_document(analyze_paths(files, keys, info), version=__version__)
        assert report["sessions"] == json.loads(json.dumps(want["sessions"]))
        assert [c["path"] for c in report["captures"]] == files
        assert report["sessions"][0]["verdict"]["outcome"] == "degraded"  # UDP blocked, as in the whole capture
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0 and "skipped 3" in r.stdout, r.stdout
    # the ring goes on: a fifth file makes it a new capture, which replaces the ring's rows (one capture per path)
    extra = case / "gw" / "ring_00004_20261205213806.pcapng"
    shutil.copy(dumpcap[-1], extra)
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0 and "ok 1" in r.stdout and "skipped 2" in r.stdout, r.stdout
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT files, hash FROM captures WHERE path = ?", [dumpcap[0]]).fetchall()
        assert [r[0] for r in rows] == [dumpcap + [str(extra)]]
        assert rows[0][1] != stored[dumpcap[0]][1]
        assert con.execute("SELECT count(DISTINCT capture_hash) FROM sessions WHERE capture_path = ?",
                           [dumpcap[0]]).fetchone()[0] == 1
    finally:
        con.close()
