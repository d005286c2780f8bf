"""The lab cleans up on every exit path, not only the normal one (that is test_lab_live.py): Ctrl-C (SIGINT to its
process group) and SIGTERM with the tunnel up, a second Ctrl-C during the clean-up, a peer killed mid-run, and a
gateway that exits at start (broken configuration). Each run must end within a bounded time with a clear status
and no traceback, leave none of its namespaces, veths, processes, work files or partial outputs behind, and leave
namespaces it did not create alone (decoys, one with a process in it).

Needs root and the lab's tools (lab.runner.REQUIRED_TOOLS: ocserv, openconnect, dumpcap, nft, ethtool…; skipped
otherwise; in CI a missing prerequisite fails, as in test_lab_live.py). Only the lab's own 198.18.0.0/15 addresses
carry traffic.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lab.netns import missing_tools
from lab.runner import REQUIRED_TOOLS

from .conftest import ROOT
from .helpers import require as _require

pytestmark = pytest.mark.lab

INTERRUPTED = 130  # lab/runs.py run_each: a run ended by Ctrl-C / SIGTERM / SIGHUP (the lab turns them into
FAILED = 1  # KeyboardInterrupt); 1: a scenario failed (LabError)
UP_TIMEOUT = 30.0  # lab start until the tunnel is up (about 2 s normally)
EXIT_TIMEOUT = 30.0  # signal or fault until the lab has exited (under 1 s normally)
GONE_TIMEOUT = 5.0  # for killed processes to be reaped
PEER_COMMS = ("ocserv-main", "ocserv-sm", "ocserv-worker", "openconnect", "dumpcap")


@pytest.fixture
def lab_prereqs():
    _require(os.geteuid() == 0, "needs root")
    _require(not missing_tools(REQUIRED_TOOLS), f"not installed: {', '.join(missing_tools(REQUIRED_TOOLS))}")


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, start time) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2:].split()
    return comm, rest[0], int(rest[19])


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[2] == start and st[1] not in ("Z", "X")


def _kill(pid: int, start: int) -> None:
    if _alive(pid, start):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def decoys(lab_prereqs):
    """Namespaces the lab did not create, named like its own, one with a process in it: all must survive."""
    names = [f"acflow-decoy-{os.getpid()}", f"acflow-gw-decoy{os.getpid()}"]
    sleeper = None
    try:
        for ns in names:
            if ns in _netns():
                pytest.skip(f"namespace {ns} already exists")
            subprocess.run(["ip", "netns", "add", ns], check=True)
        sleeper = subprocess.Popen(["ip", "netns", "exec", names[0], "sleep", "300"], start_new_session=True)
        yield names, sleeper
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait(5)
        for ns in names:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


class LabRun:
    """`python -m lab --out <tmp> SCENARIO` in its own session (process group), as a shell would run it,
    with its temporary work directory under a TMPDIR of our own; records every process seen in its namespaces."""

    def __init__(self, tmp_path: Path, scenario: str = "baseline", driver: str | None = None):
        self.out = tmp_path / "out"
        self.tmpdir = Path(tempfile.mkdtemp(prefix="acflow-int-"))
        os.chmod(self.tmpdir, 0o755)  # ocserv's workers run as nobody inside the work dir
        self.stdout_path, self.stderr_path = tmp_path / "lab.out", tmp_path / "lab.err"
        argv = ["--out", str(self.out), scenario]
        cmd = [sys.executable, "-m", "lab", *argv] if driver is None else \
            [sys.executable, "-c", driver, *argv]
        with open(self.stdout_path, "w") as o, open(self.stderr_path, "w") as e:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=o, stderr=e, start_new_session=True,
                                         env={**os.environ, "TMPDIR": str(self.tmpdir),
                                              "PYTHONDONTWRITEBYTECODE": "1"})
        tag = f"{self.proc.pid % 100000}"  # as netns.Lab names them
        self.namespaces = (f"acflow-gw-{tag}", f"acflow-cl-{tag}")
        self.links = (f"acgw{tag}"[:15], f"accl{tag}"[:15])
        self.seen: dict[int, tuple[str, int]] = {}  # pid -> (comm, start time)

    # -- observation ----------------------------------------------------------------------------------------
    def poll_processes(self) -> dict[int, str]:
        now = {}
        for ns in self.namespaces:
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
            for pid in map(int, out.split()):
                st = _stat(pid)
                if st is not None:
                    now[pid] = st[0]
                    self.seen.setdefault(pid, (st[0], st[2]))
        return now

    def tun_up(self) -> bool:
        return subprocess.run(["ip", "-n", self.namespaces[1], "link", "show", "tun0"],
                              capture_output=True, check=False).returncode == 0

    def wait_up(self) -> dict[int, str]:
        """Until both peers, ocserv's worker and dumpcap run and the client's tun exists: the tunnel is up."""
        deadline = time.time() + UP_TIMEOUT
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"lab exited ({self.proc.returncode}) before the tunnel was up: {self.output()}")
            now = self.poll_processes()
            if {"ocserv-main", "ocserv-worker", "openconnect", "dumpcap"} <= set(now.values()) and self.tun_up():
                return now
            time.sleep(0.05)
        pytest.fail(f"tunnel not up within {UP_TIMEOUT} s: {self.output()}")

    def wait_exit(self) -> int:
        deadline = time.time() + EXIT_TIMEOUT
        while self.proc.poll() is None and time.time() < deadline:
            self.poll_processes()
            time.sleep(0.05)
        try:
            return self.proc.wait(max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"lab still running {EXIT_TIMEOUT} s after the signal/fault: {self.output()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"stdout: {self.stdout_path.read_text(errors='replace')!r} stderr: {self.stderr()!r}"

    # -- verdict --------------------------------------------------------------------------------------------
    def assert_clean(self, decoys) -> None:
        err = self.stderr()
        assert "Traceback" not in err, err
        left = self.namespaces_left()
        assert not left, f"lab left its namespaces {left}"
        assert not set(self.links) & _root_links(), "lab left a veth in the root namespace"
        deadline = time.time() + GONE_TIMEOUT
        while self.processes_left() and time.time() < deadline:
            time.sleep(0.05)
        assert not self.processes_left(), f"lab left processes behind: {self.processes_left()}"
        assert {c for c, _ in self.seen.values()} & set(PEER_COMMS), "no lab process was ever seen"
        assert not any(self.tmpdir.iterdir()), f"lab left its work dir: {list(self.tmpdir.iterdir())}"
        assert not (self.out / "baseline").exists(), "an interrupted/failed run wrote a sample"
        names, sleeper = decoys
        assert set(names) <= _netns(), "lab deleted a namespace it did not create"
        assert sleeper.poll() is None, "lab killed a process in a namespace it did not create"

    def namespaces_left(self) -> set[str]:
        return set(self.namespaces) & _netns()

    def processes_left(self) -> dict[int, str]:
        left = {pid: comm for pid, (comm, start) in self.seen.items() if _alive(pid, start)}
        # and anything else still working in the run's work dir (vpnc-script, ping…)
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) not in left:
                try:
                    if str(self.tmpdir).encode() in (d / "cmdline").read_bytes() and d.name != str(os.getpid()):
                        left[int(d.name)] = (d / "comm").read_text().strip()
                except OSError:
                    pass
        return left

    # -- our own clean-up, whatever happened ----------------------------------------------------------------
    def destroy(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        for pid, (_, start) in self.seen.items():
            _kill(pid, start)
        for ns in self.namespaces_left():  # only the run's own, by name
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
            for pid in pids.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


@pytest.fixture
def lab_run(tmp_path, decoys):
    runs: list[LabRun] = []

    def start(**kw) -> LabRun:
        r = LabRun(tmp_path, **kw)
        runs.append(r)
        return r

    try:
        yield start
    finally:
        for r in runs:
            r.destroy()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_signal_with_tunnel_up_cleans_up(lab_run, decoys, how):
    run = lab_run()
    procs = run.wait_up()
    t0 = time.time()
    if how == "ctrl-c":
        os.killpg(run.proc.pid, signal.SIGINT)  # the terminal signals the whole foreground process group
    else:
        os.kill(run.proc.pid, signal.SIGTERM)  # `kill PID`
    rc = run.wait_exit()
    assert rc == INTERRUPTED, run.output()
    assert "interrupted; namespaces and processes cleaned up" in run.stderr()
    assert time.time() - t0 < EXIT_TIMEOUT
    assert set(procs) <= set(run.seen)
    run.assert_clean(decoys)


def test_second_ctrl_c_during_cleanup_does_not_cut_it_short(lab_run, decoys):
    run = lab_run()
    run.wait_up()
    os.killpg(run.proc.pid, signal.SIGINT)
    time.sleep(0.05)  # the lab is now ending its processes (that takes a few tenths of a second)
    if run.proc.poll() is None:
        os.killpg(run.proc.pid, signal.SIGINT)  # the impatient user
        time.sleep(0.02)
    if run.proc.poll() is None:
        os.kill(run.proc.pid, signal.SIGTERM)  # and a supervisor
    rc = run.wait_exit()
    assert rc == INTERRUPTED, run.output()
    run.assert_clean(decoys)


@pytest.mark.parametrize("peer,who", [("openconnect", "openconnect (client)"), ("ocserv-main", "ocserv (gateway)")])
def test_peer_killed_mid_run_fails_clearly_and_cleans_up(lab_run, decoys, peer, who):
    run = lab_run()
    procs = run.wait_up()
    victims = [pid for pid, comm in procs.items() if comm == peer]
    assert len(victims) == 1, procs
    os.kill(victims[0], signal.SIGKILL)
    rc = run.wait_exit()
    assert rc == FAILED, run.output()
    assert f"[lab] baseline: FAILED: {who} was killed by signal 9 during the run" in run.stderr(), run.output()
    run.assert_clean(decoys)


# A scenario like baseline whose gateway cannot start: its server certificate does not exist.
BROKEN_GATEWAY = """
import dataclasses, sys
from lab.scenarios import SCENARIOS
from lab.__main__ import main
base = SCENARIOS["baseline"]
SCENARIOS["baseline"] = dataclasses.replace(base, gateway={**base.gateway,
                                            "server-cert": "/nonexistent/acflow-no-such-cert.pem"})
sys.exit(main(sys.argv[1:]))
"""


def test_gateway_exiting_at_start_fails_clearly_and_cleans_up(lab_run, decoys):
    run = lab_run(driver=BROKEN_GATEWAY)
    rc = run.wait_exit()
    assert rc == FAILED, run.output()
    err = run.stderr()
    assert "[lab] baseline: FAILED: ocserv" in err, run.output()  # the gateway is named…
    assert "/nonexistent/acflow-no-such-cert.pem" in err, run.output()  # …with its own reason, from its log
    assert "dumpcap" in {c for c, _ in run.seen.values()}, "the lab did not get as far as starting its capture"
    run.assert_clean(decoys)


def test_sigterm_before_the_namespaces_exist_cleans_up(lab_run, decoys):
    """SIGTERM while the run prepares its work directory (PKI, configuration), before any namespace: exit 130 and
    the work directory removed (the lab's Lab context is not active yet)."""
    run = lab_run()
    deadline = time.time() + UP_TIMEOUT
    while time.time() < deadline and run.proc.poll() is None:
        if any(run.tmpdir.glob("acflow-lab-baseline-*")):
            break
        time.sleep(0.002)
    else:
        pytest.fail(f"the lab never created its work directory: {run.output()}")
    early = not run.namespaces_left()
    os.kill(run.proc.pid, signal.SIGTERM)
    rc = run.wait_exit()
    assert rc == INTERRUPTED, run.output()
    assert "Traceback" not in run.stderr(), run.output()
    assert "interrupted; namespaces and processes cleaned up" in run.stderr()
    assert not run.namespaces_left()
    deadline = time.time() + GONE_TIMEOUT
    while run.processes_left() and time.time() < deadline:
        time.sleep(0.05)
    assert not run.processes_left()
    assert not any(run.tmpdir.iterdir()), f"lab left its work dir: {list(run.tmpdir.iterdir())}"
    assert not (run.out / "baseline").exists()
    names, sleeper = decoys
    assert set(names) <= _netns() and sleeper.poll() is None
    if not early:
        pytest.skip("the signal came after the namespaces existed (covered by the other tests); timing of this run")
