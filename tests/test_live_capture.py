"""`acflow live -i <the client's veth>` while a real openconnect connects to ocserv in the lab namespaces (one
session, TLS 1.3 with DTLS 1.2 PSK-NEGOTIATE, as the lab's baseline scenario), followed by two `acflow live` at once:

* one follows the client's key log as openconnect writes it: its JSON-lines events show the phases in order while
  the session runs (each phase's event is written before the client is told to disconnect), its final report
  equals `acflow analyze` of the capture it wrote with --write, and that file alone (keys embedded, no key file)
  re-analyses to the same result;
* the other follows a key log that does not exist when the session starts: the client's key log is copied there
  seconds after the handshake, and everything is decrypted all the same (the same final report).

Needs root and the lab's tools (skipped otherwise; a missing prerequisite fails in CI).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.netns import missing_tools

from .conftest import ROOT
from .helpers import require

pytestmark = pytest.mark.lab

TOOLS = ("ocserv", "openconnect", "dumpcap", "nft", "ethtool", "ip")


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line being written
    return out


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _analyze(capture: Path, *keylogs: Path) -> dict:
    args = [a for k in keylogs for a in ("--keylog", str(k))]
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(capture), *args, "--format", "json"],
                       capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(p.stdout)


def _sessions(doc: dict, capture_name: str) -> list:
    """The sessions, with the capture's name (which differs between a live capture and a file) taken out."""
    return json.loads(json.dumps(doc["sessions"]).replace(json.dumps(capture_name)[1:-1], "<capture>"))


def test_live_follows_a_real_session(tmp_path):
    require(os.geteuid() == 0, "needs root")
    require(not missing_tools(TOOLS), f"not installed: {', '.join(missing_tools(TOOLS))}")
    from lab.runs import work_dir  # noqa: PLC0415
    from lab.scenarios import SCENARIOS  # noqa: PLC0415

    work = work_dir("acflow-test-live-")  # readable by ocserv's unprivileged workers
    try:
        _run(tmp_path, work, SCENARIOS["baseline"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(tmp_path: Path, work: Path, sc) -> None:
    from lab.client import (  # noqa: PLC0415
        USER,
        openconnect_argv,
        start_openconnect,
        wait_client_line,
        wait_tun_configured,
        write_client_script,
    )
    from lab.netns import Lab  # noqa: PLC0415
    from lab.runner import prepare_gateway, start_gateway  # noqa: PLC0415

    pki = prepare_gateway(sc, work)
    script = write_client_script(work)
    cl_keys, gw_keys, late_keys = work / "client-keys.log", work / "gw-keys.log", tmp_path / "late" / "keys.log"
    late_keys.parent.mkdir()
    out = {name: (tmp_path / f"{name}.jsonl", tmp_path / f"{name}.pcapng") for name in ("prompt", "late")}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with Lab(tag=f"lv{os.getpid() % 10000}") as lab:
        lives = {}
        for name, keylog in (("prompt", cl_keys), ("late", late_keys)):
            events, written = out[name]
            lives[name] = lab.start(lab.client_ns, f"acflow-live-{name}",
                                    [sys.executable, "-m", "analyzer.cli", "live", "-i", lab.client_if, "--keylog",
                                     str(keylog), "--format", "jsonl", "-o", str(events), "--write", str(written)],
                                    tmp_path / f"{name}.log", env=env, cwd=ROOT)
        for name in lives:
            _wait(lambda n=name: any(e["event"] == "capture" for e in _events(out[n][0])), 20,
                  f"acflow live ({name}) to start capturing")
        gw = start_gateway(lab, work, gw_keys, debug=1)
        client = start_openconnect(lab, openconnect_argv(pki.pin_sha256, debug=False), work,
                                   dict(os.environ, SSLKEYLOGFILE=str(cl_keys)), script,
                                   auth_args=["-u", USER, "--passwd-on-stdin"])
        peers = ((gw, "ocserv (gateway)"), (client, "openconnect (client)"))
        wait_client_line(client, "CSTP connected", 30, "openconnect did not connect", peers)
        wait_client_line(client, "Established DTLS connection", 20, "DTLS did not come up", peers)
        wait_tun_configured(work)
        lab.ns_run(lab.client_ns, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "198.19.0.1"], check=False)
        # the prompt instance shows every phase while the session runs
        _wait(lambda: {e.get("phase") for e in _events(out["prompt"][0]) if e["event"] == "phase"
                       and e["status"] == "ok"} >= {"tls-handshake", "user-auth", "cstp-connect", "dtls"}, 20,
              "the phases to be reported live")
        # the late instance has nothing to decrypt with yet: it waits for the keys of the ClientHello
        late_early = _events(out["late"][0])
        time.sleep(1.0)
        tmp = late_keys.with_suffix(".tmp")
        shutil.copy(cl_keys, tmp)
        tmp.rename(late_keys)  # appears at once, whole
        _wait(lambda: {e.get("phase") for e in _events(out["late"][0]) if e["event"] == "phase"
                       and e["status"] == "ok"} >= {"cstp-connect", "dtls"}, 20, "the late keys to decrypt")
        lab.ns_run(lab.client_ns, ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "198.19.0.1"], check=False)
        session_end = time.time()
        client.interrupt(15)  # SIGINT: openconnect sends DISCONNECT
        time.sleep(1.5)
        for p in lives.values():
            p.send_signal(signal.SIGINT)  # Ctrl-C: ends the capture and reports
        for name, p in lives.items():
            p.proc.wait(60)
            assert p.proc.returncode == 0, (name, p.tail(20))
        client.stop()
        gw.stop(signal.SIGTERM)

    # -- the prompt instance -----------------------------------------------------------------------------------
    evs = _events(out["prompt"][0])
    assert evs[0]["event"] == "capture" and evs[-1]["event"] == "report"
    firsts = {}
    for e in evs:
        if e["event"] == "phase" and e["status"] == "ok":
            firsts.setdefault(e["phase"], e["wall"])
    order = [p for p in ("tls-handshake", "group-selection", "user-auth", "cstp-connect", "dtls") if p in firsts]
    assert order == ["tls-handshake", "group-selection", "user-auth", "cstp-connect", "dtls"], firsts
    assert [firsts[p] for p in order] == sorted(firsts[p] for p in order)
    assert max(firsts.values()) < session_end, "phases were reported while the session ran"
    report = evs[-1]["report"]
    assert report["captures"][0]["keys"]["entries"] > 0  # the key lines actually read
    written = out["prompt"][1]
    name = report["captures"][0]["path"]
    assert _sessions(report, name) == _sessions(_analyze(written, cl_keys), str(written))
    alone = _analyze(written)  # the keys are in the file
    assert alone["captures"][0]["keys"]["embedded_secrets"] == 1
    assert _sessions(alone, str(written)) == _sessions(report, name)
    statuses = {p["phase"]: p["status"] for p in report["sessions"][0]["phases"]}
    assert statuses == {"tls-handshake": "ok", "group-selection": "ok", "user-auth": "ok", "downloader": "absent",
                        "cstp-connect": "ok", "dtls": "ok"}

    # -- the late instance -------------------------------------------------------------------------------------
    assert not any(e["event"] == "phase" and e["phase"] == "cstp-connect" and e["status"] == "ok"
                   for e in late_early), "nothing could be decrypted before the keys came"
    levs = _events(out["late"][0])
    waiting = [e for e in levs if e["event"] == "keys" and e["status"] == "waiting"]
    assert waiting and "waiting for keys for ClientHello frame" in waiting[0]["summary"]
    late_report = levs[-1]["report"]
    assert late_report["captures"][0]["keys"]["entries"] > 0
    lname = late_report["captures"][0]["path"]
    assert {p["phase"]: p["status"] for p in late_report["sessions"][0]["phases"]} == statuses
    lwritten = out["late"][1]
    assert _sessions(late_report, lname) == _sessions(_analyze(lwritten), str(lwritten))


def test_live_tells_dtls_is_blocked_while_it_happens(tmp_path):
    """The lab's dtls-blocked setup (UDP to the gateway's port 443 dropped): while the session still runs over CSTP,
    the DTLS phase is told failed and DTLS_NO_RESPONSE raised; the final report equals analyze of --write."""
    require(os.geteuid() == 0, "needs root")
    require(not missing_tools(TOOLS), f"not installed: {', '.join(missing_tools(TOOLS))}")
    from lab.client import (  # noqa: PLC0415
        USER,
        openconnect_argv,
        start_openconnect,
        wait_client_line,
        write_client_script,
    )
    from lab.netns import Lab  # noqa: PLC0415
    from lab.runner import prepare_gateway, start_gateway  # noqa: PLC0415
    from lab.runs import work_dir  # noqa: PLC0415
    from lab.scenarios import SCENARIOS  # noqa: PLC0415

    work = work_dir("acflow-test-live-")
    events, written = tmp_path / "events.jsonl", tmp_path / "written.pcapng"
    try:
        sc = SCENARIOS["dtls-blocked"]
        pki = prepare_gateway(sc, work)
        script = write_client_script(work)
        cl_keys = work / "client-keys.log"
        with Lab(tag=f"lb{os.getpid() % 10000}") as lab:
            lab.block_udp_443()
            live = lab.start(lab.client_ns, "acflow-live",
                             [sys.executable, "-m", "analyzer.cli", "live", "-i", lab.client_if, "--keylog",
                              str(cl_keys), "--format", "jsonl", "-o", str(events), "--write", str(written)],
                             tmp_path / "live.log", env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
            _wait(lambda: any(e["event"] == "capture" for e in _events(events)), 20, "acflow live to start")
            gw = start_gateway(lab, work, work / "gw-keys.log", debug=1)
            client = start_openconnect(lab, openconnect_argv(pki.pin_sha256, debug=False), work,
                                       dict(os.environ, SSLKEYLOGFILE=str(cl_keys)), script,
                                       auth_args=["-u", USER, "--passwd-on-stdin"])
            wait_client_line(client, "CSTP connected", 30, "openconnect did not connect",
                             ((gw, "ocserv (gateway)"), (client, "openconnect (client)")))
            _wait(lambda: any(e["event"] == "finding" and e["id"] == "DTLS_NO_RESPONSE" for e in _events(events))
                  and any(e["event"] == "phase" and e["phase"] == "dtls" for e in _events(events)), 40,
                  "the blocked DTLS to be told")
            client.check_running("openconnect (client)")  # the session still runs, over CSTP
            session_end = time.time()
            client.interrupt(15)
            time.sleep(1.0)
            live.send_signal(signal.SIGINT)
            live.proc.wait(60)
            assert live.proc.returncode == 0, live.tail(20)
            client.stop()
            gw.stop(signal.SIGTERM)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    evs = _events(events)
    dtls = [e for e in evs if e["event"] == "phase" and e["phase"] == "dtls"]
    assert dtls[0]["status"] == "failed" and dtls[0]["wall"] < session_end
    assert "unanswered" in dtls[0]["summary"]
    report = evs[-1]["report"]
    name = report["captures"][0]["path"]
    assert _sessions(report, name) == _sessions(_analyze(written), str(written))
    assert {p["phase"]: p["status"] for p in report["sessions"][0]["phases"]}["dtls"] == "failed"
