"""More ground truth for facts.json: the capture's flows, the client's identity, each TLS connection's client
certificate exchange, the unrelated flows of `mixed-traffic`.

Sources as in `lab.facts`: the peers' own logs (openconnect -vvv, ocserv -d 9, the other flows' clients), the
lab's actions, and tshark — the project's independent oracle, named `oracle` where it is the source — never acflow.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .netns import CLIENT_OUTER, GW_OUTER


def _tshark(capture: Path, fields: list[str], display_filter: str,
            decode_as: tuple[str, ...] = ()) -> list[list[str]] | None:
    if shutil.which("tshark") is None:
        return None
    cmd = ["tshark", "-n", "-r", str(capture), "-Y", display_filter, "-T", "fields", "-E", "occurrence=a",
           "-E", "aggregator=,"]
    for d in decode_as:  # e.g. "tcp.port==8009,tls": tshark's default for 8009 is AJP13
        cmd += ["-d", d]
    for f in fields:
        cmd += ["-e", f]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        return None
    return [(line.split("\t") + [""] * len(fields))[:len(fields)] for line in p.stdout.splitlines()]


def _flows(capture: Path, server: str | None = None, decode_as: tuple[str, ...] = ()) -> list[dict]:
    """Every TCP/UDP flow of the client (198.18.0.2) in the capture, per tshark: transport, ports, server, frames,
    first/last frame and time, the TLS/DTLS handshake types seen each way. `server`: only flows to that address;
    `decode_as`: tshark -d rules (TLS on ports tshark gives to other protocols)."""
    flt = f"ip.addr == {CLIENT_OUTER} && (tcp || udp) && !icmp"
    if server:
        flt += f" && ip.addr == {server}"
    rows = _tshark(capture, ["frame.number", "frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport",
                             "udp.srcport", "udp.dstport", "tls.handshake.type", "dtls.handshake.type",
                             "tls.handshake.certificate_length", "tls.handshake.random", "dtls.handshake.random"],
                   flt, decode_as)
    if rows is None:
        return []
    flows: dict[tuple, dict] = {}
    for r in rows:
        # a packet inside an encapsulation (scenario vxlan-mirror) has the outer addresses and ports first
        r[2], r[3], r[6], r[7] = (x.rsplit(",", 1)[-1] for x in (r[2], r[3], r[6], r[7]))
        c2s = r[2] == CLIENT_OUTER
        tcp = bool(r[4])
        sport, dport = (int(r[4]), int(r[5])) if tcp else (int(r[6]), int(r[7]))
        cport, srv_port, srv = (sport, dport, r[3]) if c2s else (dport, sport, r[2])
        key = ("tcp" if tcp else "udp", srv, srv_port, cport)
        fl = flows.setdefault(key, {"transport": key[0], "server": srv, "server_port": srv_port, "client_port": cport,
                                    "frames": 0, "first_frame": int(r[0]), "first_time": float(r[1]),
                                    "c2s_handshake": [], "s2c_handshake": [], "client_hello_randoms": [],
                                    "client_certificate_lengths": []})
        fl["frames"] += 1
        fl["last_frame"], fl["last_time"] = int(r[0]), float(r[1])
        hs = [int(x) for x in (r[8] or r[9]).split(",") if x]
        for t in hs:
            fl["c2s_handshake" if c2s else "s2c_handshake"].append({"frame": int(r[0]), "type": t})
        if c2s and 1 in hs:
            fl["client_hello_randoms"] += [x for x in (r[11] or r[12]).split(",") if x][:1]
        if c2s and 11 in hs and r[10]:
            fl["client_certificate_lengths"] = [int(x) for x in r[10].split(",") if x]
    return sorted(flows.values(), key=lambda f: f["first_frame"])


def vpn_flows(capture: Path) -> list[dict]:
    """The flows between the client and the gateway (198.18.0.1), per tshark: TCP = TLS carrying auth and CSTP,
    UDP = DTLS."""
    out = []
    for f in _flows(capture, GW_OUTER):
        out.append({"transport": f["transport"], "client_port": f["client_port"], "server": f["server"],
                    "server_port": f["server_port"], "first_frame": f["first_frame"], "last_frame": f["last_frame"],
                    "first_time": f["first_time"], "last_time": f["last_time"], "frames": f["frames"],
                    "what": "TLS: aggregate-auth and CSTP" if f["transport"] == "tcp" else "DTLS tunnel"})
    return out


def _keylog_randoms(keys_log: Path) -> set[str]:
    if not keys_log.exists():
        return set()
    return {parts[1].lower() for line in keys_log.read_text().splitlines() if len(parts := line.split()) == 3}


def decode_as(actions: list[dict]) -> list[str]:
    """tshark -d rules for the unrelated TLS/DTLS flows the lab made (tshark decodes TCP 8009 as AJP13)."""
    from .othertraffic import FLOWS

    started = {a["name"] for a in actions if a["action"] == "other-flow-start"}
    return [f"{s.transport}.port=={s.port},{s.protocol}" for s in FLOWS
            if s.name in started and s.protocol in ("tls", "dtls")]


def other_flows(out: Path, actions: list[dict]) -> list[dict]:
    """The unrelated flows the lab made (`other_traffic`): what each is (lab.othertraffic.FLOWS), its ports
    (tshark), what its client printed and whether its TLS/DTLS secrets are in keys.log."""
    from .othertraffic import FLOWS

    decode = tuple(decode_as(actions))
    flows = {(f["transport"], f["server"], f["server_port"]): f for f in _flows(out / "capture.pcapng",
                                                                                 decode_as=decode)
             if f["server"] != GW_OUTER}
    randoms = _keylog_randoms(out / "keys.log")
    done = {a["name"]: a for a in actions if a["action"] == "other-flow-done"}
    started = {a["name"]: a["time"] for a in actions if a["action"] == "other-flow-start"}
    result = []
    for spec in FLOWS:
        if spec.name not in started:
            continue
        f = flows.get((spec.transport, spec.server, spec.port), {})
        e = {"name": spec.name, "what": spec.what, "protocol": spec.protocol, "transport": spec.transport,
             "server": spec.server, "server_port": spec.port, "client_port": f.get("client_port"),
             "first_frame": f.get("first_frame"), "last_frame": f.get("last_frame"), "frames": f.get("frames", 0),
             "first_time": f.get("first_time"), "last_time": f.get("last_time"), "started": started[spec.name],
             "client_returncode": (done.get(spec.name) or {}).get("returncode"),
             "client_output": (done.get(spec.name) or {}).get("output"), "vpn": False}
        if spec.protocol in ("tls", "dtls"):
            cert = out / "other" / f"{spec.cert_name}.pem"
            e["tls_version_allowed"] = spec.tls_version
            e["server_certificate"] = ({"subject": f"CN={spec.cert_name},O=acflow lab", "self_signed": True,
                                        "file": f"other/{spec.cert_name}.pem"} if cert.exists() else None)
            e["sni"] = spec.cert_name  # every client here sends the server's name
            hellos = [h["frame"] for h in f.get("c2s_handshake", []) if h["type"] == 1]
            e["client_hello_frames"] = hellos
            e["server_hello_frames"] = [h["frame"] for h in f.get("s2c_handshake", []) if h["type"] == 2]
            e["keys_in_keylog"] = bool(f.get("client_hello_randoms")) and all(
                r.lower() in randoms for r in f["client_hello_randoms"])
            if spec.protocol == "dtls":
                e["hello_verify_request_frames"] = [h["frame"] for h in f.get("s2c_handshake", []) if h["type"] == 3]
        result.append(e)
    return result


def client_identity(client_lines: list[tuple[float, str]], gateway_lines: list[tuple[float, str]]) -> dict:
    """How the client presented itself: the User-Agent header(s) and the init request's version/device-id, as
    openconnect dumped them; what ocserv made of it ("Detected …")."""
    text = [line for _, line in client_lines]
    agents = sorted({m.group(1) for line in text if (m := re.match(r"^> User-Agent: (.*)$", line))})
    version = next((m.group(1) for line in text if (m := re.search(r'<version who="vpn">([^<]*)</version>', line))),
                   None)
    device = next((m.group(1) for line in text if (m := re.search(r"<device-id[^>]*>([^<]*)</device-id>", line))),
                  None)
    detected = sorted({m.group(1) for _, line in gateway_lines if (m := re.search(r"Detected (.*)$", line))})
    return {"user_agents": agents, "aggregate_auth_version_string": version, "device_id": device,
            "gateway_detected": detected, "program": "openconnect"}


def tls_connections(out: Path, auth_lines: list[tuple[float, str]], client_lines: list[tuple[float, str]],
                    gateway_lines: list[tuple[float, str]]) -> list[dict]:
    """Each TLS connection of the session, in order: which openconnect run made it, the client certificate it was
    given (its own log: "Using client certificate", "Adding supporting CA"), whether ocserv asked for one and what
    it received (ocserv's TLS debug log, per worker process), and what tshark saw (CertificateRequest,
    Certificate lengths, CertificateVerify)."""
    conns: list[dict] = []
    for logname, lines in (("client-auth.log", auth_lines), ("client.log", client_lines)):
        cert_user, supporting = None, []
        for ts, line in lines:
            if m := re.match(r"^Using client certificate '(.*)'$", line):
                cert_user = m.group(1)
            elif m := re.match(r"^Adding supporting CA '(.*)'$", line):
                supporting.append(m.group(1))
            elif m := re.match(r"^SSL negotiation with (\S+)$", line):
                conns.append({"client_log": logname, "time": ts, "host": m.group(1),
                              "client_certificate_configured": cert_user is not None,
                              "client_certificates_offered": (1 + len(supporting)) if cert_user else 0,
                              "client_certificate_subjects": ([f"CN={cert_user}"] + [f"CN={s}" for s in supporting])
                              if cert_user else []})
            elif (m := re.match(r"^Connected to HTTPS on \S+ with ciphersuite (.*)$", line)) and conns and \
                    conns[-1]["client_log"] == logname:
                conns[-1]["ciphersuite"] = m.group(1)
    # ocserv: one worker process per TLS connection, in order of their first handshake line
    workers: dict[str, dict] = {}
    for _, line in gateway_lines:
        m = re.match(r"^ocserv\[(\d+)\]: (.*)$", line)
        if not m or ("HSK[" not in line and "certificate" not in line):
            continue
        w = workers.setdefault(m.group(1), {"certificate_request_sent": False, "certificate_received_length": None,
                                            "certificate_verify_received": False, "verification": None})
        body = m.group(2)
        if "CERTIFICATE REQUEST was queued" in body:
            w["certificate_request_sent"] = True
        elif mm := re.search(r"CERTIFICATE \(11\) was received\. Length (\d+)", body):
            w["certificate_received_length"] = int(mm.group(1))
        elif "CERTIFICATE VERIFY (15) was received" in body:
            w["certificate_verify_received"] = True
        elif "client certificate verification succeeded" in body:
            w["verification"] = "succeeded"
        elif re.search(r"client certificate verification failed|no certificate was found", body):
            w["verification"] = body.split(": ", 1)[-1]
    gw = [w for w in workers.values() if w["certificate_request_sent"] or w["certificate_received_length"]
          is not None] or list(workers.values())
    wire = [f for f in _flows(out / "capture.pcapng", GW_OUTER) if f["transport"] == "tcp"
            and any(h["type"] == 1 for h in f["c2s_handshake"])]
    for i, c in enumerate(conns):
        g = gw[i] if i < len(gw) else {}
        c["gateway"] = {"certificate_request_sent": g.get("certificate_request_sent"),
                        # TLS 1.2 Certificate of an empty chain is 3 bytes long
                        "certificate_received_length": g.get("certificate_received_length"),
                        "certificate_verify_received": g.get("certificate_verify_received"),
                        "verification": g.get("verification")}
        if i < len(wire):
            f = wire[i]
            c["oracle_tshark"] = {
                "client_port": f["client_port"], "first_frame": f["first_frame"],
                "certificate_request_frames": [h["frame"] for h in f["s2c_handshake"] if h["type"] == 13],
                "client_certificate_frames": [h["frame"] for h in f["c2s_handshake"] if h["type"] == 11],
                "client_certificate_lengths": f["client_certificate_lengths"],
                "certificate_verify_frames": [h["frame"] for h in f["c2s_handshake"] if h["type"] == 15]}
        c["requested"] = bool(g.get("certificate_request_sent"))
        c["client_certificates_sent"] = c["client_certificates_offered"] if c["requested"] else 0
    return conns
