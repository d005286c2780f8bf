"""The replay's report: the replayed session side by side with the recording (terminal and JSON).

`compare(recording, replay, options)` returns a plain dict (the JSON form): ``result`` is ``"same"`` when every
compared item matches, else ``"differs"``. Compared: each replayed phase's status; TLS version, cipher suite and
the gateway's certificate; the group list and group chosen; the auth rounds (fields answered, the gateway's
message/error, the fields its next form asked, the answer type) and the result; the downloader GETs (status and
SHA-1 of each); the CONNECT status and tunnel parameters (address, netmask, MTU, base MTU, DNS, split routes,
default domain, DPD, keepalive, idle/session timeouts, content encoding); the DTLS channel (mode, version, cipher
suite); the inner packets answered vs the recording and the channel they took; how the tunnel ended; with
``--write``, the replay's own capture analysed as `acflow analyze` does (phase statuses, finding ids added or
removed). With ``--no-dtls`` what DTLS would change (its phase, the channels) is shown but not compared. No secret
(password, cookie, token) is ever in the report.
"""
from __future__ import annotations

import json

from analyzer import __version__

PHASES = ("tls-handshake", "group-selection", "user-auth", "downloader", "cstp-connect", "dtls")
PARAMS = ("address", "netmask", "address_ip6", "mtu", "base_mtu", "dns", "split_include", "split_exclude",
          "default_domain", "dpd", "keepalive", "idle_timeout", "session_timeout", "disconnected_timeout",
          "content_encoding")


def _item(out: list, what: str, recorded, replayed, compared: bool = True, note: str | None = None) -> None:
    item = {"what": what, "recorded": recorded, "replayed": replayed,
            "same": (recorded == replayed) if compared else None}
    if note:
        item["note"] = note
    out.append(item)


_MAC = {"SHA": 20, "SHA256": 32, "SHA384": 48}


def dtls_record_overhead(cipher_suite: str | None, version: str | None = None) -> int | None:
    """Bytes a DTLS record adds to an inner packet on the DTLS channel, for a suite named the IANA way
    (TLS_PSK_WITH_AES_256_GCM_SHA384) or the OpenSSL way of X-DTLS-CipherSuite (AES256-GCM-SHA384, AES128-SHA): the
    record header (13, DTLS 1.x and Cisco's 0x0100 alike) and the channel's type byte (1), plus for AES-GCM/CCM an
    8-byte explicit nonce and a 16-byte tag, for ChaCha20-Poly1305 the tag, for AES-CBC an IV (16), the MAC and a
    full block of padding (16). None for a name it does not know (PSK-NEGOTIATE names no suite)."""
    if not cipher_suite:
        return None
    name = cipher_suite.upper().replace("-", "_")
    if "CHACHA20" in name:
        return 13 + 16 + 1
    if "_GCM" in name or name.endswith("_CCM") or "_CCM_" in name:
        return 13 + 8 + 16 + 1
    if "AES" in name:
        mac = _MAC.get(name.rsplit("_", 1)[-1])
        if mac is not None and ("CBC" in name or name.startswith("AES")):
            return 13 + 16 + mac + 16 + 1
    return None


def _mtu_item(items: list, rec, rp) -> None:
    """The tunnel MTU. A gateway sizes X-CSTP-MTU for the channels it offers: the recorded gateway offered DTLS,
    this replay's CONNECT does not ask for it (not built yet), so the gateway may grant more by the DTLS record
    overhead the recorded grant left room for (ocserv does). Same when the grants are equal, or when the replayed
    one less that overhead is the recorded one — the overhead of the suite DTLS used, else of the suite the
    gateway offered, else (PSK-NEGOTIATE never completed) of DTLS 1.2 AES-GCM or ChaCha20-Poly1305; the note says
    which."""
    rv, pv = rec.connect_params.get("mtu"), rp.connect_params.get("mtu")
    offered = rec.connect_params.get("dtls_ciphersuite")
    if rv is None or pv is None or rv == pv or not offered:
        _item(items, "tunnel mtu", rv, pv)
        return
    used = rec.dtls.get("cipher_suite") if rec.dtls.get("status") == "ok" else None
    candidates = []
    for suite in (used, offered):
        ov = dtls_record_overhead(suite)
        if ov is not None:
            candidates.append((suite, ov))
            break
    if not candidates:
        candidates = [("DTLS 1.2 AES-GCM (PSK-NEGOTIATE never completed: no suite recorded)", 38),
                      ("DTLS 1.2 ChaCha20-Poly1305", 30)]
    for suite, ov in candidates:
        if pv - ov == rv:
            _item(items, "tunnel mtu", rv, pv - ov, note=(
                f"granted {pv} with no DTLS asked for; less the {ov}-byte DTLS record overhead of {suite} the "
                f"recorded grant left room for: {pv - ov}, as recorded"))
            return
    suite, ov = candidates[0]
    _item(items, "tunnel mtu", rv, pv, note=(
        f"granted {pv} with no DTLS asked for (the recorded gateway offered DTLS; less the {ov}-byte record overhead "
        f"of {suite}: {pv - ov})"))


def compare(rec, rp, opts) -> dict:
    from .client import recorded_exchange  # noqa: PLC0415

    items: list[dict] = []
    phases = []
    for name in PHASES:
        r = rec.phases.get(name, {"status": "absent", "summary": ""})
        p = rp.phases.get(name, {"status": "not reached", "summary": ""})
        compared = p["status"] != "not replayed"
        if name == "downloader" and r.get("status") == "absent" and p["status"] == "absent":
            compared = True
        same = (r.get("status") == p["status"]) if compared else None
        phases.append({"phase": name, "recorded": r.get("status"), "replayed": p["status"],
                       "recorded_summary": r.get("summary"), "replayed_summary": p.get("summary"), "same": same})
    # TLS
    if rp.tls:
        _item(items, "tls version", rec.tls_version, rp.tls.get("version"))
        _item(items, "tls cipher suite", rec.tls_cipher, rp.tls.get("cipher_suite"))
        _item(items, "gateway certificate sha256", rec.cert_sha256, rp.tls.get("cert_sha256"))
    # group selection / auth
    if rp.init_posts:
        _item(items, "group-selection POSTs", len(rec.init_posts), len(rp.init_posts))
        _item(items, "group list", list(rec.group_list), rp.group_list)
        if rec.group_selected or rp.group_selected:
            _item(items, "group selected", rec.group_selected, rp.group_selected)
    if rp.init_posts and rec.rounds is not None:
        _item(items, "auth rounds", len(rec.rounds), len(rp.rounds))
        for i in range(max(len(rec.rounds), len(rp.rounds))):
            r = rec.rounds[i] if i < len(rec.rounds) else None
            p = rp.rounds[i] if i < len(rp.rounds) else None
            for key, label in (("fields", "fields answered"), ("message", "gateway message"),
                               ("error", "gateway error"), ("form_fields", "fields asked next"),
                               ("response_type", "answer type")):
                rv = getattr(r, key) if r is not None else None
                pv = p.get(key) if p is not None else None
                if rv is None and pv is None:
                    continue
                _item(items, f"auth round {i + 1} {label}", rv, pv)
        _item(items, "auth result", rec.auth_result, rp.auth_result)
    # CONNECT
    if rp.connect_status is not None:
        _item(items, "connect status", rec.connect_status, rp.connect_status)
        for key in PARAMS:
            if key == "mtu":
                _mtu_item(items, rec, rp)
                continue
            rv, pv = rec.connect_params.get(key), rp.connect_params.get(key)
            if key in ("dns", "split_include", "split_exclude"):
                rv, pv = rv or [], pv or []
            _item(items, f"tunnel {key.replace('_', ' ')}", rv, pv)
    # downloader: each recorded GET's status and content (SHA-1) against the replayed one
    if rec.downloader or rp.downloads:
        _item(items, "downloader GETs", [g["target"] for g in rec.downloader], [g["target"] for g in rp.downloads])
        for i, g in enumerate(rec.downloader):
            p = rp.downloads[i] if i < len(rp.downloads) else {}
            _item(items, f"GET {g['target']} status", g.get("status"), p.get("status"))
            _item(items, f"GET {g['target']} sha1", g.get("sha1"), p.get("sha1"))
    # DTLS: the mode, version and suite of the channel, when either side had one
    rd, pd = rec.dtls or {}, rp.dtls or {}
    if (rd.get("status") == "ok" or pd.get("status") == "ok") and pd.get("status") != "not replayed":
        _item(items, "dtls mode", rd.get("mode") if rd.get("status") == "ok" else None,
              pd.get("mode") if pd.get("status") == "ok" else None)
        _item(items, "dtls version", rd.get("version"), pd.get("version"))
        _item(items, "dtls cipher suite", rd.get("cipher_suite"), pd.get("cipher_suite"))
    # --write: the replay's own capture analysed as `acflow analyze` does — its phases and findings
    an = rp.analysis or {}
    if an.get("phases"):
        for name in PHASES:
            _item(items, f"analysed phase {name}", rec.phases.get(name, {}).get("status"), an["phases"].get(name))
        rf = sorted({f["id"] for f in rec.findings})
        pf = sorted({f["id"] for f in an.get("findings", [])})
        _item(items, "findings", rf, pf, note=(
            ("added " + ", ".join(sorted(set(pf) - set(rf))) if set(pf) - set(rf) else "")
            + ("; " if set(pf) - set(rf) and set(rf) - set(pf) else "")
            + ("removed " + ", ".join(sorted(set(rf) - set(pf))) if set(rf) - set(pf) else "")) or None)
    # inner packets
    rex = recorded_exchange(rec)
    sent = [s for s in rp.packets if s.actual is not None and not s.error]
    answered = [s for s in rp.packets if s.answered is not None]
    channels: dict[str, int] = {}
    for s in rp.packets:
        if s.channel:
            channels[s.channel] = channels.get(s.channel, 0) + 1
    inner = {
        "recorded": rex,
        "replayed": {"planned": len(rp.packets), "sent": len(sent), "seen_on_tun": sum(
            1 for s in rp.packets if s.seen_on_tun is not None), "answered": len(answered),
            "channels": channels, "errors": [f"packet {s.index}: {s.error}" for s in rp.packets if s.error],
            "notes": [f"packet {s.index}: {s.note}" for s in rp.packets if s.note],
            "other_from_tun": rp.other_from_tun, "other_from_gateway": rp.other_from_gateway},
        "packets": [{"index": s.index, "summary": s.summary, "intended": round(s.intended, 6),
                     "sent": None if s.actual is None else round(s.actual, 6),
                     "on_tun": None if s.seen_on_tun is None else round(s.seen_on_tun, 6),
                     "answered": None if s.answered is None else round(s.answered, 6),
                     "channel": s.channel, "note": s.note, "rtt_ms": None if s.answered is None or s.actual is None else
                     round((s.answered - s.actual) * 1000, 3), "error": s.error} for s in rp.packets],
    }
    if rp.connect_status == 200:
        _item(items, "inner packets sent", rex["sent"], len(sent))
        _item(items, "inner packets answered", rex["answered"], len(answered))
        no_dtls = bool(getattr(opts, "no_dtls", False))
        _item(items, "inner packets channels", rex.get("channels") or {}, channels, compared=not no_dtls,
              note="--no-dtls: everything over CSTP" if no_dtls else None)
        rec_end = rec.dpd_keepalive.get("end")
        rec_end_text = "DISCONNECT from the client" if rec_end == "DISCONNECT" else rec_end
        rp_end = "DISCONNECT from the client" if (rp.end or "").startswith("DISCONNECT from the replay") else rp.end
        _item(items, "tunnel ended by", rec_end_text, rp_end)
    timing = dict(rp.timing)
    if timing.get("drift_ms"):
        timing["drift_ms"] = {k: (None if v is None else round(v, 3)) for k, v in timing["drift_ms"].items()}
        timing["tun_lag_ms"] = {k: (None if v is None else round(v, 3)) for k, v in timing["tun_lag_ms"].items()}
        p99 = timing["drift_ms"]["p99"]
        timing["within_bound"] = p99 is not None and p99 <= timing["bound_ms"]
    differs = [i for i in items if i["same"] is False] + [p for p in phases if p["same"] is False]
    doc = {
        "acflow": __version__, "kind": "replay-client", "schema": 1,
        "recording": {"capture": str(opts.capture), "session": rec.session_id, "gateway": rec.gateway,
                      "client": rec.client},
        "gateway": rp.gateway,
        "result": "differs" if differs or rp.error else "same",
        "error": rp.error,
        "phases": phases,
        "comparisons": items,
        "differences": [i["what"] if "what" in i else f"phase {i['phase']}" for i in differs],
        "inner": inner,
        "timing": timing,
        "tunnel": {**rp.tunnel, "cstp": rp.cstp, "end": rp.end,
                   "connect_headers_sent": rp.connect_headers_sent,
                   "connect_headers_dropped": [{"header": h, "why": w} for h, w in rp.connect_headers_dropped],
                   "recorded_dpd_keepalive": rec.dpd_keepalive},
        "not_replayed": ["dtls: --no-dtls"] if getattr(opts, "no_dtls", False) else [],
        "downloads": rp.downloads,
        "recorded_dtls": rec.dtls,
        "dtls": {k: v for k, v in pd.items() if k != "started"} | {"counts": rp.dtls_counts},
        "cleanup": rp.cleanup,
        "capture": rp.capture or None,
        "analysis": rp.analysis or None,
    }
    return doc


def render_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, default=str) + "\n"


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) if v else "(none)"
    return " / ".join(str(v).splitlines())


def render_terminal(doc: dict) -> str:
    lines = []
    rec = doc["recording"]
    lines.append(f"acflow {doc['acflow']} replay client — {rec['capture']} session {rec['session']} "
                 f"(recorded against {rec['gateway']}) → {doc['gateway']}")
    lines.append(f"result: {doc['result'].upper()}" + (f" — {doc['error']}" if doc.get("error") else ""))
    lines.append("")
    lines.append(f"{'phase':<17} {'recorded':<13} {'replayed':<13} {'':<8} replayed: what happened")
    lines.append("─" * 110)
    for p in doc["phases"]:
        mark = {True: "same", False: "DIFFERS", None: ""}[p["same"]]
        lines.append(f"{p['phase']:<17} {_fmt(p['recorded']):<13} {_fmt(p['replayed']):<13} {mark:<8} "
                     f"{_fmt(p['replayed_summary'])}")
    lines.append("")
    lines.append(f"{'compared':<36} {'recorded':<32} {'replayed':<32}")
    lines.append("─" * 110)
    for i in doc["comparisons"]:
        mark = "" if i["same"] else "  ← DIFFERS"
        lines.append(f"{i['what']:<36} {_fmt(i['recorded'])[:31]:<32} {_fmt(i['replayed'])[:31]:<32}{mark}")
        if i.get("note"):
            lines.append(f"{'':<4}({i['note']})")
    inner = doc["inner"]
    lines.append("")
    r, p = inner["recorded"], inner["replayed"]
    over = ", ".join(f"{n} over {ch.upper()}" for ch, n in sorted(r.get("channels", {}).items()))
    lines.append(f"inner packets (IPv4, client→gateway): recorded {r['sent']} sent" + (f" ({over})" if over else "")
                 + f" / {r['answered']} answered; replayed {p['sent']} sent / {p['seen_on_tun']} through "
                 f"the TUN" + (" (" + ", ".join(f"{n} over {ch.upper()}" for ch, n in sorted(
                     p.get("channels", {}).items())) + ")" if p.get("channels") else "")
                 + f" / {p['answered']} answered"
                 + (f"; {r['not_ipv4_skipped']} non-IPv4 recorded packet(s) not replayed" if r["not_ipv4_skipped"]
                    else ""))
    for e in p["errors"]:
        lines.append(f"  ! {e}")
    for n in p.get("notes", []):
        lines.append(f"  ({n})")
    for pk in inner["packets"]:
        rtt = f"answered, rtt {pk['rtt_ms']:.2f} ms" if pk["rtt_ms"] is not None else "no answer"
        if pk.get("channel"):
            rtt = f"{pk['channel'].upper():<4} {rtt}"
        sent = f"+{pk['sent']:.3f}s" if pk["sent"] is not None else "not sent"
        lines.append(f"  {pk['index']:>3} intended +{pk['intended']:.3f}s sent {sent:<9} {pk['summary'][:60]:<60} "
                     f"{rtt}")
    t = doc.get("timing") or {}
    if t.get("drift_ms"):
        d = t["drift_ms"]
        lines.append(f"send-time drift ({t['mode']}, speed {t['speed']}): p50 {_fmt(d['p50'])} ms, p99 {_fmt(d['p99'])}"
                     f" ms, max {_fmt(d['max'])} ms (bound {t['bound_ms']} ms: "
                     f"{'within' if t.get('within_bound') else 'EXCEEDED'})")
    tun = doc["tunnel"]
    if tun.get("namespace"):
        c = tun["cstp"]
        lines.append(f"tunnel: {tun['device']} in namespace {tun['namespace']}, {tun['address']} MTU {tun['mtu']}, "
                     f"routes {_fmt(tun['routes'])}; CSTP DATA {c['data_sent']} sent / {c['data_received']} received "
                     f"({c.get('compressed_received', 0)} compressed), "
                     f"DPD-RESP sent {c['dpd_resp_sent']}")
        rd = tun.get("recorded_dpd_keepalive") or {}
        rq, rk = rd.get("cstp_dpd_requests") or {}, rd.get("cstp_keepalives") or {}
        lines.append(f"DPD/keepalive: recorded over CSTP DPD-REQ client {rq.get('c2s', 0)} / gateway "
                     f"{rq.get('s2c', 0)}, "
                     f"keepalives client {rk.get('c2s', 0)} / gateway {rk.get('s2c', 0)}; replayed DPD-REQ client "
                     f"{c['dpd_req_sent']} (answered {c['dpd_resp_received']}) / gateway {c['dpd_req_received']}, "
                     f"keepalives client {c['keepalives_sent']} / gateway {c['keepalives_received']} (counts follow "
                     f"the timing and are not compared; the intervals are)")
        dd = doc.get("dtls") or {}
        if dd.get("status"):
            dc = dd.get("counts") or {}
            lines.append(f"DTLS: {dd['status']}: {dd.get('summary', '')}; DATA {dc.get('data_sent', 0)} sent / "
                         f"{dc.get('data_received', 0)} received, DPD-REQ sent {dc.get('dpd_req_sent', 0)} (answered "
                         f"{dc.get('dpd_resp_received', 0)}), keepalives sent {dc.get('keepalives_sent', 0)}"
                         + (f"; MTU probe {dd['mtu_probe']['size']} bytes "
                            f"{'answered' if dd['mtu_probe']['answered'] else 'NOT answered'}"
                            if dd.get("mtu_probe") else "")
                         + (f"; ended: {dd['ended']}" if dd.get("ended") else ""))
        if tun.get("connect_connection"):
            lines.append(f"CONNECT sent on {tun['connect_connection']}")
        lines.append(f"ended: {tun.get('end')}")
    if tun.get("connect_headers_dropped"):
        lines.append("CONNECT headers not replayed: " + ", ".join(
            f"{h['header']} ({h['why']})" for h in tun["connect_headers_dropped"]))
    for n in doc["not_replayed"]:
        lines.append(f"not replayed: {n}")
    cap = doc.get("capture")
    if cap:
        lines.append(f"capture written: {cap['file']}" + (f" — FAILED: {cap['error']}" if cap.get("error") else
                     f" ({cap['bytes']} bytes, on {cap['interface']}, {cap['key_log_lines']} key log lines "
                     "embedded; `acflow analyze` reads it alone)"))
    lines.append("removed on exit: " + (", ".join(doc["cleanup"]) if doc["cleanup"] else "nothing was created"))
    if doc["differences"]:
        lines.append("differences: " + "; ".join(doc["differences"]))
    return "\n".join(lines) + "\n"
