"""IPsec seen beside (or instead of) AnyConnect-protocol sessions: what the IKE and ESP-in-UDP headers say of a UDP
flow on port 500 or 4500 (dissectors/ike.py), kept with the flow in the pipeline's other-traffic table and summed
up in the report's `other_traffic.ipsec` and the NO_VPN_SESSION message. acflow does not analyse IPsec; it names
it (Cisco's client over IKEv2/IPsec, or another IPsec VPN), so that "no AnyConnect-protocol session" explains
itself."""
from __future__ import annotations

from dissectors.ike import NOTIFY_ERRORS, Esp, IkeMessage

__all__ = ["describe", "new_ipsec", "note_ipsec", "summarize"]

MAX_IKE_MESSAGES = 256  # per flow: counted beyond, not read (ESP packets are only counted)


def new_ipsec() -> dict:
    return {"ike_version": None, "exchanges": {}, "esp_packets": 0, "nat_t": False, "vendor_ids": [],
            "errors": [], "ike_sa_established": False, "first_frame": None, "read": 0}


def note_ipsec(state: dict, msg, frame: int) -> None:
    """One datagram of an IPsec flow: ``msg`` is what dissectors.ike read of it (None: neither IKE nor ESP)."""
    if type(msg) is Esp:
        state["esp_packets"] += 1
        return
    if type(msg) is not IkeMessage or state["read"] >= MAX_IKE_MESSAGES:
        return
    state["read"] += 1
    if state["first_frame"] is None:
        state["first_frame"] = frame
    state["ike_version"] = state["ike_version"] or msg.version
    ex = state["exchanges"]
    ex[msg.exchange] = ex.get(msg.exchange, 0) + 1
    state["nat_t"] = state["nat_t"] or msg.nat_t
    for v in msg.vendor_ids:
        if v not in state["vendor_ids"] and len(state["vendor_ids"]) < 8:
            state["vendor_ids"].append(v)
    for n in msg.notifies:
        name = NOTIFY_ERRORS.get(n) if n < 16384 else None
        if name and len(state["errors"]) < 8:
            state["errors"].append({"notify": name, "frame": frame, "from": "responder" if msg.response
                                    else "initiator"})
    if msg.version == 2 and msg.exchange == "IKE_AUTH" and msg.response:
        state["ike_sa_established"] = True  # an answer to IKE_AUTH (its content is encrypted: success assumed)


def summarize(entries, limit: int = 20) -> list[dict]:
    """The report's `other_traffic.ipsec`: one item per IKE/ESP flow (client = the IKE initiator), first seen
    first."""
    out = []
    for client, server, first, last, n, b, state in sorted(entries, key=lambda e: (e[2], e[0], e[1])):
        out.append({"client": client[0], "client_port": client[1], "gateway": server[0], "gateway_port": server[1],
                    "ike_version": state["ike_version"], "exchanges": dict(state["exchanges"]),
                    "ike_sa_answered": state["ike_sa_established"], "esp_packets": state["esp_packets"],
                    "nat_t": state["nat_t"], "vendor_ids": list(state["vendor_ids"]), "errors": list(state["errors"]),
                    "first": first, "last": last, "datagrams": n, "bytes": b, "first_frame": state["first_frame"]})
    return out[:limit]


def describe(items: list[dict]) -> str | None:
    """One sentence on the IPsec of a capture (the report's `other_traffic.ipsec`), per client and gateway pair."""
    if not items:
        return None
    pairs: dict = {}
    for it in items:
        p = pairs.setdefault((it["client"], it["gateway"]), {"versions": set(), "esp": 0, "nat_t": False,
                                                              "answered": False, "errors": [], "vids": []})
        if it["ike_version"]:
            p["versions"].add(it["ike_version"])
        p["esp"] += it["esp_packets"]
        p["nat_t"] = p["nat_t"] or it["nat_t"]
        p["answered"] = p["answered"] or it["ike_sa_answered"]
        p["errors"] += [e["notify"] for e in it["errors"]]
        p["vids"] += [v for v in it["vendor_ids"] if v not in p["vids"]]
    parts = []
    for (client, gw), p in list(pairs.items())[:3]:
        what = "/".join(f"IKEv{v}" for v in sorted(p["versions"])) or "ESP"
        bits = []
        if p["errors"]:
            bits.append("the gateway refused: " + ", ".join(dict.fromkeys(p["errors"])))
        elif p["answered"]:
            bits.append("IKE_AUTH answered")
        if p["nat_t"]:
            bits.append("NAT traversal (UDP 4500)")
        bits.append(f"{p['esp']} ESP packets" if p["esp"] else "no ESP packets")
        cisco = any("cisco" in v.lower() for v in p["vids"])
        if cisco:
            bits.append("Cisco vendor IDs")
        parts.append(f"{what} between {client} and {gw} ({'; '.join(bits)})")
    more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
    versions = {v for p in pairs.values() for v in p["versions"]}
    who = ("the legacy Cisco VPN Client, L2TP/IPsec or a site-to-site tunnel (Cisco's AnyConnect-protocol client "
           "uses IKEv2 for IPsec)" if versions == {1} else
           "Cisco's client over IKEv2/IPsec (a connection profile whose primary protocol is IPsec) or another IPsec "
           "VPN")
    return ("IPsec, not the SSL VPN protocol: " + ", ".join(parts) + more + f" — {who}; acflow reads the SSL VPN "
            "protocol (TLS, CSTP, DTLS) only")
