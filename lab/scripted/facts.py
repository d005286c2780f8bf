"""facts.json of a scripted case: what the script sent (status lines, X-CSTP-/X-DTLS- headers, CSTP frames, from
the gateway's own record), what openconnect logged about it (stamped lines) and the case's expected effects with
whether they were observed. Read from the outputs of a run, never from acflow.
"""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from replay.script import Script

from ..facts import _auth_rounds, _http_exchanges
from ..netns import read_stamped
from .cases import PROFILE_URI, Case, Ctx

SCHEMA_VERSION = 1

EVIDENCE = re.compile("|".join([  # noqa: FLY002 - one pattern per item
    r"^Connected to HTTPS on ", r"SSL connection failure", r"[Ff]atal alert", r"[Hh]andshake failed",
    r"^Failed to open HTTPS",
    r"^Got (HTTP|CONNECT) response: ", r"^Got inappropriate HTTP CONNECT response", r"^VPN service unavailable",
    r"^XML POST enabled", r'XML response has no "auth" node', r"^Unexpected \d+ result", r"^Unknown response",
    r"^X-(CSTP|DTLS|DTLS12)-(MTU|Base-MTU|Address|Address-IP6|Port|Session-ID|CipherSuite|DPD|Keepalive):",
    r"^CSTP connected", r"IPv6 configuration received", r"^No MTU received", r"^No IP address received",
    r"^DTLS ", r"^Established DTLS", r"^Configured as", r"CSTP DPD", r"CSTP Keepalive",
    r"^Received server disconnect", r"^Send BYE", r"^Creating SSL connection failed", r"^Cookie was rejected",
    r"^User cancelled", r"Failed to obtain WebVPN cookie", r"^Unknown packet", r"^Short packet",
    r"^Unexpected packet length", r"MTU DPD probe", r"^Initiating MTU", r"change in MTU", r"^TCP_INFO",
    r"^Delaying tunnel", r"^Set up UDP failed", r"^No DTLS address",
    r"server terminate packet", r"^Reconnect", r"SSL read error", r"[Ss]erver closed", r"[Ff]ailed to reconnect",
    r"^Session terminated", r"^Read error on SSL session",
    r"TLS connection was non-properly terminated", r"^Established DTLS", r"MITM"]))


DTLS_SERVER_EVIDENCE = re.compile(r"listening on|HSK\[|_gnutls_server_restore_session|Exiting|rror|"
                                  r"^\[dtls\] (?!rx:|tx:)")  # replay.dtls_psk_server: all but per-record lines


def _redact(body: str) -> str:
    """A request body with the password hidden (XML <password> or urlencoded password=)."""
    body = re.sub(r"<password>[^<]*</password>", "<password>(redacted)</password>", body)
    return re.sub(r"(^|&)password=[^&]*", r"\1password=(redacted)", body)


def _evidence(lines: list[tuple[float, str]]) -> list[list]:
    """The client log lines that tell what openconnect made of the gateway's answers (repeats dropped)."""
    out, seen = [], set()
    for ts, line in lines:
        if EVIDENCE.search(line):
            if line.startswith("Delaying tunnel") and line in seen:
                continue
            seen.add(line)
            out.append([ts, line])
    return out


def _client_http(lines: list[tuple[float, str]]) -> list[dict]:
    """The requests openconnect dumped (`> METHOD target`) with the status line it got for each."""
    out: list[dict] = []
    for ts, line in lines:
        m = re.match(r"^> (GET|POST|CONNECT) (\S+) HTTP/1\.[01]$", line)
        if m:
            out.append({"time": ts, "method": m.group(1), "target": m.group(2), "status_line": None})
            continue
        m = (re.match(r"^Got (?:HTTP|CONNECT) response: (HTTP/1\.[01] \d{3}.*)$", line)
             or re.match(r"^Got inappropriate HTTP CONNECT response: (HTTP/1\.[01] \d{3}.*)$", line))
        if m and out and out[-1]["status_line"] is None:
            out[-1]["status_line"] = m.group(1).strip()
            out[-1]["response_time"] = ts
        m = re.match(r"^VPN service unavailable; reason: (.*)$", line)
        if m and out and out[-1]["status_line"] is None:
            out[-1]["status_line"] = "HTTP/1.1 503"  # openconnect prints only the reason for a 503
            out[-1]["implied_by"] = line
            out[-1]["response_time"] = ts
    return out


def sha1_upper(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest().upper()


def profile_facts(events: list[dict], default_uri: str = PROFILE_URI) -> dict:
    """The announced profile (manifest in the complete answer) and what the gateway served for it, from its record
    (without a manifest: what it served for ``default_uri``, the downloader's GET)."""
    manifest = next((m for e in events if e["type"] == "response"
                     for m in [re.search(r"<uri>([^<]+)</uri>\s*<hash type=\"sha1\">([^<]+)</hash>", e.get("body", ""))]
                     if m), None)
    uri = manifest.group(1) if manifest else default_uri
    get = next((e for e in events if e["type"] == "request" and e["method"] == "GET" and e["target"] == uri), None)
    served = next((e for e in events if get and e["type"] == "response" and e["session"] == get["session"]
                   and e["t"] >= get["t"]), None)
    ok = bool(served and served["status"] == 200)
    # (a file given as body_hex is in the record by its size and SHA-1, not its bytes)
    sha1 = (served.get("body_sha1") or sha1_upper(served["body"].encode())) if ok else None
    return {"uri": uri, "manifest_sha1": manifest.group(2) if manifest else None,
            "served_status_line": served["status_line"] if served else None, "served_sha1": sha1}


def _rounds(client: list[tuple[float, str]]) -> list[dict]:
    rounds = _auth_rounds(_http_exchanges(client))
    for r in rounds:
        msg = (r.get("response_message") or "") + " " + (r.get("response_error") or "")
        r["outcome"] = ("success" if r["response_type"] == "complete" else
                        "rejected" if re.search(r"login failed|failed|denied|invalid", msg, re.IGNORECASE) else
                        "form" if r["response_type"] == "auth-request" else
                        f"http {r['status']}" if r["status"] else None)
    return rounds


def build_facts(case: Case, script: Script, out: Path, events: list[dict], actions: list[dict], extra: dict,
                exit_code: int | None, gw_addr: str, client_addr: str) -> dict:
    """facts.json of a case run written to `out`: the gateway's record (`events`), openconnect's stamped logs, the
    lab's `actions` and the case's expected effects, each with whether it was observed."""
    client = read_stamped(out / "client-auth.log") + read_stamped(out / "client.log")
    env = {}
    for f in sorted(out.glob("script-*.env")):
        env[f.stem[len("script-"):]] = dict(l.split("=", 1) for l in f.read_text().splitlines() if "=" in l)
    dtls_log = read_stamped(out / "dtls-server.log")
    ctx = Ctx(out=out, client=client, events=events, env=env,
              extra={**extra, "actions": actions, "dtls_server_log": dtls_log},
              exit_code=exit_code)
    ua = next((m.group(1) for _, l in client for m in [re.match(r"^> User-Agent: (.*)$", l)] if m), None)

    def pick(e: dict, *keys) -> dict:
        return {k: e.get(k) for k in keys}

    responses = [e for e in events if e["type"] == "response"]
    requests = [e for e in events if e["type"] == "request"]
    exchanges = []
    for rq in requests:
        rs = next((r for r in responses if r["session"] == rq["session"] and r["t"] >= rq["t"]
                   and r.get("step") == rq.get("step")), None)
        exchanges.append({
            "time": rq["t"], "tls_session": rq["session"], "method": rq["method"], "target": rq["target"],
            "step": rq["step"], "skipped_steps": rq["skipped"], "webvpn_cookie_ok": rq["webvpn_cookie_ok"],
            "request_content_type": next((v for k, v in rq["headers"] if k.lower() == "content-type"), None),
            "request_body": _redact(rq["body"]),
            "status_line": rs["status_line"] if rs else None, "response_time": rs["t"] if rs else None,
            "response_headers": [h for h in (rs["headers"] if rs else [])
                                 if h[0].lower().startswith(("x-cstp", "x-dtls", "x-reason", "set-cookie",
                                                             "content-type"))],
        })
    counts: dict = {}
    by_session: dict = {}
    for e in events:
        if e["type"] in ("cstp-rx", "cstp-tx"):
            key = e["name"] or hex(e["ptype"])
            counts.setdefault(e["type"], {}).setdefault(key, 0)
            counts[e["type"]][key] += 1
            per = by_session.setdefault(str(e["session"]), {}).setdefault(e["type"], {})
            per[key] = per.get(key, 0) + 1
    connect_ids = {s.id for s in script.steps if (s.expect.method or "").upper() == "CONNECT"}
    disconnect = next((pick(e, "t", "reason", "reason_code") for e in events
                       if e["type"] == "cstp-rx" and e["name"] == "disconnect"), None)
    expected = []
    for effect, check in case.expectations:
        try:
            ok, detail = check(ctx)
        except Exception as ex:  # noqa: BLE001 - a broken check is a not-observed effect, with the reason
            ok, detail = False, f"check failed: {ex!r}"
        expected.append({"effect": effect, "observed": bool(ok), "detail": detail})
    return {
        "schema": SCHEMA_VERSION, "case": case.name, "description": script.description,
        "generated_by": "python -m lab.scripted --case " + case.name,
        "peers": {"client": ua or "openconnect", "gateway": "acflow scripted gateway (replay.gateway, "
                  f"Python {sys.version.split()[0]} ssl)"},
        "gateway_address": gw_addr, "client_address": client_addr,
        "server_cert_sha1": extra["cert"]["presented"],
        "script": {"file": "script.json", "steps": [{"id": s.id, "note": s.note} for s in script.steps],
                   "udp_sinks": script.udp_sinks, "cstp_actions": [a.__dict__ for a in script.cstp.actions],
                   "udp_responders": [r.__dict__ for r in script.udp_responders],
                   "tls_alert_sessions": script.tls.alert_sessions},
        "actions": actions,
        "gateway": {
            "tls_sessions": [pick(e, "t", "session", "peer", "version", "cipher") for e in events
                             if e["type"] == "tls-established"],
            "tls_failures": [pick(e, "t", "session", "peer", "error", "alert_sent", "alert_code") for e in events
                             if e["type"] == "tls-failed"],
            "exchanges": exchanges,
            "connect": [{"time": r["t"], "step": r["step"], "tls_session": r["session"],
                         "status_line": r["status_line"],
                         "headers": [h for h in r["headers"] if h[0].lower().startswith(("x-cstp", "x-dtls",
                                                                                        "x-reason"))]}
                        # (a load-balancing member's answers carry "gateway": its own script's CONNECT step)
                        for r in responses if r.get("step") in connect_ids
                        or (r.get("gateway") and r.get("step") == "connect")],
            "tunnels": [pick(e, "t", "session", "tunnel") for e in events if e["type"] == "tunnel-start"],
            "cstp_actions_done": [pick(e, "t", "session", "action", "tunnel") for e in events
                                  if e["type"] == "cstp-action"]
                                 + [pick(e, "t", "session", "name", "ptype", "length", "why") for e in events
                                    if e["type"] == "cstp-tx" and (e.get("why") or "").startswith("script action")],
            "cstp_frames_by_session": by_session,
            "unmatched_requests": [pick(e, "t", "method", "target") for e in requests if e["step"] is None],
            "cstp_frames": counts,
            "cstp_disconnect_received": disconnect,
            "udp_datagrams": [pick(e, "t", "port", "src", "length", "dtls") for e in events if e["type"] == "udp-rx"],
            "udp_sent": [pick(e, "t", "port", "dst", "answers_port", "reply", "length", "record_version",
                              "handshake_type", "cookie_hex", "hex") for e in events if e["type"] == "udp-tx"],
            "connections_closed": [pick(e, "t", "session", "how") for e in events if e["type"] == "conn-closed"],
        },
        "client": {
            "exit_code": exit_code,
            "http": _client_http(client),
            # each aggregate-auth POST as openconnect dumped it: fields sent (names only), the answer's type,
            # message and error, and the outcome (rejected: a new form saying the login failed, or an <error>)
            "auth_rounds": _rounds(client),
            "log": _evidence(client),
            "script_env": env,
            **{k: v for k, v in extra.items() if k in ("pings", "curl", "tun_ipv6")},
        },
        **({"profile": extra["profile"]} if "profile" in extra else {}),
        **({"dtls_server": {**extra["dtls_server"],
                            "log": [[ts, l] for ts, l in dtls_log if DTLS_SERVER_EVIDENCE.search(l)],
                            **({"events": [{k: v for k, v in e.items() if k not in ("tls_client_random",)}
                                           for e in extra["dtls_events"] if e.get("type") not in ("rx", "tx")],
                                "records": {d: [e["name"] for e in extra["dtls_events"] if e.get("type") == d]
                                            for d in ("rx", "tx")}}
                               if "dtls_events" in extra else {})}}
           if "dtls_server" in extra else {}),
        "server_cert_hash": extra["cert"],
        "expected": expected,
    }
