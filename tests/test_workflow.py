"""Issue #17, the engineer's workflow (report side): the verdict first, --summary, --fail-on, filters, times and
--tz, grouped findings, a terminal that follows its width and NO_COLOR, help texts, wording.

Everything runs on the committed lab captures, through the real command line where the behaviour is the CLI's
(exit status, terminal width from COLUMNS, colour on a pseudo-terminal).
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import os
import pty
import re
import subprocess
import sys

import click
import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.cli import main as cli_main
from analyzer.model import reveal
from analyzer.report import render
from analyzer.verdict import OUTCOMES

from .conftest import ROOT, sample
from .helpers import ALL, doc, run_chromium
from .oracle import tshark_fields

SCRIPTED = ["scripted/connect-rejected", "scripted/terminate", "scripted/dtls-cookie-ignored",
            "scripted/tls-alert", "scripted/keepalive-missing"]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if "NO_COLOR" not in (env or {}):
        e.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True, env=e,
                          cwd=ROOT, timeout=120)


def cap(name: str) -> list[str]:
    d = sample(name)
    return [str(d / "capture.pcapng"), "--keylog", str(d / "keys.log")]


def verdict(name: str) -> dict:
    (s,) = doc(name, show_secrets=False)["sessions"]
    return s["verdict"]


# ---------------------------------------------------------------------------------------------- the verdict
@pytest.mark.parametrize("name", ALL + SCRIPTED)
def test_every_session_has_a_verdict(name):
    d = doc(name, show_secrets=False)
    for s in d["sessions"]:
        v = s["verdict"]
        assert v["outcome"] in OUTCOMES and v["text"] and "\n" not in v["text"]
        # the frames it cites are frames of the findings it rests on (or, resting on none, of its phases)
        cited = {fr for f in s["findings"] if f["id"] in v["findings"] for fr in f["frames"]} if v["findings"] \
            else {fr for p in s["phases"] for fr in p["frames"]}
        assert set(v["frames"]) <= cited
        worst = max((f["severity"] for f in s["findings"]), key=["info", "warning", "error"].index, default=None)
        assert v["worst_severity"] == worst
        if v["outcome"] != "healthy":
            assert v["remedy"] and v["remedy"] in v["text"]


def test_dpd_loss_verdict_says_the_tunnel_died():
    """Every phase of dpd-loss is "ok"; the verdict must still say the tunnel died, and why, with the frames."""
    s = doc("dpd-loss", show_secrets=False)["sessions"][0]
    assert all(p["status"] in ("ok", "absent") for p in s["phases"])
    v = s["verdict"]
    assert v["outcome"] == "tunnel-lost"
    assert v["text"].startswith("Tunnel died at +4.4 s")
    assert "DPD" in v["text"] and "reconnected" in v["text"]
    dpd_frames = {fr for f in s["findings"] if f["id"] == "DPD_TIMEOUT" for fr in f["frames"]}
    assert set(v["frames"]) == dpd_frames


def test_dtls_blocked_verdict_names_the_port_and_the_unanswered_hellos(tshark):
    v = verdict("dtls-blocked")
    assert v["outcome"] == "degraded"
    assert v["text"].startswith("Tunnel up over TLS only: UDP 443 is blocked between client and gateway")
    assert v["remedy"] == "allow UDP 443 from the client to the gateway"
    # the frames it cites are DTLS ClientHellos, per tshark
    d = sample("dtls-blocked")
    hellos = {int(r[0]) for r in tshark_fields(d / "capture.pcapng", ["frame.number"], "dtls.handshake.type == 1")}
    assert v["frames"] and set(v["frames"]) <= hellos
    assert f"{len(hellos)} DTLS ClientHellos unanswered" in v["text"]


@pytest.mark.parametrize(("name", "outcome", "start"), [
    ("baseline", "healthy", "Healthy: logged in, tunnel 198.19.0.50 over DTLS"),
    ("auth-fail", "failed", "Login failed"),
    ("scripted/connect-rejected", "failed", "Logged in, but the gateway refused the tunnel"),
    ("scripted/terminate", "tunnel-lost", "Tunnel ended by the gateway"),
    ("reconnect", "degraded", "Tunnel dropped at"),
    ("scripted/aggauth-v1-fallback", "degraded", "Connected through the legacy login form"),
    # the packets lost say more to the user than the MTU numbers that explain them
    ("mtu", "degraded", "Connected, but large packets are lost in the tunnel"),
])
def test_verdict_outcomes(name, outcome, start):
    v = verdict(name)
    assert (v["outcome"], v["text"][:len(start)]) == (outcome, start)


def test_healthy_is_one_line_and_the_verdict_comes_first():
    p = cli("analyze", *cap("baseline"), env={"COLUMNS": "200"})
    lines = p.stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("Session s1"))
    assert lines[rule + 1].startswith("  HEALTHY  Healthy: logged in")
    assert lines[rule + 2].startswith("  start ")  # one line: the session's details follow at once
    assert lines.index(next(x for x in lines if x.startswith("Findings"))) > rule + 2


def test_verdict_in_json_and_html(tmp_path):
    out = tmp_path / "r.json"
    assert cli("analyze", *cap("dpd-loss"), "--format", "json", "-o", str(out)).returncode == 0
    v = json.loads(out.read_text())["sessions"][0]["verdict"]
    assert v["outcome"] == "tunnel-lost"
    html = tmp_path / "r.html"
    assert cli("analyze", *cap("dpd-loss"), "--format", "html", "-o", str(html)).returncode == 0
    page = html.read_text()
    assert 'class="verdict"' in page and "TUNNEL-LOST" in page
    assert page.index('class="verdict"') < page.index('class="timeline')


# ---------------------------------------------------------------------------------------------- --summary
def test_summary_one_line_per_session():
    p = cli("analyze", *cap("baseline"), *cap("dtls-blocked")[:1], "--keylog", cap("dtls-blocked")[2],
            *cap("auth-fail")[:1], "--keylog", cap("auth-fail")[2], "--summary", env={"COLUMNS": "160"})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:6] == ["id", "client", "user", "gateway", "start", "(UTC)"]
    rows = lines[1:4]
    assert [r.split()[0] for r in rows] == ["s1", "s2", "s3"]
    # then, over them all: the outcomes (the worst first) and the sessions with each finding (errors first)
    assert lines[4] == "" and lines[5].startswith("3 sessions: 1 failed, 1 degraded, 1 healthy; sessions with each "
                                                  "finding: AUTH_FAILED 1, ")
    assert len(lines) <= 7
    for r, (outcome, worst) in zip(rows, [("healthy", "info"), ("degraded", "warning"), ("failed", "error")],
                                   strict=True):
        assert len(r) <= 159
        cells = r.split()
        assert cells[1:4] == ["198.18.0.2", "alice", "198.18.0.1:443"]  # the login's username (decrypted)
        assert outcome in cells and worst in cells
    assert "2026-11-27 06:23:53" in rows[0] and "1.6 s" in rows[0] and "Healthy: logged in" in rows[0]


def test_user_filter(tmp_path):
    """--user: the sessions whose login sent that username (case aside); a session read without keys cannot match,
    and the filters line and JSON say how many such there were."""
    out = tmp_path / "r.json"
    p = cli("analyze", *cap("baseline"), str(sample("mixed-traffic") / "capture.pcapng"), "--user", "ALICE",
            "--format", "json", "-o", str(out))
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert [s["id"] for s in d["sessions"]] == ["s1"]
    assert d["filters"] == {"user": ["ALICE"], "user_unknown": 1, "shown": 1, "total": 2}
    p = cli("analyze", *cap("baseline"), "--user", "bob")
    assert p.returncode == 0 and "filters --user bob: 0 of 1 session shown" in p.stdout
    p = cli("analyze", *cap("auth-fail"), "--user", "alice", "--summary")
    assert "alice" in p.stdout.splitlines()[2] and "failed" in p.stdout  # a rejected login still names its user
    # the session's view names its user too (terminal: beside the client software; HTML: beside the client address)
    assert "; user alice" in cli("analyze", *cap("baseline")).stdout
    html = tmp_path / "r.html"
    assert cli("analyze", *cap("baseline"), "--format", "html", "-o", str(html)).returncode == 0
    assert re.search(r"<dt>client</dt><dd>198\.18\.0\.2:\d+ \(user alice\)</dd>", html.read_text())


def test_the_html_page_of_several_sessions_says_the_same_tally(tmp_path):
    out = tmp_path / "r.html"
    p = cli("analyze", *cap("baseline"), *cap("auth-fail")[:1], "--keylog", cap("auth-fail")[2], "--format", "html",
            "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert ("<h3>Sessions</h3><p>2 sessions: 1 failed, 1 healthy; sessions with each finding: AUTH_FAILED 1, "
            in out.read_text())


def test_summary_on_a_narrow_terminal_puts_the_verdict_below():
    p = cli("analyze", *cap("dtls-blocked"), "--summary", env={"COLUMNS": "80"})
    lines = p.stdout.splitlines()
    assert all(len(x) <= 80 for x in lines)
    # (not even the fields fit: the user, when the login names one, goes to the verdict's line)
    assert lines[1].startswith("s1 ") and lines[2].startswith("    alice: Tunnel up over TLS only")
    assert "user" not in lines[0].split()


def test_summary_is_a_terminal_view():
    p = cli("analyze", *cap("baseline"), "--summary", "--format", "json")
    assert p.returncode == 2 and "--summary" in p.stderr


# ---------------------------------------------------------------------------------------------- --fail-on
@pytest.mark.parametrize(("name", "level", "status"), [
    ("baseline", None, 0), ("baseline", "warning", 0), ("baseline", "info", 1),
    ("dtls-blocked", "error", 0), ("dtls-blocked", "warning", 1),
    ("dpd-loss", "error", 1), ("auth-fail", "error", 1),
])
def test_fail_on(name, level, status):
    p = cli("analyze", *cap(name), "--summary", *(["--fail-on", level] if level else []))
    assert p.returncode == status, p.stderr
    assert p.stdout.startswith("id ")  # the report is written either way


def test_fail_on_counts_only_reported_sessions():
    # auth-fail's error is filtered away by --until before the session: nothing at or above error is reported
    p = cli("analyze", *cap("auth-fail"), "--fail-on", "error", "--until", "2000-01-01T00:00:00Z", "--summary")
    assert p.returncode == 0 and "no session matches the filters" in p.stdout


def test_fail_on_rejects_other_levels():
    assert cli("analyze", *cap("baseline"), "--fail-on", "fatal").returncode == 2


# ---------------------------------------------------------------------------------------------- filters
def _ids(*args: str) -> list[str]:
    p = cli("analyze", *args, "--format", "json")
    assert p.returncode == 0, p.stderr
    return [s["id"] for s in json.loads(p.stdout)["sessions"]]


TWO = [*cap("baseline"), cap("auth-fail")[0], "--keylog", cap("auth-fail")[2]]


def test_filter_by_session_client_gateway():
    assert _ids(*TWO) == ["s1", "s2"]
    assert _ids(*TWO, "--session", "s2") == ["s2"]
    assert _ids(*TWO, "--session", "s1,s2") == ["s1", "s2"]
    assert _ids(*TWO, "--session", "s9") == []
    assert _ids(*TWO, "--client", "198.18.0.2") == ["s1", "s2"]
    assert _ids(*TWO, "--client", "198.18.0.9") == []
    assert _ids(*TWO, "--gateway", "198.18.0.1:443") == ["s1", "s2"]
    assert _ids(*TWO, "--gateway", "198.18.0.1:8443") == []


def test_filter_by_time_window():
    d = doc("auth-fail", show_secrets=False)["sessions"][0]
    start = dt.datetime.fromtimestamp(d["start"], dt.UTC)
    before = (start - dt.timedelta(seconds=5)).strftime("%Y-%m-%d %H:%M:%S")
    after = (start + dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _ids(*TWO, "--since", before) == ["s2"]  # baseline ended minutes earlier
    assert _ids(*TWO, "--until", before) == ["s1"]
    assert _ids(*TWO, "--since", before, "--until", after) == ["s2"]
    # a time of day is on the capture's first day, in --tz: the same instant in Paris is an hour later
    paris = (start - dt.timedelta(seconds=5)).astimezone(dt.timezone(dt.timedelta(hours=1))).strftime("%H:%M:%S")
    assert _ids(*TWO, "--since", paris, "--tz", "Europe/Paris") == ["s2"]
    assert _ids(*TWO, "--since", str(d["start"] + 60)) == []


def test_filters_are_reported():
    p = cli("analyze", *TWO, "--format", "json", "--session", "s2", "--client", "198.18.0.2")
    f = json.loads(p.stdout)["filters"]
    assert f == {"shown": 1, "total": 2, "session": ["s2"], "client": ["198.18.0.2"]}
    t = cli("analyze", *TWO, "--session", "s2").stdout
    assert "filters --session s2: 1 of 2 sessions shown" in t


def test_bad_time_is_a_usage_error():
    p = cli("analyze", *cap("baseline"), "--since", "yesterday")
    assert p.returncode == 2 and "--since" in p.stderr and "Traceback" not in p.stderr
    # before any work: a capture that does not exist is not even looked at (that would be status 4)
    assert cli("analyze", "/nonexistent/capture.pcapng", "--until", "25:99").returncode == 2


# ---------------------------------------------------------------------------------------------- times
def test_absolute_times_and_tz():
    s = doc("dpd-loss", show_secrets=False)["sessions"][0]
    f = next(x for x in s["findings"] if x["id"] == "DPD_TIMEOUT")
    utc = dt.datetime.fromtimestamp(f["time"], dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    out = cli("analyze", *cap("dpd-loss"), env={"COLUMNS": "160"}).stdout
    assert f"+4.355s ({utc})" in out
    assert f"Tunnel died at +4.4 s ({utc})" in out  # the verdict too
    paris = cli("analyze", *cap("dpd-loss"), "--tz", "Europe/Paris", env={"COLUMNS": "160"}).stdout
    later = (dt.datetime.fromtimestamp(f["time"], dt.UTC) + dt.timedelta(hours=1)).strftime("%H:%M:%S.%f")[:-3]
    assert f"+4.355s ({later})" in paris and " CET" in paris
    local = cli("analyze", *cap("dpd-loss"), "--tz", "local", "--summary", env={"TZ": "Asia/Tokyo"})
    assert local.returncode == 0 and "start (JST)" in local.stdout
    bad = cli("analyze", *cap("dpd-loss"), "--tz", "Mars/Olympus")
    assert bad.returncode == 2 and "unknown time zone" in bad.stderr


def test_json_adds_iso_times(tmp_path):
    p = cli("analyze", *cap("baseline"), "--format", "json")
    d = json.loads(p.stdout)
    s = d["sessions"][0]
    assert isinstance(s["start"], float)  # epoch seconds kept
    assert dt.datetime.fromisoformat(s["start_iso"].replace("Z", "+00:00")).timestamp() == pytest.approx(
        s["start"], abs=0.001)
    assert s["start_iso"].endswith("Z")
    assert all("start_iso" in ph for ph in s["phases"]) and all("time_iso" in f for f in s["findings"])
    assert d["captures"][0]["first_iso"].endswith("Z")
    paris = json.loads(cli("analyze", *cap("baseline"), "--format", "json", "--tz", "Europe/Paris").stdout)
    assert paris["sessions"][0]["start_iso"].endswith("+01:00")
    assert paris["sessions"][0]["start"] == s["start"]


# ---------------------------------------------------------------------------------------------- grouping
def _with_repeats(n: int):
    """dpd-loss's real analysis with its RECONNECT finding repeated n times a second apart."""
    d = sample("dpd-loss")
    a = analyze_paths([d / "capture.pcapng"], *load_keys([d / "keys.log"], []))
    s = a.sessions[0]
    rc = next(f for f in s.findings if f.id == "RECONNECT")
    extra = [dataclasses.replace(copy.deepcopy(rc), time=rc.time + i, frames=[rc.frames[-1] + i])
             for i in range(1, n)]
    at = s.findings.index(rc)
    s.findings[at + 1:at + 1] = extra
    return a


def test_repeated_findings_are_grouped():
    a = _with_repeats(2047)
    text = render(a, "terminal", version=__version__, width=120)
    assert text.count("RECONNECT ×2047") == 1 and text.count("INFO    RECONNECT") == 1
    assert re.search(r"first \+46\.628s \(\d\d:\d\d:\d\d\.\d{3}\), last \+2092\.628s", text)
    assert len(text.splitlines()) < 80
    html = render(a, "html", version=__version__)
    # DPD_TIMEOUT ×2 (two rows: a pair is not grouped), TCP_RETRANSMISSIONS, TCP_CONNECT_FAILED (the reconnect
    # attempts), AUTH_MULTI_ROUND, the RECONNECT group, SESSION_DISCONNECT
    assert html.count('<tr class="finding">') == 7
    assert "RECONNECT ×2047" in html
    # the JSON keeps every finding (its contract)
    assert len(json.loads(render(a, "json", version=__version__))["sessions"][0]["findings"]) == 7 + 2046


def test_two_findings_are_not_grouped():
    text = render(_with_repeats(2), "terminal", version=__version__, width=120)
    assert "RECONNECT ×" not in text and text.count("INFO    RECONNECT") == 2


# ---------------------------------------------------------------------------------------------- rules (#17)
def test_tcp_retransmissions_timed_at_the_first_retransmission(tshark):
    d = sample("dpd-loss")
    f = next(x for x in doc("dpd-loss", show_secrets=False)["sessions"][0]["findings"]
             if x["id"] == "TCP_RETRANSMISSIONS")
    rows = tshark_fields(d / "capture.pcapng", ["frame.number", "frame.time_epoch"],
                         "tcp.analysis.retransmission && tcp.stream == 0")
    assert rows
    assert f["time"] == pytest.approx(float(rows[0][1]), abs=1e-6)
    assert int(rows[0][0]) == min(f["frames"])
    # DTLS was up in dpd-loss: the remedy must not speak of a tunnel over TCP without DTLS
    assert "no DTLS" not in f["remedy"] and "DTLS was up" in f["remedy"]


def test_mtu_mismatch_only_when_the_numbers_do_not_fit():
    # the grant above the request on every baseline-like sample is no finding any more…
    for name in ("baseline", "dtls-blocked", "legacy-dtls", "downloader", "dpd-loss"):
        assert "MTU_MISMATCH" not in {f["id"] for s in doc(name, show_secrets=False)["sessions"]
                                      for f in s["findings"]}, name
    # …while the mtu sample (gateway base MTU 1100 < client 1300) still has one
    f = next(x for x in doc("mtu", show_secrets=False)["sessions"][0]["findings"] if x["id"] == "MTU_MISMATCH")
    assert f["severity"] == "warning" and f["evidence"]["granted"] < f["evidence"]["requested"]


# ---------------------------------------------------------------------------------------------- terminal
@pytest.mark.parametrize("columns", [80, 200])
def test_terminal_follows_its_width(columns):
    p = cli("analyze", *cap("dtls-blocked"), env={"COLUMNS": str(columns)})
    lines = p.stdout.splitlines()
    assert max(len(x) for x in lines) <= columns
    if columns == 80:
        # two lines per phase, what happened indented under it; no table squeezed into noise
        assert "what happened" not in p.stdout
        i = next(n for n, x in enumerate(lines) if x.startswith("  1 tls-handshake"))
        assert lines[i + 1].startswith("      TLS 1.3 TLS_AES_256_GCM_SHA384")
    else:
        head = next(x for x in lines if x.lstrip().startswith("#"))
        assert "what happened" in head and " at " in head
        assert max(len(x) for x in lines) > 140  # the width is used, not a hard-coded 140
    # hanging indents: a wrapped remedy continues under its text, after the arrow
    remedy = next(n for n, x in enumerate(lines) if x.startswith("           → UDP to the gateway"))
    if columns == 80:
        assert lines[remedy + 1].startswith("             ") and lines[remedy + 1][13] != " "
    # the DTLS retry table sits under its finding, indented like the message
    table = [x for x in lines if re.match(r"^\s+\d\s+\d\s+\d", x)]
    assert table and all(x.startswith(" " * 11) for x in table)


def _pty_run(args: list[str], extra_env: dict) -> str:
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120", "TERM": "xterm-256color", **extra_env}
    if "NO_COLOR" not in extra_env:
        env.pop("NO_COLOR", None)
    p = subprocess.Popen([sys.executable, "-m", "analyzer.cli", *args], stdout=slave, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    p.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_on_a_terminal_and_no_color():
    coloured = _pty_run(["analyze", *cap("baseline")], {})
    assert "\x1b[" in coloured and "HEALTHY" in coloured
    plain = _pty_run(["analyze", *cap("baseline")], {"NO_COLOR": "1"})
    assert "\x1b[" not in plain and "HEALTHY" in plain


# ---------------------------------------------------------------------------------------------- help, wording
def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_option_has_help():
    missing = [(" ".join(path), p.name) for path, cmd in _commands(cli_main) for p in cmd.params
               if isinstance(p, click.Option) and not p.help and p.name not in ("help", "version")]
    assert not missing, missing


def test_replay_and_diff_help_say_what_they_do():
    r = cli("replay", "--help").stdout
    assert "Play a recorded VPN session again" in r and "replay client" in r and "replay gateway" in r
    d = " ".join(cli("diff", "--help").stdout.split())
    assert "Regression diff of the sessions in BASELINE and NEW" in d and "0 same, 1 differs" in d


@pytest.mark.parametrize("name", ["baseline", "dtls-blocked", "group-select", "downloader"])
def test_wording(name):
    d = sample(name)
    a = analyze_paths([d / "capture.pcapng"], *load_keys([d / "keys.log"], []))
    for fmt in ("terminal", "html"):
        text = render(a, fmt, version=__version__, width=160)
        for bad in ("1 entries", "POST(s)", "round(s)", " , MTU", "1 flows", "key log(s)", "RSA key(s)"):
            assert bad not in text, (fmt, bad)


# ---------------------------------------------------------------------------------------------- HTML, narrow
CSP = re.compile(r'<meta http-equiv="Content-Security-Policy"[^>]*>')
PROBE = ("<script>addEventListener('load',()=>{const b=document.body.dataset;"
         "b.sw=document.documentElement.scrollWidth;b.iw=innerWidth;"
         "b.thead=getComputedStyle(document.querySelector('table.timeline thead')).display;})</script></body>")


def _layout(chromium: str, tmp_path, page: str, width: int) -> dict:
    """Lay `page` out in headless Chromium at `width` px: the page's scroll width, the window's width and how the
    timeline's header row is displayed. A test copy: the report forbids scripts, the probe needs one."""
    probe = tmp_path / f"probe-{width}.html"
    probe.write_text(CSP.sub("", page).replace("</body>", PROBE), encoding="utf-8")
    p = run_chromium(chromium, tmp_path, "--dump-dom", f"--window-size={width},1500", "--virtual-time-budget=3000",
                     probe.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    got = dict(re.findall(r'data-(sw|iw|thead)="([^"]*)"', p.stdout))
    assert set(got) == {"sw", "iw", "thead"}, p.stdout[:500]
    return got


def test_html_tables_reflow_on_a_narrow_window(chromium, tmp_path):
    d = sample("dtls-blocked")
    a = analyze_paths([d / "capture.pcapng"], *load_keys([d / "keys.log"], []))
    page = render(a, "html", version=__version__)
    narrow = _layout(chromium, tmp_path, page, 500)  # headless Chromium's narrowest window
    assert int(narrow["sw"]) <= int(narrow["iw"]), narrow  # nothing wider than the window
    assert narrow["thead"] == "none"  # the tables became blocks of labelled cells
    wide = _layout(chromium, tmp_path, page, 1280)
    assert wide["thead"] != "none" and int(wide["sw"]) <= int(wide["iw"])
    # control: without the narrow-window rules the same page overflows that window
    rigid = re.sub(r"@media \(max-width:760px\)\{.*?\n\}\n", "", page, flags=re.S)
    assert rigid != page
    control = _layout(chromium, tmp_path, rigid, 500)
    assert int(control["sw"]) > int(control["iw"])


@pytest.mark.parametrize("name", ALL + ["mixed-traffic", "scripted/dtls-cookie-ignored"])
def test_no_line_wider_than_the_terminal(name):
    d = sample(name)
    a = analyze_paths([d / "capture.pcapng"], *load_keys([d / "keys.log"], []))
    for width in (80, 200):
        text = render(a, "terminal", version=__version__, width=width)
        assert max(len(x) for x in text.splitlines()) <= width


def test_verbose_data_is_never_cut_by_the_layout():
    """--verbose prints headers and XML as sent, one whole line each (the terminal folds them): an element is
    never split in two at 80 columns, so copying or grepping it works."""
    d = sample("baseline")
    a = analyze_paths([d / "capture.pcapng"], *load_keys([d / "keys.log"], []))
    text = render(a, "terminal", version=__version__, width=80, verbose=True)
    rounds = a.sessions[0].phase("user-auth").details.rounds
    assert rounds
    for r in rounds:
        for line in str(reveal(r.xml, False)).splitlines():
            assert line in text
