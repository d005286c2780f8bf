"""How right is keyless reading? Every capture analysed twice — with its key log and with no key — and the two
compared session by session (issue #13).

    python -m analyzer.agreement                 # samples/ → docs/keyless-agreement.md
    python -m analyzer.agreement --bench DIR     # also the bench captures under DIR (e.g. bench/cache), if present
                                                 # (without --bench, the bench section already there is kept)
    python -m analyzer.agreement --print         # the table on stdout, nothing written

The keyed analysis is the truth (itself checked against tshark and the peers' logs by the other tests). Compared:

* sessions: a keyed session is *recognised* without keys when a keyless session has the same client and gateway
  and overlaps it in time; the rest is measured on recognised sessions only;
* phase statuses: the keyed status against the keyless one — `inferred.status` where the keyless reading gave
  one to a phase it could not read (`undecrypted`), else the phase's own status (an `undecrypted` phase without
  an inference counts as a disagreement);
* tunnel up/down: per tunnel connection, when the CONNECT was answered (`tunnel_established`) and when the tunnel
  ended (its DISCONNECT/TERMINATE frame, else the connection's last packet), within `TIME_TOLERANCE`;
* frame class per record: every CSTP frame of a tunnel connection and every DTLS channel record, its class by
  decryption (DATA, DPD_REQ, DPD_RESP, KEEPALIVE, DISCONNECT, TERMINATE; DTLS MTU probes — padded DPD requests —
  as MTU_PROBE) against its class by size (analyzer/keyless.py), matched by direction and frame;
* inner packets: DATA frames per direction (CSTP and DTLS), keyless estimate against keyed count;
* findings: every warning or error the keyless analysis gives must be one the keyed analysis gives too
  (`unsupported` lists those that are not); how many of the keyed findings keyless reading finds is shown.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .analyze import analyze_paths, load_keys
from .evidence import GatewaySpec
from .model import PHASES
from .phases.cstp_connect import connect_details

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "keyless-agreement.md"
TIME_TOLERANCE = 0.05  # seconds
CLASSES = ("DATA", "DPD_REQ", "DPD_RESP", "KEEPALIVE", "DISCONNECT", "TERMINATE", "MTU_PROBE")
#: keyless classes that name a coarse class only: END, the gateway's last control record before the connection
#: closed (its DISCONNECT or TERMINATE: the same bare 8-byte frame; analyzer/inference.py `_ending`) — a record so
#: read agrees with a keyed DISCONNECT or TERMINATE in the coarse class and is left out of the fine classes' rates
COARSE_ONLY = ("END",)
MTU_PROBE_PAYLOAD = 100  # a DTLS DPD request or answer padded beyond this is an MTU probe (tcptracker.py)

#: coarse frame classes: what record sizes alone tell apart (an unanswered DPD request and a keepalive are the
#: same 8 bytes; timing tells them apart: analyzer/keyless.py `refine`, `share_dpd_timers`)
COARSE = {"DATA": "DATA", "DPD_REQ": "CONTROL", "DPD_RESP": "CONTROL", "KEEPALIVE": "CONTROL",
          "DISCONNECT": "END", "TERMINATE": "END", "END": "END", "MTU_PROBE": "MTU_PROBE"}

#: the agreement the CI test holds the samples to (tests/test_keyless_agreement.py); docs/keyless-agreement.md
#: states them. Every phase, the tunnel times, the inner packets, every coarse class: REQUIRED; every fine class:
#: REQUIRED_FINE.
#: Sessions recognised without keys: REQUIRED_RECOGNISED (a session that never reached its tunnel is a TLS
#: connection like any other without keys).
REQUIRED = 0.95
#: every fine class (KEEPALIVE, DPD_REQ…) — the coarse ones stay at REQUIRED. An unanswered DPD request and a keepalive
#: are the same 8 bytes with no answer; only timing tells them apart, and a check sent once into a peer that is gone
#: has none to go by: the gateway's DPD request into a hung client's silence (lab scenario vpn-client-hangs), the
#: client's one DPD request on waking that the gateway answers with a reset (scripted case sleep-gateway-dpd) — two
#: of ~20 keepalives, 90.9 % (session 18)
REQUIRED_FINE = 0.90
REQUIRED_RECOGNISED = 0.80
SAMPLES_SOURCES = "samples/ (lab samples, scripted cases, cut captures)"
BENCH_HEADING = "## Bench captures"


@dataclass
class Tally:
    """Agreement counters over many captures."""

    captures: int = 0
    sessions_keyed: int = 0
    sessions_recognised: int = 0
    phase: Counter = field(default_factory=Counter)  # phase -> sessions compared
    phase_agree: Counter = field(default_factory=Counter)
    phase_disagreements: list = field(default_factory=list)  # (capture, phase, keyed, keyless)
    tunnel_up: list = field(default_factory=lambda: [0, 0])  # [agree, compared]
    tunnel_down: list = field(default_factory=lambda: [0, 0])
    cls_keyed: Counter = field(default_factory=Counter)  # class -> records of the class by decryption
    cls_keyless: Counter = field(default_factory=Counter)
    cls_agree: Counter = field(default_factory=Counter)
    class_confusions: Counter = field(default_factory=Counter)  # (keyed, keyless) -> records
    coarse_only: Counter = field(default_factory=Counter)  # keyed class -> records keyless read as a COARSE_ONLY
    inner_keyed: int = 0
    inner_keyless: int = 0
    inner_min: int = 0  # sum over channels and directions of min(keyed, keyless)
    findings_keyed: int = 0  # keyed (id, severity) per session
    findings_found: int = 0  # of those, given without keys too
    unsupported: list = field(default_factory=list)  # (capture, id, severity): keyless warning/error not keyed
    #: keyless information the keyed analysis does not give, by id (KEYS_MISSING, keyless by nature, left out)
    info_extra: Counter = field(default_factory=Counter)
    not_recognised: list = field(default_factory=list)  # capture names with keyed sessions not found keyless
    forced: Tally | None = None  # those captures again, their gateway named (measure)

    def phase_rate(self, name: str) -> float | None:
        n = self.phase[name]
        return self.phase_agree[name] / n if n else None

    def class_rate(self, name: str) -> float | None:
        """Agreement of a fine class over the records either reading gave it, less those the keyless reading gave
        a coarse class only (COARSE_ONLY)."""
        union = self.cls_keyed[name] - self.coarse_only[name] + self.cls_keyless[name] - self.cls_agree[name]
        return self.cls_agree[name] / union if union else None

    def coarse(self) -> dict[str, tuple[int, int, int]]:
        """Coarse class -> (keyed, keyless, both)."""
        out: dict = {}
        for fine, c in COARSE.items():
            k, l_, b = out.get(c, (0, 0, 0))
            out[c] = (k + self.cls_keyed[fine], l_ + self.cls_keyless[fine], b + self.cls_agree[fine])
        for (a, b), n in self.class_confusions.items():
            if COARSE.get(a) == COARSE.get(b):
                k, l_, both = out[COARSE[a]]
                out[COARSE[a]] = (k, l_, both + n)
        for a, n in self.coarse_only.items():
            k, l_, both = out[COARSE[a]]
            out[COARSE[a]] = (k, l_, both + n)
        return out

    def coarse_rate(self, name: str) -> float | None:
        k, l_, b = self.coarse()[name]
        return b / (k + l_ - b) if k + l_ - b else None

    def failures(self) -> list[str]:
        """What falls below the stated agreement (empty: the measurement meets it)."""
        out = []
        for ph in PHASES:
            r = self.phase_rate(ph)
            if r is not None and r < REQUIRED:
                out.append(f"phase {ph}: {r:.3f}")
        for name, (a, n) in (("tunnel up", self.tunnel_up), ("tunnel down", self.tunnel_down)):
            if n and a / n < REQUIRED:
                out.append(f"{name}: {a}/{n}")
        for c in self.coarse():
            r = self.coarse_rate(c)
            if r is not None and r < REQUIRED:
                out.append(f"class {c}: {r:.3f}")
        for c in CLASSES:
            r = self.class_rate(c)
            if r is not None and r < REQUIRED_FINE:
                out.append(f"fine class {c}: {r:.3f}")
        agree, total = self.records()
        if total and agree / total < REQUIRED:
            out.append(f"records: {agree}/{total}")
        big = max(self.inner_keyed, self.inner_keyless)
        if big and self.inner_min / big < REQUIRED:
            out.append(f"inner packets: {self.inner_min}/{big}")
        if self.sessions_keyed and self.sessions_recognised / self.sessions_keyed < REQUIRED_RECOGNISED:
            out.append(f"sessions recognised: {self.sessions_recognised}/{self.sessions_keyed}")
        out += [f"unsupported finding {n} {i} ({s})" for n, i, s in self.unsupported]
        return out

    def records(self) -> tuple[int, int]:
        """(records whose class agrees, records compared)."""
        total = sum(self.cls_keyed.values())
        return sum(self.cls_agree.values()), total


def _analyse(capture: Path, keylog: Path | None, gateways=None):
    keys, info = load_keys([keylog] if keylog is not None else [], [])
    pipes: list = []
    a = analyze_paths([capture], keys, info, on_pipeline=pipes.append, gateways=gateways)
    return a, pipes[0]


def _keyless_status(p) -> str:
    # a phase that was read from outside (`undecrypted`); one seen to be before the capture keeps that status (the
    # reading of a tunnel already up then is its `inferred`, status ok: the tunnel, not the CONNECT)
    return p.inferred.status if p.inferred is not None and p.status == "undecrypted" else p.status


def _overlaps(a, b) -> bool:
    return (a.client == b.client and a.gateway == b.gateway and a.start is not None and b.start is not None
            and a.start <= (b.end or b.start) and b.start <= (a.end or a.start))


def _keyed_classes(stats, dtls: bool) -> dict:
    """(direction, frame) -> [class, …] of the non-DATA frames of a decrypted channel."""
    out: dict = {}
    for direction, frame, name, size in stats.controls:
        cls = name
        if dtls and name in ("DPD_REQ", "DPD_RESP") and size > MTU_PROBE_PAYLOAD:
            cls = "MTU_PROBE"
        elif name == "COMPRESSED_DATA":
            cls = "DATA"
        out.setdefault((direction, frame), []).append(cls)
    return out


def _compare_channel(t: Tally, keyed_stats, est, dtls: bool) -> None:
    """Frame class per record of one channel: keyed `ChannelStats` against a keyless `TunnelEstimate`."""
    keyed = _keyed_classes(keyed_stats, dtls)
    data = {d: sum(v[0] for k, v in keyed_stats.frames[d].items() if k in ("DATA", "COMPRESSED_DATA"))
            for d in ("c2s", "s2c")}
    for cls in (c for v in keyed.values() for c in v):
        t.cls_keyed[cls] += 1
    t.cls_keyed["DATA"] += data["c2s"] + data["s2c"]
    guessed: dict = {}
    for e in (est.controls if est is not None else []):
        guessed.setdefault((e[0], e[1]), []).append(e[3])
    kl_data = {d: (est.dirs[d].data if est is not None else 0) for d in ("c2s", "s2c")}
    for kind in (k for v in guessed.values() for k in v):
        t.cls_keyless[kind] += 1
    t.cls_keyless["DATA"] += kl_data["c2s"] + kl_data["s2c"]
    # control frames: matched by direction and frame
    wrongly_control = {"c2s": 0, "s2c": 0}  # keyed DATA, keyless a control class
    for key in set(keyed) | set(guessed):
        k, g = list(keyed.get(key, [])), list(guessed.get(key, []))
        for cls in list(k):
            if cls in g:
                g.remove(cls)
                k.remove(cls)
                t.cls_agree[cls] += 1
        for a, b in zip(k, g):
            if b in COARSE_ONLY and COARSE.get(a) == COARSE[b]:
                t.coarse_only[a] += 1
            else:
                t.class_confusions[(a, b)] += 1
        for a in k[len(g):]:
            t.class_confusions[(a, "DATA")] += 1
        for b in g[len(k):]:
            t.class_confusions[("DATA", b)] += 1
            wrongly_control[key[0]] += 1
    for d in ("c2s", "s2c"):
        t.cls_agree["DATA"] += max(0, min(data[d] - wrongly_control[d], kl_data[d]))
        t.inner_keyed += keyed_stats.inner[d]
        t.inner_keyless += kl_data[d]
        t.inner_min += min(keyed_stats.inner[d], kl_data[d])


def compare(t: Tally, name: str, keyed, keyless) -> None:
    """Add one capture's keyed and keyless analyses ((Analysis, Pipeline) each) to the tally."""
    (ka, kp), (la, lp) = keyed, keyless
    t.captures += 1
    missed = False
    for ks in ka.sessions:
        t.sessions_keyed += 1
        ls = next((s for s in la.sessions if _overlaps(ks, s)), None)
        kf = {(f.id, f.severity) for f in ks.findings}
        t.findings_keyed += len(kf)
        if ls is None:
            missed = True
            continue
        t.sessions_recognised += 1
        lf = {(f.id, f.severity) for f in ls.findings}
        t.findings_found += len(kf & lf)
        for fid, sev in sorted(lf - kf):
            if sev in ("warning", "error"):
                t.unsupported.append((name, fid, sev))
            elif fid != "KEYS_MISSING" and not any(i == fid for i, _ in kf):
                t.info_extra[fid] += 1
        for ph in PHASES:
            # (a phase the keyed analysis could not decrypt either — a capture without the TLS connection that gave
            # the DTLS keys — is read from outside there too)
            kst, lst = _keyless_status(ks.phase(ph)), _keyless_status(ls.phase(ph))
            t.phase[ph] += 1
            if kst == lst:
                t.phase_agree[ph] += 1
            else:
                t.phase_disagreements.append((name, ph, kst, lst))
        _tunnels(t, ks, ls, kp, lp)
    if missed:
        t.not_recognised.append(name)


def _tunnels(t: Tally, ks, ls, kp, lp) -> None:
    """Tunnel up/down times and frame classes of every tunnel connection and DTLS flow of one session."""
    cd = connect_details(ks.phase("cstp-connect"))
    inf = ls.phase("cstp-connect").inferred
    guessed = {x.connection: x for x in (inf.tunnels or [])} if inf is not None else {}
    keyed_conns = {f"tcp.stream {c.index}": c for c in kp.tcp.values() if c.tunnel is not None}
    if cd is not None:
        for ex in cd.connects:
            c = keyed_conns.get(ex.connection)
            if c is None or c.tunnel_ts is None or not (ks.start <= c.first_ts <= (ks.end or c.first_ts)):
                continue
            g = guessed.get(ex.connection)
            t.tunnel_up[1] += 1
            t.tunnel_down[1] += 1
            if g is None:
                _compare_channel(t, c.tunnel, None, False)
                continue
            if g.established_time is not None and abs(g.established_time - c.tunnel_ts) <= TIME_TOLERANCE:
                t.tunnel_up[0] += 1
            down = c.tunnel.disconnect["ts"] if c.tunnel.disconnect else c.last_ts
            if g.end_time is not None and abs(g.end_time - down) <= TIME_TOLERANCE:
                t.tunnel_down[0] += 1
            _compare_channel(t, c.tunnel, g.reading.estimate, False)
    keyless_flows = {f.key: f for f in lp.udp.values()}
    for f in kp.udp.values():
        if f.keys_source is None or not (ks.client == f.client[0]):
            continue
        lf = keyless_flows.get(f.key)
        _compare_channel(t, f.channel, lf.estimate if lf is not None else None, True)


def captures(bench: Path | None = None) -> list[tuple[str, Path, Path]]:
    """(name, capture, key log) of every sample (and bench capture) with a key log."""
    out = []
    for cap in sorted((ROOT / "samples").rglob("capture.pcapng")):
        if (cap.parent / "keys.log").exists():
            out.append((str(cap.parent.relative_to(ROOT / "samples")), cap, cap.parent / "keys.log"))
    if bench is not None and bench.is_dir():
        for cap in sorted(bench.glob("*/capture.pcapng")):
            if (cap.parent / "keys.log").exists():
                out.append((f"bench/{cap.parent.name}", cap, cap.parent / "keys.log"))
    return out


def measure(items) -> Tally:
    """The tally of ``items``; its `forced` tally: the sessions keyless reading did not recognise, analysed
    again without keys with their gateway named (`--gateway`, as a user who knows it would) and compared."""
    t = Tally()
    t.forced = Tally()
    for name, cap, keylog in items:
        keyed = _analyse(cap, keylog)
        compare(t, name, keyed, _analyse(cap, None))
        if name in t.not_recognised:
            missed = [s for s in keyed[0].sessions]
            gws = [GatewaySpec.parse(s.gateway) for s in missed]
            compare(t.forced, name, keyed, _analyse(cap, None, gws))
    return t


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def render(t: Tally, sources: str, bench: bool = False) -> str:
    """The Markdown tables of one measurement (``bench``: the section of the bench captures, after the samples')."""
    agree, total = t.records()
    lines = [
        "# Keyless reading: agreement with the keyed analysis",
        "",
        "Generated by `python -m analyzer.agreement` (do not edit by hand). Every capture is analysed with its key "
        "log and with none; the keyed analysis is the truth. How each item is compared: the docstring of "
        "analyzer/agreement.py.",
        "",
        f"The CI test (tests/test_keyless_agreement.py) fails when the samples fall below {100 * REQUIRED:.0f} % for "
        "any phase, the tunnel up/down times, the inner packet counts, any coarse frame class (DATA, CONTROL, END, "
        f"MTU_PROBE) or every record's class, or below {100 * REQUIRED_FINE:.0f} % for any fine frame class (a DPD "
        "request sent once into a peer that is gone has no answer and no timing to tell it from a keepalive); "
        "when fewer than "
        f"{100 * REQUIRED_RECOGNISED:.0f} % of the "
        "sessions are recognised without keys; or when keyless reading gives a warning or error the keyed "
        "analysis does not.",
        "",
        "An unanswered DPD request and a keepalive are the same 8 bytes; timing tells them apart "
        "(analyzer/keyless.py `refine`, `share_dpd_timers`): a control record answered in kind by the peer is a DPD "
        "request; an unanswered one the peer got is a keepalive (the peer answers every DPD request it gets, at "
        "once): over TLS, one followed by an answered DPD request of the same sender, the connection going on "
        "after the answer (the sender sent again, or the answering peer's next record there was no control "
        "frame), as TCP delivers in order; over DTLS, where a datagram may be lost, one between two DPD requests "
        "of its sender that the peer answered within a second, the earlier answer at most 2.5 s before it and the "
        "later request at most 2.5 s after it; otherwise an unanswered "
        "one is a DPD request when it came after at least the silence from the peer after which its sender's "
        "answered DPD requests came and after a longer silence than any such keepalive of its sender (on any "
        "channel of the session: the DPD timer counts the silence from the peer, the keepalive timer the sender's "
        "own), or when it is among the last records its sender sent on the "
        "channel while the peer stayed silent there (a run of two or more, or one sent during a dead-peer run on "
        "the session's other channel); else a keepalive. Left undecidable from the wire: on DTLS, a keepalive sent "
        "within the last second below its sender's DPD interval (the clients' timers count whole seconds); an "
        "unanswered DPD request in a session where none of its sender's DPD requests was ever answered and that "
        "does not end its sender's traffic (it reads as a keepalive); and, in a dead-peer spell of a sender whose "
        "keepalive interval is shorter than its DPD interval (Cisco's defaults: 20 s and 30 s), the keepalives it "
        "sends among its last, unanswered DPD requests (they read as DPD requests: a lab run with keepalive 3 s "
        "and DPD 8 s, not in samples/, read 5 of its 8 keepalives so).",
        "",
    ]
    if bench:
        lines = [BENCH_HEADING, "", "Large captures of one session each (bench/lab.py: a paced TCP bulk transfer "
                 "over DTLS, and over CSTP with UDP blocked); not in git, measured when present, not held to the "
                 "targets by CI.", ""]
    lines += [
        f"Captures: {sources} — {t.captures} captures, {t.sessions_keyed} keyed sessions, "
        f"{t.sessions_recognised} recognised as VPN sessions without keys "
        f"({_pct(t.sessions_recognised / t.sessions_keyed if t.sessions_keyed else None)}).",
        "",
        "## Phase status (recognised sessions)",
        "",
        "| phase | agree | compared | agreement |",
        "|---|---:|---:|---:|",
    ]
    for ph in PHASES:
        lines.append(f"| {ph} | {t.phase_agree[ph]} | {t.phase[ph]} | {_pct(t.phase_rate(ph))} |")
    lines += [
        "",
        "## Tunnel up/down times (per tunnel connection, within "
        f"{TIME_TOLERANCE * 1000:.0f} ms)",
        "",
        "| item | agree | compared | agreement |",
        "|---|---:|---:|---:|",
        f"| tunnel up (CONNECT answered) | {t.tunnel_up[0]} | {t.tunnel_up[1]} | "
        f"{_pct(t.tunnel_up[0] / t.tunnel_up[1] if t.tunnel_up[1] else None)} |",
        f"| tunnel down (DISCONNECT/TERMINATE, else last packet) | {t.tunnel_down[0]} | {t.tunnel_down[1]} | "
        f"{_pct(t.tunnel_down[0] / t.tunnel_down[1] if t.tunnel_down[1] else None)} |",
        "",
        "## Frame class per record (CSTP over TLS and DTLS)",
        "",
        "Agreement per class: records both analyses put in the class, over records either puts in it.",
        "",
        "| class | keyed | keyless | both | agreement |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in CLASSES:
        if t.cls_keyed[c] or t.cls_keyless[c]:
            lines.append(f"| {c} | {t.cls_keyed[c]} | {t.cls_keyless[c]} | {t.cls_agree[c]} | "
                         f"{_pct(t.class_rate(c))} |")
    lines.append(f"| all records | {total} | | {agree} | {_pct(agree / total if total else None)} |")
    if t.coarse_only:
        lines += ["", "Read as END only (the gateway's last control record before the connection closed: its "
                      "DISCONNECT or TERMINATE, the same bare 8-byte frame without keys): "
                      + ", ".join(f"keyed {a} {n}" for a, n in sorted(t.coarse_only.items()))
                      + " — agreeing in the coarse class END, left out of the fine classes' rates (and counted as "
                        "not agreeing in 'all records')."]
    lines += ["", "Coarse classes (CONTROL: DPD request, DPD response or keepalive; END: DISCONNECT or TERMINATE):", "",
              "| coarse class | keyed | keyless | both | agreement |", "|---|---:|---:|---:|---:|"]
    for c, (k, l_, b) in t.coarse().items():
        if k or l_:
            lines.append(f"| {c} | {k} | {l_} | {b} | {_pct(t.coarse_rate(c))} |")
    inner = t.inner_min / max(t.inner_keyed, t.inner_keyless) if max(t.inner_keyed, t.inner_keyless) else None
    lines += [
        "",
        f"Inner packets (DATA frames): keyed {t.inner_keyed}, keyless estimate {t.inner_keyless}; agreement "
        f"{_pct(inner)} (per channel and direction, the smaller count over the larger).",
        "",
        "## Findings",
        "",
        f"Keyed findings found without keys too: {t.findings_found} of {t.findings_keyed}. Warnings or errors "
        f"given without keys that the keyed analysis does not give: {len(t.unsupported)}"
        + (": " + ", ".join(f"{n} {i} ({s})" for n, i, s in t.unsupported) if t.unsupported else "") + ". "
        f"Information given without keys that the keyed analysis does not give (KEYS_MISSING aside): "
        f"{sum(t.info_extra.values())}"
        + (" (" + ", ".join(f"{i} ×{n}" for i, n in sorted(t.info_extra.items(), key=lambda kv: (-kv[1], kv[0])))
           + ")" if t.info_extra else "") + ".",
        "",
        "## Where they differ",
        "",
    ]
    if t.not_recognised:
        lines.append("Not recognised as VPN sessions without keys (no DTLS, no CSTP control-size records, no "
                     "DISCONNECT-sized last record: a TLS connection alone looks like any HTTPS): "
                     + ", ".join(t.not_recognised) + ".")
        lines.append("")
    for n, ph, k, l_ in t.phase_disagreements:
        lines.append(f"- {n}: {ph} keyed `{k}`, keyless `{l_}`")
    conf = sorted(t.class_confusions.items(), key=lambda kv: -kv[1])
    if not (t.not_recognised or t.phase_disagreements or conf):
        lines.append("Nowhere.")
    if conf:
        lines.append("")
        lines.append("Frame class confusions (keyed → keyless: records): "
                     + ", ".join(f"{a} → {b}: {n}" for (a, b), n in conf) + ".")
    f = t.forced
    if f is not None and f.sessions_keyed:
        lines += ["", "## Sessions not recognised, their gateway named (`--gateway`)", "",
                  "The sessions above that keyless reading did not recognise, analysed again without keys with "
                  "their gateway named, as a user who knows it would. Measured, not held to the targets: without a "
                  "tunnel, which request failed rests on the size of the gateway's answers alone (an HTTP error is "
                  "shorter than an aggregate-auth document or a 200 CONNECTED) and on what the client did next, so "
                  "these readings have low or medium confidence and give no finding — but for a browser's sign-in "
                  "(SAML) that went to another server or failed on its way there, read from the other traffic of "
                  "the client (AUTH_SSO_INCOMPLETE, inferred: analyzer/phases/sign_in.py).", "",
                  "| phase | agree | compared | agreement |", "|---|---:|---:|---:|"]
        for ph in PHASES:
            lines.append(f"| {ph} | {f.phase_agree[ph]} | {f.phase[ph]} | {_pct(f.phase_rate(ph))} |")
        lines += ["", f"Keyed findings found without keys too: {f.findings_found} of {f.findings_keyed}. "
                  f"Warnings or errors given without keys that the keyed analysis does not give: "
                  f"{len(f.unsupported)}"
                  + (": " + ", ".join(f"{n} {i} ({s_})" for n, i, s_ in f.unsupported) if f.unsupported else "")
                  + "."]
        for n, ph, k, l_ in f.phase_disagreements:
            lines.append(f"- {n}: {ph} keyed `{k}`, keyless `{l_}`")
    if bench:
        lines = [("#" + x) if x.startswith("## ") and i > 0 else x for i, x in enumerate(lines)]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analyzer.agreement", description=__doc__.splitlines()[0])
    ap.add_argument("--bench", type=Path, default=None, help="also the bench captures under this directory")
    ap.add_argument("--print", action="store_true", help="print the table, write nothing")
    a = ap.parse_args(argv)
    text = render(measure(captures()), SAMPLES_SOURCES)
    if a.bench is not None and a.bench.is_dir():
        names = ", ".join(cap.parent.name for _, cap, _ in captures(a.bench)[len(captures()):])
        text += "\n" + render(measure(captures(a.bench)[len(captures()):]), f"bench cache ({names})", bench=True)
    elif DOC.exists() and BENCH_HEADING in DOC.read_text(encoding="utf-8"):
        # without --bench the bench section measured earlier is kept as it was (the captures are not in git)
        old = DOC.read_text(encoding="utf-8")
        text += "\n" + old[old.index(BENCH_HEADING):]
    if a.print:
        sys.stdout.write(text)
    else:
        DOC.write_text(text, encoding="utf-8")
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
