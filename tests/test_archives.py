"""Captures as support cases arrive: compressed (gzip, xz, bzip2, zstd) or inside zip and tar archives
(analyzer/archive.py).

The truth is the analysis of the same lab capture as a plain file with its key log given: every archive and
compression of it must read exactly so (the same JSON but for the names of the files), the key logs in an archive
being used without --keylog. Archives are made here with Python's zipfile/tarfile and the `zstandard` package;
the unusual ones with the tools users make them with: Info-ZIP `zip -P` (a password-protected zip), 7-Zip (a
Deflate64 zip, as Windows' compressed folders write big files), both installed by `make deps`.
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer import archive
from analyzer.capture import CaptureFormatError, read_capture

from .conftest import sample
from .helpers import ring_pieces

BASE = sample("baseline")
CAP = BASE / "capture.pcapng"
KEYS = BASE / "keys.log"


def run(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", "--format", "json", "--show-secrets",
                           *map(str, args)], capture_output=True, input=stdin)


@pytest.fixture(scope="module")
def truth() -> str:
    r = run("--keylog", KEYS, CAP)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def same_as_truth(r: subprocess.CompletedProcess, truth: str, capture_name: str, keylog_name: str | None) -> None:
    """The report of ``r`` is the plain capture's, once the capture and key log are named as in ``truth``."""
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode()
    doc = json.loads(text)
    assert [c["path"] for c in doc["captures"]] == [capture_name]
    if keylog_name is not None:
        assert doc["captures"][0]["keys"]["keylog_files"] == [keylog_name]
        text = text.replace(json.dumps(keylog_name), json.dumps(str(KEYS)))
    assert text.replace(json.dumps(capture_name), json.dumps(str(CAP))) == truth


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


COMPRESSIONS = {"gz": gzip.compress, "xz": lzma.compress, "bz2": bz2.compress, "zst": _zstd}


@pytest.mark.parametrize("ext", sorted(COMPRESSIONS))
def test_a_compressed_capture_reads_as_the_plain_one(tmp_path, truth, ext):
    """Told by its first bytes: the same compressed file under a name that says nothing reads the same."""
    data = COMPRESSIONS[ext](CAP.read_bytes())
    for name in (f"capture.pcapng.{ext}", "outside"):
        f = tmp_path / name
        f.write_bytes(data)
        same_as_truth(run("--keylog", KEYS, f), truth, str(f), None)


@pytest.mark.parametrize("ext", sorted(COMPRESSIONS))
def test_a_compressed_capture_on_standard_input(truth, ext):
    r = run("--keylog", KEYS, "-", stdin=COMPRESSIONS[ext](CAP.read_bytes()))
    same_as_truth(r, truth, "<stdin>", None)


def _zip(path, members: dict, method=zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(path, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _tar(path, members: dict, mode: str) -> None:
    if mode == "w|zst":
        buf = io.BytesIO()
        _tar(buf, members, "w")
        path.write_bytes(_zstd(buf.getvalue()))
        return
    with tarfile.open(path, mode) if not isinstance(path, io.BytesIO) else tarfile.open(fileobj=path, mode=mode) \
            as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


ARCHIVES = {"zip": ("case.zip", lambda p, m: _zip(p, m)),
            "zip-stored": ("case.zip", lambda p, m: _zip(p, m, zipfile.ZIP_STORED)),
            "zip-bzip2": ("case.zip", lambda p, m: _zip(p, m, zipfile.ZIP_BZIP2)),
            "zip-lzma": ("case.zip", lambda p, m: _zip(p, m, zipfile.ZIP_LZMA)),
            "tar": ("case.tar", lambda p, m: _tar(p, m, "w")),
            "tar.gz": ("case.tgz", lambda p, m: _tar(p, m, "w:gz")),
            "tar.xz": ("case.tar.xz", lambda p, m: _tar(p, m, "w:xz")),
            "tar.bz2": ("case.tar.bz2", lambda p, m: _tar(p, m, "w:bz2")),
            "tar.zst": ("case.tar.zst", lambda p, m: _tar(p, m, "w|zst"))}


@pytest.mark.parametrize("kind", sorted(ARCHIVES))
def test_a_case_archive_reads_its_capture_with_its_key_log(tmp_path, truth, kind):
    """A support case's archive: the capture found by its content (an ASA capture saved without an extension, in a
    folder), the key log in it used without --keylog, the logs beside them not taken for either; the names printed
    are paths through the archive, and given back to acflow they read the same."""
    name, make = ARCHIVES[kind]
    arc = tmp_path / name
    make(arc, {"notes/case-4711.txt": b"customer says: VPN drops\n",
               "asa/outside-cap": CAP.read_bytes(),
               "client/ssl-keys.txt": KEYS.read_bytes(),
               "client/client.log": (BASE / "client.log").read_bytes()})
    r = run(arc)
    same_as_truth(r, truth, f"{arc}/asa/outside-cap", f"{arc}/client/ssl-keys.txt")
    assert f"{arc}: 1 capture(s), key log(s) used: client/ssl-keys.txt" in r.stderr.decode()
    # the names in the report are inputs: the member itself, the key log through the archive
    r = run("--keylog", f"{arc}/client/ssl-keys.txt", f"{arc}/asa/outside-cap")
    same_as_truth(r, truth, f"{arc}/asa/outside-cap", f"{arc}/client/ssl-keys.txt")
    # a member that is not there: an input error naming it
    r = run(f"{arc}/asa/inside-cap")
    assert r.returncode == 4 and b"inside-cap" in r.stderr


def test_a_compressed_capture_inside_a_zip(tmp_path, truth):
    arc = tmp_path / "case.zip"
    _zip(arc, {"outside.pcapng.gz": gzip.compress(CAP.read_bytes()), "keys.log": KEYS.read_bytes()},
         zipfile.ZIP_STORED)
    same_as_truth(run(arc), truth, f"{arc}/outside.pcapng.gz", f"{arc}/keys.log")


def test_the_pieces_of_a_ring_buffer_in_one_archive_read_in_time_order(tmp_path):
    """An archive holding a ring buffer's files (named so that their order in the archive is not the time order)
    reads as the files themselves given together."""
    d = sample("keepalive-dpd")
    files = ring_pieces("keepalive-dpd", 30, tmp_path)
    assert len(files) >= 3
    arc = tmp_path / "ring.zip"
    names = {f: f"piece{len(files) - i}.pcapng" for i, f in enumerate(files)}  # the last one first
    _zip(arc, {names[f]: f.read_bytes() for f in reversed(files)})
    by_files = run("--keylog", d / "keys.log", *files)
    by_archive = run("--keylog", d / "keys.log", arc)
    assert by_archive.returncode == 0, by_archive.stderr
    assert b"time order" in by_archive.stderr
    text = by_archive.stdout.decode()
    for f in files:
        text = text.replace(json.dumps(f"{arc}/{names[f]}"), json.dumps(str(f)))
    assert text == by_files.stdout.decode()


def test_jobs_on_an_archive_member_is_the_same(tmp_path, truth):
    """--jobs 2 reads an archive member whole in each process (no index of a compressed stream): the same report."""
    arc = tmp_path / "case.zip"
    _zip(arc, {"capture.pcapng": CAP.read_bytes(), "keys.log": KEYS.read_bytes()})
    r = run("--jobs", "2", arc)
    same_as_truth(r, truth, f"{arc}/capture.pcapng", f"{arc}/keys.log")


# -- archives from strangers ----------------------------------------------------------------------------------

def test_a_password_protected_zip_is_refused_with_the_reason(tmp_path):
    zip_ = shutil.which("zip")
    if zip_ is None:
        pytest.skip("Info-ZIP zip not installed (make deps)")
    shutil.copy(CAP, tmp_path / "capture.pcapng")
    subprocess.run([zip_, "-q", "-P", "infected", "case.zip", "capture.pcapng"], cwd=tmp_path, check=True)
    r = run(tmp_path / "case.zip")
    err = r.stderr.decode()
    assert r.returncode == 4 and r.stdout == b""
    assert "capture.pcapng: password-protected (extract it with its password first)" in err
    assert "no pcap or pcapng capture could be read in it" in err
    r = run(tmp_path / "case.zip" / "capture.pcapng")
    assert r.returncode == 4 and b"password-protected" in r.stderr


def test_a_deflate64_zip_says_what_to_do(tmp_path):
    """Windows' compressed folders write big files with Deflate64, which Python's zipfile does not read."""
    sevenzip = shutil.which("7z")
    if sevenzip is None:
        pytest.skip("7-Zip not installed (make deps)")
    shutil.copy(CAP, tmp_path / "capture.pcapng")
    subprocess.run([sevenzip, "a", "-tzip", "-mm=Deflate64", "case.zip", "capture.pcapng"], cwd=tmp_path, check=True,
                   capture_output=True)
    r = run(tmp_path / "case.zip")
    assert r.returncode == 4
    assert b"capture.pcapng: compressed with a method Python's zipfile cannot read" in r.stderr
    assert b"extract it with 7-Zip or unzip first" in r.stderr


def test_an_archive_without_captures_and_one_inside_another(tmp_path, truth):
    empty = tmp_path / "logs.zip"
    _zip(empty, {"dart/AnyConnect.txt": b"DART bundle\n", "keys.log": KEYS.read_bytes()})
    r = run(empty)
    assert r.returncode == 4
    assert b"an archive without a pcap or pcapng capture in it (it holds: dart/AnyConnect.txt, keys.log)" in r.stderr
    windows = tmp_path / "windows.zip"
    _zip(windows, {"PktMon.etl": b"\x00\x00\x01\x00" + bytes(range(256)) * 4})
    r = run(windows)
    assert r.returncode == 4 and b"(it holds: PktMon.etl); its .etl files are Windows traces" in r.stderr
    inner = tmp_path / "inner.zip"
    _zip(inner, {"capture.pcapng": CAP.read_bytes()})
    outer = tmp_path / "outer.zip"
    _zip(outer, {"inner.zip": inner.read_bytes(), "capture.pcapng": CAP.read_bytes(), "keys.log": KEYS.read_bytes()})
    r = run(outer)
    same_as_truth(r, truth, f"{outer}/capture.pcapng", f"{outer}/keys.log")
    assert b"not read: inner.zip: an archive inside the archive (extract it first)" in r.stderr
    r = run(tmp_path / "nothing.zip")
    assert r.returncode == 4 and b"nothing.zip" in r.stderr


def test_member_names_never_reach_outside_the_archive(tmp_path, truth):
    """Names that would write outside an extraction directory (.., absolute) are only names: nothing is extracted,
    nothing written; the capture reads the same."""
    work = tmp_path / "work"
    work.mkdir()
    arc = work / "evil.zip"
    _zip(arc, {"../../escaped.pcapng": CAP.read_bytes(), "/etc/acflow-escaped": b"x", "keys.log": KEYS.read_bytes()})
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", "--format", "json", "--show-secrets",
                        str(arc)], capture_output=True, cwd=work)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not os.path.exists("/etc/acflow-escaped")
    assert json.loads(r.stdout)["captures"][0]["path"] == f"{arc}/../../escaped.pcapng"


def test_damaged_archives(tmp_path, truth):
    """A truncated tar.gz: the frames before the damage are analysed and the damage is reported; a zip cut before
    its central directory is refused with a reason; a zip of zeros that decompresses far (a bomb) is looked at by its
    first bytes only."""
    tgz = tmp_path / "case.tgz"
    _tar(tgz, {"capture.pcapng": CAP.read_bytes(), "keys.log": KEYS.read_bytes()}, "w:gz")
    cut = tmp_path / "cut.tgz"
    data = tgz.read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3])
    r = run(cut)
    assert r.returncode == 0, r.stderr  # the capture is read up to the damage, which is said
    doc = json.loads(r.stdout)
    assert 0 < doc["captures"][0]["frames"] < json.loads(truth)["captures"][0]["frames"]
    assert any("damaged or truncated" in e for e in doc["captures"][0]["errors"]), doc["captures"]
    assert b"the archive is damaged after this member" in r.stderr
    z = tmp_path / "case.zip"
    _zip(z, {"capture.pcapng": CAP.read_bytes()})
    (tmp_path / "cutzip.zip").write_bytes(z.read_bytes()[:len(z.read_bytes()) // 2])
    r = run(tmp_path / "cutzip.zip")
    assert r.returncode == 4 and r.stderr
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.pcap", "w") as f:
        for _ in range(256):
            f.write(bytes(1 << 20))  # 256 MiB of zeros, ~250 KiB compressed
    assert bomb.stat().st_size < 1 << 20
    r = run(bomb)
    assert r.returncode == 4 and b"an archive without a pcap or pcapng capture in it (it holds: zeros.pcap)" in r.stderr


def test_split_member_and_listing(tmp_path):
    arc = tmp_path / "a.zip"
    _zip(arc, {"d/x.pcap": CAP.read_bytes(), "k.txt": KEYS.read_bytes(), "n.txt": b"hello"})
    assert archive.split_member(arc / "d" / "x.pcap") == (str(arc), "d/x.pcap")
    assert archive.split_member(arc) is None  # the archive itself exists
    assert archive.split_member(tmp_path / "nope" / "x.pcap") is None
    plain = tmp_path / "plain.pcapng"
    shutil.copy(CAP, plain)
    assert archive.split_member(plain / "x") is None  # a capture is not an archive
    assert [(m.name, m.kind) for m in archive.members(arc)] == [("d/x.pcap", "capture"), ("k.txt", "keylog"),
                                                               ("n.txt", "other")]
    assert archive.input_sha256(arc / "d" / "x.pcap") == archive.input_sha256(CAP)


def test_batch_takes_the_captures_in_case_archives(tmp_path):
    """`acflow batch DIR`: each capture in the zip and tar archives found is a capture of the batch, decrypted with
    the key logs of its archive; the same capture zipped and plain is one (same hash); a re-run skips them all."""
    duckdb = pytest.importorskip("duckdb")
    cases = tmp_path / "cases"
    cases.mkdir()
    other = sample("dtls-blocked")
    _zip(cases / "4711.zip", {"asa/outside.pcap.pcapng": CAP.read_bytes(), "keys/sslkeys.txt": KEYS.read_bytes()})
    _tar(cases / "4712.tar.gz", {"capture": (other / "capture.pcapng").read_bytes(),
                                 "keys.log": (other / "keys.log").read_bytes()}, "w:gz")
    shutil.copy(CAP, cases / "plain.pcapng")  # no key log beside it: the zipped copy is analysed with its keys
    db = tmp_path / "r.duckdb"

    def batch():
        return subprocess.run([sys.executable, "-m", "analyzer.cli", "batch", str(cases), "-o", str(db),
                               "--workers", "1"], capture_output=True, text=True, timeout=600)

    r = batch()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4711.zip: 1 capture(s), key log(s) used: keys/sslkeys.txt" in r.stderr
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = dict(con.execute("SELECT path, status FROM captures").fetchall())
        confirmed = con.execute("SELECT c.path, count(*) FROM sessions s JOIN captures c ON c.hash = s.capture_hash "
                                "WHERE s.confidence = 'confirmed' GROUP BY c.path").fetchall()
    finally:
        con.close()
    zipped, tarred = f"{cases}/4711.zip/asa/outside.pcap.pcapng", f"{cases}/4712.tar.gz/capture"
    assert rows == {zipped: "ok", tarred: "ok"}, rows
    assert dict(confirmed) == {zipped: 1, tarred: 1}
    assert f"duplicate: {cases}/plain.pcapng: same content as {zipped}" in r.stdout + r.stderr
    again = batch()
    assert again.returncode == 0 and "2 already in" in again.stderr, again.stderr


def _archive_bases() -> list[bytes]:
    members = {"a/cap.pcapng": CAP.read_bytes(), "keys.log": KEYS.read_bytes()}
    out = []
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        b = io.BytesIO()
        _zip(b, members, method)
        out.append(b.getvalue())
    for mode in ("w", "w:gz", "w:xz", "w:bz2"):
        b = io.BytesIO()
        _tar(b, members, mode)
        out.append(b.getvalue())
    return out


_BASES: list[bytes] = []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_archives_never_crash_the_reader(tmp_path, data):
    """Archives from strangers: bytes changed, cut or removed anywhere in a zip (four compression methods) or tar
    (plain, gz, xz, bzip2) holding a capture and its key log. Listing the archive and reading every capture found
    in it raises nothing but the two input errors the command line reports (CaptureFormatError, OSError)."""
    if not _BASES:
        _BASES.extend(_archive_bases())
    blob = bytearray(data.draw(st.sampled_from(_BASES)))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        op = data.draw(st.sampled_from(["set", "delete", "cut"]))
        if op == "set":
            blob[pos] = data.draw(st.integers(0, 255))
        elif op == "delete":
            del blob[pos:pos + data.draw(st.integers(1, 64))]
        else:
            del blob[pos:]
        if not blob:
            blob = bytearray(b"PK")
    path = tmp_path / "case.zip"
    path.write_bytes(bytes(blob))
    found = archive.expand_archives([str(path)])
    for c in found.captures:
        try:
            for _ev in read_capture(c):
                pass
        except (CaptureFormatError, OSError):
            pass


def test_a_directory_of_case_archives_reads_them_with_their_key_logs(tmp_path, truth):
    """`acflow analyze DIR`: an archive found in the directory is read as if named, key logs and all."""
    cases = tmp_path / "cases"
    cases.mkdir()
    _zip(cases / "4711.zip", {"outside": CAP.read_bytes(), "keys.log": KEYS.read_bytes()})
    (cases / "notes.txt").write_text("the customer's words\n")
    same_as_truth(run(cases), truth, f"{cases}/4711.zip/outside", f"{cases}/4711.zip/keys.log")


def test_acflow_keys_reads_a_capture_inside_an_archive(tmp_path, truth):
    """`acflow keys ARCHIVE/MEMBER --embed`: the capture in the archive written with its keys inside; the archive
    itself is refused with the capture to name."""
    arc = tmp_path / "case.zip"
    _zip(arc, {"asa/outside": CAP.read_bytes(), "keys.log": KEYS.read_bytes()})
    out = tmp_path / "with-keys.pcapng"
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "keys", f"{arc}/asa/outside", "--keylog",
                        f"{arc}/keys.log", "--embed", "-o", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r = run(out)  # no --keylog: the keys are in the file
    doc = json.loads(r.stdout)
    assert doc["sessions"][0]["verdict"] == json.loads(truth)["sessions"][0]["verdict"]
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "keys", str(arc), "-o", str(tmp_path / "k.log")],
                       capture_output=True, text=True)
    assert p.returncode == 4 and f"{arc} is an archive: name one capture in it, {arc}/asa/outside" in p.stderr


def test_acflow_diff_reads_captures_and_reports_from_archives(tmp_path):
    """`acflow diff ARCHIVE/CAPTURE REPORT.json.gz`: a capture inside an archive against a compressed JSON report of
    the same capture — the same."""
    arc = tmp_path / "case.zip"
    _zip(arc, {"outside.pcapng": CAP.read_bytes(), "keys.log": KEYS.read_bytes()})
    report = run(arc)
    assert report.returncode == 0
    (tmp_path / "report.json.gz").write_bytes(gzip.compress(report.stdout))
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "diff", f"{arc}/outside.pcapng",
                        str(tmp_path / "report.json.gz"), "--keylog", f"{arc}/keys.log"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SAME" in p.stdout
