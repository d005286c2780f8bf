"""The HTML report (`acflow analyze … --format html`): one self-contained page per analysis.

Every lab sample renders; the timeline, findings, sequence diagram and plots carry the analysis' data; no secret
leaks unless show_secrets; hostile strings from a capture are escaped; the page renders in a real browser
(Debian package `chromium`; skipped when it is missing, except in CI).
"""
from __future__ import annotations

import dataclasses
import functools
import re
import struct
import subprocess
import sys
import typing
import zlib
from html.parser import HTMLParser
from typing import ClassVar

import pytest

from analyzer import __version__
from analyzer.analyze import analyze_paths, load_keys
from analyzer.model import PHASES, Analysis, CaptureInfo, Finding, Phase, Redactable, Secret, Session
from analyzer.phases.cstp_connect import ConnectExchange, CSTPConnectDetails, TunnelParameters
from analyzer.phases.downloader import DownloaderDetails, DownloaderGet
from analyzer.phases.dtls import DTLSDetails, DTLSFlowSummary, DTLSHello, DTLSServerHello
from analyzer.phases.group_selection import GroupOption, GroupSelectionDetails, InitPost
from analyzer.phases.record import Record
from analyzer.phases.tls_handshake import (
    ClientHelloInfo,
    ConnectionSummary,
    ServerHelloInfo,
    TLSAlert,
    TLSHandshakeDetails,
)
from analyzer.phases.tunnel import CSTPTotals, Tunnel, TunnelEnd
from analyzer.phases.user_auth import AuthRound, UserAuthDetails
from analyzer.report.html import _dur, _frames, _iso, _rel, render_html
from analyzer.report.json_report import to_document
from analyzer.timefmt import clock
from lab.scenarios import SCENARIOS

from .conftest import HANDSHAKE_ONLY, SEVERAL_CLIENTS, facts, sample, sample_dirs
from .helpers import run_chromium

# (no session: no session page; several clients: a page of two sessions, tests/test_shared_address.py)
SAMPLES = [p.name for p in sample_dirs() if p.name not in HANDSHAKE_ONLY | SEVERAL_CLIENTS]
PASSWORD = "acflow-pass-1"


# ---------------------------------------------------------------------------------------------- helpers
@functools.cache
def analysis(name: str):
    d = sample(name)
    if name == "tls12-rsa":  # the RSA key alone decrypts TLS 1.2 with RSA key exchange
        keys, info = load_keys([], [d / "server-key.pem"])
    else:
        keys, info = load_keys([d / "keys.log"], [])
    return analyze_paths([d / "capture.pcapng"], keys, info)


@functools.cache
def page(name: str, show_secrets: bool = False) -> str:
    return render_html(analysis(name), version=__version__, show_secrets=show_secrets)


@functools.cache
def doc(name: str) -> dict:
    return to_document(analysis(name), version=__version__)


class _Page(HTMLParser):
    """Collects every tag and attribute, and the cell texts of the tables with a class."""

    VOID: ClassVar[set[str]] = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source", "area", "base"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._depth = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self._depth += 1
            if self._table is None and a.get("class"):
                self._table = a["class"].split()[0]
                self._depth = 1
                self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table and self._depth == 1:
            self._row = []
        elif tag in ("td", "th") and self._row is not None and self._depth == 1:
            self._cell = []
        if tag not in self.VOID:
            self.stack.append(tag)
        elif self._cell is not None:
            self._cell.append(" ")

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()
        if tag in ("td", "th") and self._cell is not None and self._depth == 1:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._depth == 1:
            if self._row and not all(c == "" for c in self._row):
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table" and self._table:
            self._depth -= 1
            if self._depth == 0:
                self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    p.close()
    return p


def secrets_of(name: str) -> list[str]:
    """The sample's secrets: the lab password, every webvpn cookie value the peers logged, the DTLS master secret."""
    d = sample(name)
    out = {PASSWORD}
    scenario = SCENARIOS.get(name)
    if scenario is not None:  # the password the client typed (auth-fail types a wrong one)
        out.add(scenario.password)
    for log in d.glob("*.log"):
        for m in re.finditer(r"webvpn=([A-Za-z0-9+/=]{16,})", log.read_text(errors="replace")):
            out.add(m.group(1))
    for c in facts(name).get("connects") or []:
        master = dict(c.get("request_headers") or []).get("X-DTLS-Master-Secret")
        if master:
            out |= {master, master.lower()}
    return sorted(out)


def hello_count(name: str) -> int:
    dtls = next(p for p in doc(name)["sessions"][0]["phases"] if p["phase"] == "dtls")
    return sum(len(f["client_hellos"]) for f in (dtls["details"] or {}).get("flows") or [])


# ---------------------------------------------------------------------------------------------- every sample
def test_samples_present():
    assert len(SAMPLES) >= 9, SAMPLES


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_page_structure(name):
    text = page(name)
    assert text.startswith("<!DOCTYPE html>")
    p = parse(text)
    assert not p.errors, p.errors[:5]
    assert p.stack == [], p.stack
    tags = {t for t, _ in p.tags}
    # self-contained: no script, no external resource of any kind
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "base", "form"}, tags
    for t, a in p.tags:
        assert not any(k.startswith("on") for k in a), (t, a)
        assert "src" not in a, (t, a)
        assert not (a.get("href") or "#").startswith(("http", "//", "javascript")), (t, a)
    assert "@import" not in text and "url(http" not in text
    for heading in ("Phase timeline", "Findings", "Sequence diagram", "Inner traffic over time",
                    "DTLS ClientHello times", "Tunnel", "Verbose data"):
        assert f"<h3>{heading}</h3>" in text, heading
    assert text.count('<svg class="sequence"') == len(doc(name)["sessions"])
    assert "<details" in text


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_page_data(name):
    """The header, the timeline and the findings tables show what the analysis found."""
    d = doc(name)
    text = page(name)
    p = parse(text)
    assert len(d["sessions"]) == 1
    s = d["sessions"][0]
    assert f"Session {s['id']}: {s['client']} ⇄ {s['gateway']}" in "".join(p.text)
    assert _iso(s["start"]) in text
    assert _dur(s["start"], s["end"]) in text
    rows = p.tables["timeline"][1:]
    assert [r[1].split()[0] for r in rows] == list(PHASES)
    for row, ph in zip(rows, s["phases"], strict=True):
        # relative, then the absolute time of day (in --tz, UTC by default) below it
        assert row[2].split()[:1] == ([_rel(ph["start"], s["start"])] if ph["start"] is not None else [])
        assert row[2].split()[1:] == ([clock(ph["start"])] if ph["start"] is not None else [])
        assert row[3] == _dur(ph["start"], ph["end"])
        assert row[4] == ph["status"]
        assert row[5] == _frames(ph["frames"])
        assert row[6] == " ".join(ph["summary"].split())
    # the session's findings table, then the capture-wide one (when the document has capture-wide findings)
    tables: list = []
    for r in p.tables.get("findings", []):
        if r[:2] == ["severity", "id"]:
            tables.append([])
        else:
            tables[-1].append(r)
    assert len(tables) == bool(s["findings"]) + bool(d["findings"])
    frows = tables[0] if s["findings"] else []
    if d["findings"]:
        assert [(r[0], r[1].split()[0]) for r in tables[-1]] == [(f["severity"].upper(), f["id"])
                                                                 for f in d["findings"]]
    assert [(r[0], r[1].split()[0]) for r in frows] == [(f["severity"].upper(), f["id"]) for f in s["findings"]]
    for r, f in zip(frows, s["findings"], strict=True):
        assert " ".join(f["message"].split()) in r[4]
        assert r[3] == _frames(f["frames"])


def test_baseline_content():
    text = page("baseline")
    assert "PSK-NEGOTIATE" in text
    seq = re.search(r'<svg class="sequence".*?</svg>', text, re.DOTALL).group(0)
    for label in ("TLS ClientHello", "ServerHello", "POST /auth auth-reply (username)", "CONNECT /CSCOSSLC/tunnel",
                  "200 CONNECTED", "DISCONNECT over CSTP"):
        assert label in seq, label
    assert "vpn.acflow.test" in text


def test_group_select_names():
    text = page("group-select")
    for g in facts("group-select")["group_list"]:
        assert g["label"] in text and g["value"] in text
    seq = re.search(r'<svg class="sequence".*?</svg>', text, re.DOTALL).group(0)
    assert "group-select=" + facts("group-select")["group_chosen"] in seq


def test_downloader_gets_in_sequence():
    text = page("downloader")
    seq = re.search(r'<svg class="sequence".*?</svg>', text, re.DOTALL).group(0)
    for get in facts("downloader")["downloader"]:
        assert f"GET {get['uri']}" in seq
    dl = next(p for p in doc("downloader")["sessions"][0]["phases"] if p["phase"] == "downloader")
    assert dl["details"]["gets"]
    for g in dl["details"]["gets"]:
        assert f"GET {g['target']}" in seq
    assert "new TCP+TLS connection tcp.stream 1" in seq


def test_dtls_blocked_hello_markers():
    """One dot per DTLS ClientHello of the analysis (the 1-2-4 s backoff of each of the client's attempts)."""
    text = page("dtls-blocked")
    n = hello_count("dtls-blocked")
    if n == 0 and not __import__("analyzer.pipeline", fromlist=["_HAVE_DTLS"])._HAVE_DTLS:
        pytest.skip("the DTLS dissector is not available")
    assert n == len(facts("dtls-blocked")["oracle_tshark"]["dtls_client_hello_times"])
    assert text.count('class="hello-marker') == n
    assert text.count('class="server-hello-marker') == 0
    assert text.count("dtls-hello") == n  # and one arrow each in the sequence diagram
    assert "retransmission" in text


@pytest.mark.parametrize("name", SAMPLES)
def test_hello_markers_every_sample(name):
    n = hello_count(name)
    assert page(name).count('class="hello-marker') == n
    if n == 0:
        assert "hello-empty" in page(name)


@pytest.mark.parametrize("name", SAMPLES)
def test_traffic_plot_matches_series(name):
    """The bars carry every inner byte counted in the tunnel (the series buckets, summed)."""
    s = analysis(name).sessions[0]
    series = s.tunnel.series
    text = page(name)
    bars = re.findall(r'<rect class="traffic-bar (\w+) (\w+)".*?<title>.*?: (\d+) bytes in (\d+) packet', text)
    for ch in ("cstp", "dtls"):
        for d in ("c2s", "s2c"):
            mine = [b for b in bars if b[:2] == (ch, d)]
            theirs = [x for x in series if x[:2] == (ch, d)]
            assert sum(int(b[2]) for b in mine) == sum(x[3] for x in theirs), (ch, d)
            assert sum(int(b[3]) for b in mine) == sum(x[4] for x in theirs), (ch, d)
    t = doc(name)["sessions"][0]["tunnel"]
    cstp = next(p for p in doc(name)["sessions"][0]["phases"] if p["phase"] == "cstp-connect")
    if len((cstp["details"] or {}).get("connects") or []) <= 1:  # (one CSTP channel: the tunnel totals cover it)
        total = sum((t.get(ch) or {}).get("inner_bytes", {}).get(k, 0) for ch in ("cstp", "dtls")
                    for k in ("c2s", "s2c"))
        assert sum(int(b[2]) for b in bars) == total
    if not series:
        assert "traffic-empty" in text


@pytest.mark.parametrize("name", SAMPLES)
def test_no_secret_unless_show_secrets(name):
    text = page(name)
    for secret in secrets_of(name):
        assert secret not in text, secret
    assert "Secrets are shown" not in text


@pytest.mark.parametrize("name", ["baseline", "legacy-dtls", "downloader"])
def test_show_secrets_reveals(name):
    """With show_secrets the same secrets are on the page (so the test above would see a leak)."""
    text = page(name, show_secrets=True)
    assert "Secrets are shown" in text
    master = dict(facts(name)["connects"][0]["request_headers"])["X-DTLS-Master-Secret"]
    assert master in text or master.lower() in text
    cookies = [s for s in secrets_of(name) if s != PASSWORD and s.lower() != master.lower()]
    assert any(c in text for c in cookies), cookies
    if name != "downloader":  # the downloader sample's logins ran outside the capture
        assert PASSWORD in text


def test_show_secrets_reveals_typed_password():
    assert "wrong-password" in secrets_of("auth-fail")
    assert "wrong-password" in page("auth-fail", show_secrets=True)


def test_cli_writes_html(tmp_path):
    d = sample("baseline")
    out = tmp_path / "report.html"
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(d / "capture.pcapng"), "--keylog",
                        str(d / "keys.log"), "--format", "html", "-o", str(out)],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "cstp-connect" in text and PASSWORD not in text


# ---------------------------------------------------------------------------------------------- hand-built sessions
HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(2)>', "</title><script>alert(3)</script>",
           "' onmouseover='alert(4)", "]]></svg><script>alert(5)</script>", "&lt;script&gt;"]


def _rec(cls, **given):
    """A typed details record with the fields given; the other required fields empty (None, [], {} or an empty
    record): the renderer must cope with records as sparse as a damaged capture can make them."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in given or f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        t = hints[f.name]
        origin = typing.get_origin(t)
        if isinstance(t, type) and issubclass(t, Record):
            given[f.name] = _rec(t)
        elif origin is list:
            given[f.name] = []
        elif origin is dict:
            given[f.name] = {}
        else:
            given[f.name] = None
    return cls(**given)


def _hostile_analysis(secret: str = "hunter2-very-secret") -> Analysis:
    h = HOSTILE
    t0 = 1_800_000_000.0
    hdrs = Redactable([["Cookie", "webvpn=" + secret], ["X-CSTP-Banner", h[0]], [h[1], h[2]]],
                      [["Cookie", "webvpn=«redacted»"], ["X-CSTP-Banner", h[0]], [h[1], h[2]]])
    phases = [
        Phase("tls-handshake", "ok", t0, t0 + 0.1, [1, 3], _rec(
            TLSHandshakeDetails, client=h[1], connection="tcp.stream 0",
            client_hello=_rec(ClientHelloInfo, frame=1, time=t0, sni=h[0], max_version=h[3]),
            server_hello=_rec(ServerHelloInfo, frame=3, time=t0 + 0.1, version=h[4], cipher_suite=h[2]),
            certificates=[{"subject": h[0]}],
            alerts=[_rec(TLSAlert, direction="s2c", name=h[1], time=t0 + 0.1, frame=3)],
            connections=[_rec(ConnectionSummary, connection=h[2], client=h[0], start=t0, first_frame=1)]), h[0]),
        Phase("group-selection", "ok", t0 + 0.2, t0 + 0.3, [5, 6], _rec(
            GroupSelectionDetails,
            posts=[_rec(InitPost, time=t0 + 0.2, frame=5, target=h[1], group_select=h[0], status=200,
                        response_time=t0 + 0.3, response_frame=6, response_type=h[3], group_list=h[:3],
                        headers=hdrs)],
            group_list=[GroupOption(value=h[0], label=h[1], selected=True)]), h[1]),
        Phase("user-auth", "failed", t0 + 0.4, t0 + 0.5, [7, 8], _rec(
            UserAuthDetails,
            rounds=[_rec(AuthRound, time=t0 + 0.4, frame=7, target="/auth", type=h[0], fields=[h[1]],
                         xml=Redactable(f"<config-auth><password>{secret}</password><x>{h[0]}</x></config-auth>",
                                        f"<config-auth><password>«redacted»</password><x>{h[0]}</x></config-auth>"),
                         status=401, response_time=t0 + 0.5, response_frame=8, message=h[2])],
            session_token=Secret(secret), complete_xml="<?xml version='1.0'?>" + h[4]), h[2]),
        Phase("downloader", "ok", t0 + 0.6, t0 + 0.7, [9], _rec(
            DownloaderDetails,
            gets=[_rec(DownloaderGet, time=t0 + 0.6, frame=9, connection=h[0], target=h[1], status=200,
                       cookie=Secret(secret), response_frame=10)]), h[3]),
        Phase("cstp-connect", "ok", t0 + 0.8, t0 + 5, [11, 12], _rec(
            CSTPConnectDetails,
            connects=[_rec(ConnectExchange, time=t0 + 0.8, frame=11, connection=h[0], target=h[1],
                           request_headers=hdrs, response_headers=hdrs, status=200, reason=h[2],
                           response_time=t0 + 0.9, response_frame=12, x_reason=h[3],
                           parameters=_rec(TunnelParameters, banner=h[0], address=h[1], mtu=1400))],
            parameters=_rec(TunnelParameters, banner=h[0], address=h[1], mtu=1400)), h[4]),
        Phase("dtls", "failed", t0 + 1, t0 + 8, [20, 21, 22], _rec(
            DTLSDetails,
            flows=[_rec(DTLSFlowSummary, connection=h[0], client=h[1], gateway=h[2], mode=h[3],
                        client_hellos=[_rec(DTLSHello, ts=t0 + 1 + k, frame=20 + k, retransmission=k > 0)
                                       for k in range(3)],
                        client_hello_count=3, hello_intervals=[1.0, 1.0],
                        alerts=[{"direction": "s2c", "name": h[0], "ts": t0 + 4, "frame": 30}])]), h[0]),
    ]
    finding = Finding(id=h[0], severity="error", message=h[1], remedy=h[2], time=t0 + 0.5, frames=[8],
                      phase="user-auth", evidence={"banner": h[0], "token": Secret(secret)})
    s = Session(id=h[0], client=h[1], gateway=h[2], start=t0, end=t0 + 8, phases=phases, findings=[finding],
                tunnel=Tunnel(cstp=CSTPTotals(inner_packets={"c2s": 2, "s2c": 1}, inner_bytes={"c2s": 200, "s2c": 100},
                                              dpd={"c2s": 0, "s2c": 0}, keepalives={"c2s": 0, "s2c": 0}, connections=1),
                              end=TunnelEnd(direction="s2c", type=h[1], ts=t0 + 8, frame=40, reason=h[0], channel=h[2]),
                              series=[("cstp", "c2s", int(t0) + 1, 200, 2), ("cstp", "s2c", int(t0) + 2, 100, 1),
                                      (h[0], h[1], 3, 4, 5)]),
                connections=[_rec(ConnectionSummary, connection=h[0], client=h[1])], notes=[h[2], h[5]])
    return Analysis(captures=[CaptureInfo(path=h[0] + ".pcap", frames=40, first=t0, last=t0 + 8,
                                          errors=[h[1]], keys={"keylog_errors": [h[2]]})],
                    sessions=[s], findings=[Finding(id=h[3], severity="warning", message=h[4], remedy=h[0])])


@pytest.mark.parametrize("show_secrets", [False, True])
def test_hostile_strings_are_escaped(show_secrets):
    text = render_html(_hostile_analysis(), version="<b>9</b>", show_secrets=show_secrets)
    low = text.lower()
    assert "<script" not in low and "<img" not in low and "<b>9</b>" not in low
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # rendered, escaped
    assert "&amp;lt;script&amp;gt;" in text  # an already-escaped string is escaped again, not trusted
    p = parse(text)
    assert not p.errors and p.stack == []
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "div", "p", "b", "i",
               "span", "code", "pre", "a", "ul", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td",
               "details", "summary", "section", "br", "svg", "g", "rect", "line", "text", "polygon", "circle"}
    assert {t for t, _ in p.tags} <= allowed
    for t, a in p.tags:
        assert not any(k.startswith("on") for k in a), (t, a)
    assert text.count("</title>") == text.count("<title>")
    # hostile DTLS flow still drawn: three hellos, the alert and the hostile-named series ignored
    assert text.count('class="hello-marker') == 3
    assert text.count('class="traffic-bar') == 2


def test_hand_built_secrets():
    secret = "hunter2-very-secret"
    a = _hostile_analysis(secret)
    assert secret not in render_html(a, version="1", show_secrets=False)
    shown = render_html(a, version="1", show_secrets=True)
    assert secret in shown and "Secrets are shown" in shown


def test_many_hellos_and_empty_analysis():
    a = _hostile_analysis()
    t0 = a.sessions[0].start
    flow = a.sessions[0].phase("dtls").details.flows[0]
    flow.client_hellos = [_rec(DTLSHello, ts=t0 + 1 + k * 0.5, frame=100 + k, retransmission=k > 0) for k in range(150)]
    flow.client_hello_count = 400
    flow.server_hello = _rec(DTLSServerHello, ts=t0 + 80, frame=400)
    text = render_html(a, version="1")
    assert text.count('class="hello-marker') == 150
    assert text.count('class="server-hello-marker') == 1
    assert "150 ClientHello(s) drawn of 400" in text
    assert "more messages not drawn" in text  # the sequence diagram stays bounded
    assert "250 more ClientHello(s) not recorded" in text
    empty = render_html(Analysis(captures=[CaptureInfo(path="x.pcap")]), version="1")
    assert "No AnyConnect-protocol session found" in empty and not parse(empty).errors


# ---------------------------------------------------------------------------------------------- real browser
def _png_rows(data: bytes, max_rows: int):
    """Decode the first `max_rows` rows of an 8-bit RGB/RGBA non-interlaced PNG: (width, height, bpp, rows)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, bytearray()
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
    bpp = 3 if ctype == 2 else 4
    stride = width * bpp
    raw = zlib.decompressobj().decompress(bytes(idat), (stride + 1) * max_rows)
    rows, prev = [], bytearray(stride)
    for y in range(min(height, max_rows, len(raw) // (stride + 1))):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif f == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + (left + prev[x]) // 2) & 255
        elif f == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


@pytest.mark.parametrize("name", ["dtls-blocked", "downloader"])
def test_renders_inrun_chromium(chromium, tmp_path, name):
    report = tmp_path / "report.html"
    report.write_text(page(name), encoding="utf-8")
    shot = tmp_path / "shot.png"
    p = run_chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert shot.exists() and shot.stat().st_size > 20000, (p.returncode, p.stderr[-2000:])
    width, height, bpp, rows = _png_rows(shot.read_bytes(), 700)
    assert (width, height) == (1280, 2000)
    pixels = [r[x:x + 3] for r in rows[::4] for x in range(0, len(r), bpp * 4)]
    non_white = sum(1 for px in pixels if min(px) < 200)
    assert non_white > len(pixels) * 0.01, "screenshot is blank"
    assert len(set(pixels)) > 20
    # the status badges (CSS applied): some pixels of the "ok" green #1a7f37
    assert sum(1 for px in pixels if abs(px[0] - 0x1A) < 12 and abs(px[1] - 0x7F) < 12 and abs(px[2] - 0x37) < 12) > 3

    dom = run_chromium(chromium, tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html_dom = dom.stdout
    assert '<svg class="sequence"' in html_dom and '<svg class="traffic"' in html_dom
    assert html_dom.count('class="hello-marker') == hello_count(name)
    assert html_dom.count("<details") == page(name).count("<details")
    assert "<script" not in html_dom
