"""Outputs that never lose work: every output path is checked before any work (one line, exit 4), an input is
never overwritten, `-` is standard output / standard input, Ctrl-C leaves no partial file (exit 130)."""
from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import sample

ACFLOW = [sys.executable, "-m", "analyzer.cli"]


def acflow(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*ACFLOW, *args], capture_output=True, text=True, **kw)


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 4, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    for w in words:
        assert w in p.stderr, p.stderr
    assert p.stdout == ""


def bad_paths(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return {
        "missing directory": (tmp_path / "no-such-dir" / "out", "does not exist"),
        "parent is a file": (a_file / "out", "is not a directory"),
        "a directory": (tmp_path, "is a directory"),
        "cannot create files there": ("/proc/acflow-out", "cannot create files"),
    }


@pytest.mark.parametrize("case", ["missing directory", "parent is a file", "a directory",
                                  "cannot create files there"])
def test_bad_output_paths_fail_before_any_work(tmp_path, case):
    d = sample("baseline")
    path, words = bad_paths(tmp_path)[case]
    # the capture does not exist: the output is checked first (before any input is read)
    missing = str(tmp_path / "not-there.pcapng")
    one_line_error(acflow("analyze", missing, "-o", str(path)), "report", words)
    one_line_error(acflow("analyze", missing, "--export-inner", str(path), "-o", str(tmp_path / "r.txt")),
                   "inner packets", words)
    one_line_error(acflow("keys", missing, "-o", str(path)), "key log", words)
    one_line_error(acflow("keys", "--embed", missing, "-o", str(path)), words)
    # live: nothing is captured, and the capture on standard input is not read (stdout stays empty: no report)
    with open(d / "capture.pcapng", "rb") as f:
        for opt in ("-o", "-w"):
            p = subprocess.run([*ACFLOW, "live", "--stdin", opt, str(path)], stdin=f, capture_output=True,
                               text=True)
            one_line_error(p, words)
    assert not (tmp_path / "r.txt").exists()


def test_an_input_is_never_overwritten(tmp_path, monkeypatch):
    d = sample("baseline")
    cap = tmp_path / "copy.pcapng"
    cap.write_bytes((d / "capture.pcapng").read_bytes())
    keylog = tmp_path / "keys.log"
    keylog.write_text((d / "keys.log").read_text())
    (tmp_path / "hard.pcapng").hardlink_to(cap)
    (tmp_path / "sym.pcapng").symlink_to(cap)
    before = cap.read_bytes(), keylog.read_text()
    monkeypatch.chdir(tmp_path)
    # the same file by another name: relative, ./, absolute, a hard link, a symbolic link
    for out in ("copy.pcapng", "./copy.pcapng", str(cap), "hard.pcapng", "sym.pcapng"):
        one_line_error(acflow("analyze", "copy.pcapng", "--keylog", "keys.log", "-o", out), "is an input")
    one_line_error(acflow("analyze", "copy.pcapng", "--export-inner", "hard.pcapng"), "is an input")
    one_line_error(acflow("keys", "--embed", "copy.pcapng", "--keylog", "keys.log", "-o", "sym.pcapng"),
                   "is an input")
    one_line_error(acflow("keys", "copy.pcapng", "--keylog", "keys.log", "-o", "keys.log"), "is an input")
    one_line_error(acflow("analyze", "copy.pcapng", "-o", "same", "--export-inner", "same"), "both")
    assert (cap.read_bytes(), keylog.read_text()) == before
    # analysing two captures: the second one is an input too
    one_line_error(acflow("analyze", str(d / "capture.pcapng"), "copy.pcapng", "-o", "copy.pcapng"), "is an input")


def test_dash_is_standard_output_and_standard_input(tmp_path, monkeypatch):
    d = sample("baseline")
    monkeypatch.chdir(tmp_path)
    ref = acflow("analyze", str(d / "capture.pcapng"), "--keylog", str(d / "keys.log"), "--format", "json")
    assert ref.returncode == 0, ref.stderr
    with open(d / "capture.pcapng", "rb") as f:
        p = subprocess.run([*ACFLOW, "analyze", "-", "--keylog", str(d / "keys.log"), "--format", "json", "-o",
                            "-"], stdin=f, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "-").exists()
    # the same analysis; only the capture's name differs
    assert p.stdout.replace('"<stdin>"', "X") == ref.stdout.replace(f'"{d / "capture.pcapng"}"', "X")
    # gzip on standard input too
    gz = subprocess.run(["gzip", "-c", str(d / "capture.pcapng")], capture_output=True, check=True).stdout
    p = subprocess.run([*ACFLOW, "analyze", "-", "--keylog", str(d / "keys.log"), "--format", "json"],
                       input=gz, capture_output=True)
    assert p.returncode == 0 and p.stdout.decode().replace('"<stdin>"', "X") == ref.stdout.replace(
        f'"{d / "capture.pcapng"}"', "X")
    # the key log to standard output
    k = acflow("keys", str(d / "capture.pcapng"), "--keylog", str(d / "keys.log"), "-o", "-")
    assert k.returncode == 0 and "CLIENT_RANDOM " in k.stdout and not (tmp_path / "-").exists()
    # two outputs cannot share standard output
    one_line_error(acflow("analyze", str(d / "capture.pcapng"), "--export-inner", "-"), "standard output")


def _interruptible() -> None:
    """In the child: SIGINT as in a user's terminal. A test run started in the background by a non-interactive shell
    (`cmd &`, nohup) ignores SIGINT, and an ignored signal stays ignored across exec: Python then installs no handler
    and Ctrl-C would never reach acflow."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_130_clears_the_line_and_leaves_no_partial_file(tmp_path):
    d = sample("baseline")
    data = (d / "capture.pcapng").read_bytes()
    report = tmp_path / "report.txt"
    report.write_text("an older report\n")
    inner = tmp_path / "inner.pcapng"
    master, slave = pty.openpty()  # stderr on a terminal, as a user's
    proc = subprocess.Popen([*ACFLOW, "analyze", "-", "--keylog", str(d / "keys.log"), "-o", str(report),
                             "--export-inner", str(inner)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=slave, preexec_fn=_interruptible)
    os.close(slave)
    try:
        # half the capture, and the pipe stays open: acflow is in the middle of its work
        proc.stdin.write(data[: len(data) // 2])
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".inner.pcapng.") for p in tmp_path.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "acflow did not start writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:  # say how the process stood with SIGINT (blocked, ignored, caught)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            stack = Path(f"/proc/{proc.pid}/wchan").read_text() if Path(f"/proc/{proc.pid}/wchan").exists() else ""
            how = " ".join(line for line in status.splitlines() if line.startswith(("State", "Sig", "Shd")))
            raise AssertionError(f"acflow did not end on SIGINT: {how} wchan {stack}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
    err = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    assert rc == 130, err
    text = err.decode()
    assert "\r\x1b[K" in text and "interrupted" in text.split("\r\x1b[K")[-1] and "Traceback" not in text
    # no partial file: the inner export is not there, the older report is intact, no temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]
    assert report.read_text() == "an older report\n"
    assert proc.stdout.read() == b""


def test_a_report_replaces_the_old_one_whole_and_writes_through_a_link(tmp_path):
    d = sample("baseline")
    real = tmp_path / "reports" / "latest.txt"
    real.parent.mkdir()
    real.write_text("the old report\n")
    link = tmp_path / "report.txt"
    link.symlink_to(real)
    p = acflow("analyze", str(d / "capture.pcapng"), "--keylog", str(d / "keys.log"), "-o", str(link))
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and "Session s1" in real.read_text()
    assert sorted(x.name for x in real.parent.iterdir()) == ["latest.txt"]  # no temporary file left
