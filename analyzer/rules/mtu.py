"""MTU_MISMATCH, MTU_EXCEEDED, MTU_IPV6_TOO_SMALL: tunnel MTU problems.

Facts (protocol-notes "MTU"; seed document "CSTP CONNECT", "DTLS Port Blocked"):
* AnyConnect activates its adapter with X-DTLS-MTU, expecting DTLS to come up; if DTLS fails it re-applies
  X-CSTP-MTU (a reconfiguration that looks like a reconnect). openconnect uses the larger of the two.
* A DTLS packet is the tunnel MTU + DTLS overhead (record header 13, explicit nonce 8 + tag 16 for AES-GCM; IV 16,
  MAC 20/32 and up to 16 bytes of padding for CBC; tag 16 for ChaCha20) + 1 byte of channel framing + UDP 8 +
  IP 20/40; it must fit in the base MTU (X-CSTP-Base-MTU), or it is fragmented or dropped.
* IPv6 needs a link MTU of at least 1280 (RFC 8200 §5).
Thresholds: none beyond the arithmetic above.
"""
from __future__ import annotations

from ..evidence import split_endpoint
from ..model import Finding
from ..phases.cstp_connect import connect_details
from ..phases.dtls import DTLSDetails

RULE_IDS = ("MTU_MISMATCH", "MTU_EXCEEDED", "MTU_IPV6_TOO_SMALL")


def dtls_overhead(cipher: str | None) -> int:
    """Bytes a DTLS record adds to an inner packet (incl. the 1-byte channel type), worst case for CBC."""
    c = (cipher or "").upper()
    if "GCM" in c:
        body = 8 + 16
    elif "CHACHA" in c:
        body = 16
    elif "SHA384" in c:
        body = 16 + 48 + 16
    elif "SHA256" in c:
        body = 16 + 32 + 16
    elif "SHA" in c:
        body = 16 + 20 + 16
    else:
        body = 8 + 16
    return 13 + body + 1


def check(session, ctx):
    out = []
    cstp = session.phase("cstp-connect")
    d = connect_details(cstp)
    if d is None or not d.parameters:
        return out
    params, req = d.parameters, d.requested
    dtls = session.phase("dtls").details
    dtls = dtls if isinstance(dtls, DTLSDetails) else DTLSDetails()
    cstp_mtu, dtls_mtu = params.mtu, params.dtls_mtu
    frames = [c.response_frame for c in d.connects if c.response_frame][:1]
    t = cstp.start
    if cstp_mtu and dtls_mtu and cstp_mtu != dtls_mtu and not dtls.established:
        # with DTLS up, X-DTLS-MTU applies and the two values differing is the gateway's normal sizing: no finding
        applies = (f"DTLS did not come up, so the client must fall back to X-CSTP-MTU {cstp_mtu} (AnyConnect "
                   "reconfigures its adapter, which looks like a reconnect)")
        out.append(Finding(
            id="MTU_MISMATCH", severity="warning", phase="cstp-connect", time=t, frames=frames,
            message=f"The gateway sent X-DTLS-MTU {dtls_mtu} and X-CSTP-MTU {cstp_mtu}: {applies}. openconnect "
                    f"uses the larger value ({max(cstp_mtu, dtls_mtu)}).",
            remedy="Users may see a 'reconnect' shortly after connecting while the adapter is reconfigured: fix "
                   "DTLS (see the DTLS findings), or set the tunnel MTU explicitly on the gateway (group policy "
                   "'anyconnect mtu') so both values suit the path.",
            evidence={"x_cstp_mtu": cstp_mtu, "x_dtls_mtu": dtls_mtu, "dtls_established": False}))
    asked = req.mtu
    if asked and cstp_mtu and cstp_mtu < asked:
        bases = [f"{who} base MTU {v}" for who, v in (("client", req.base_mtu), ("gateway", params.base_mtu)) if v]
        out.append(Finding(
            id="MTU_MISMATCH", severity="warning", phase="cstp-connect", time=t, frames=frames,
            message=f"The gateway granted a tunnel MTU of {cstp_mtu}, smaller than the {asked} the client asked for: "
                    "the two ends disagree about the path" + (f" ({', '.join(bases)})" if bases else "") + ".",
            remedy="Applications will see a smaller MTU than the client expected; check the gateway's MTU setting "
                   "and the path MTU between client and gateway.",
            evidence={"requested": asked, "granted": cstp_mtu, "client_base_mtu": req.base_mtu,
                      "gateway_base_mtu": params.base_mtu}))
    base = params.base_mtu or req.base_mtu
    mtu = dtls_mtu or cstp_mtu
    if base and mtu and dtls.offered:
        ip = 40 if ":" in split_endpoint(session.gateway)[0] else 20
        cipher = dtls.cipher_suite or params.dtls_ciphersuite
        need = mtu + dtls_overhead(cipher) + 8 + ip
        if need > base:
            out.append(Finding(
                id="MTU_MISMATCH", severity="warning", phase="cstp-connect", time=t, frames=frames,
                message=f"Tunnel MTU {mtu} does not fit the base MTU {base}: a full-size DTLS packet takes {need} "
                        f"bytes ({cipher or 'assumed AES-GCM'} overhead {dtls_overhead(cipher)}, UDP 8, IP {ip}).",
                remedy="Lower the tunnel MTU on the gateway (or fix the base MTU the client reports) so full-size "
                       "packets are not fragmented or dropped on the path.",
                evidence={"mtu": mtu, "base_mtu": base, "packet_size": need, "cipher": cipher}))
    # packets bigger than the tunnel MTU, fragments, unanswered MTU probes
    channels = [("CSTP", d.channel or None, cstp_mtu)] + [
        ("DTLS", f.channel, dtls_mtu or cstp_mtu) for f in dtls.flow_list]
    for name, ch, limit in channels:
        if not ch:
            continue
        over = ch.oversize_packets
        if over.count:
            s = over.samples
            trunc = ch.truncated_packets or 0
            out.append(Finding(
                id="MTU_EXCEEDED", severity="warning", phase="cstp-connect" if name == "CSTP" else "dtls",
                time=s[0]["ts"], frames=[x["frame"] for x in s][:10],
                message=f"{over.count} inner packet(s) over {name} larger than the tunnel MTU {limit} (up to "
                        f"{max(x['length'] for x in s)} bytes" + (", DF set" if any(x['df'] for x in s) else "") + ")"
                        + (f"; {trunc} of them were cut to the MTU by the sender and are lost" if trunc else "") + ".",
                remedy="The client's virtual adapter MTU is larger than the tunnel MTU (or PMTU discovery fails): "
                       "make the adapter use the granted MTU, and let ICMP 'fragmentation needed' through so hosts "
                       "lower their packet size.",
                evidence={"count": over.count, "samples": s[:5], "truncated": trunc, "mtu": limit}))
        if ch.inner_ipv4_fragments:
            out.append(Finding(
                id="MTU_EXCEEDED", severity="info", phase="cstp-connect" if name == "CSTP" else "dtls",
                time=None, frames=[],
                message=f"{ch.inner_ipv4_fragments} fragmented inner IPv4 packet(s) crossed the {name} tunnel.",
                remedy="Hosts send packets larger than the tunnel MTU without DF; lower the MTU/MSS of the "
                       "applications' path (e.g. TCP MSS clamping on the gateway).",
                evidence={"fragments": ch.inner_ipv4_fragments}))
        all_probes = ch.mtu_probes
        answered = [p["size"] for p in all_probes if p.get("rtt") is not None]
        # only an MTU problem when smaller probes got through: if none did, the peer is silent (see DPD_TIMEOUT)
        probes = [p for p in all_probes if p.get("rtt") is None and answered and p["size"] > max(answered)]
        if probes:
            out.append(Finding(
                id="MTU_EXCEEDED", severity="warning", phase="dtls", time=probes[0]["ts"],
                frames=[p["frame"] for p in probes][:10],
                message=f"{len(probes)} DTLS MTU probe(s) (padded DPD requests of up to "
                        f"{max(p['size'] for p in probes)} bytes) were not answered while {max(answered)}-byte "
                        "probes were: larger packets do not cross the path.",
                remedy="The path MTU is smaller than the tunnel MTU: lower the gateway's MTU or fix the device "
                       "that drops large UDP packets.",
                evidence={"unanswered": len(probes), "sizes": sorted({p['size'] for p in probes}),
                          "largest_answered": max(answered)}))
    v6_packets = sum(ch.inner_ipv6_packets if ch else 0 for _, ch, _ in channels)
    tunnel_mtu = max([m for m in (cstp_mtu, dtls_mtu) if m] or [0])
    if tunnel_mtu and tunnel_mtu < 1280 and (params.address_ip6 or v6_packets):
        out.append(Finding(
            id="MTU_IPV6_TOO_SMALL", severity="warning" if params.address_ip6 else "info",
            phase="cstp-connect", time=t, frames=frames,
            message=f"IPv6 in a tunnel with MTU {tunnel_mtu} (< 1280, the IPv6 minimum)"
                    + (f": the gateway assigned {params.address_ip6}" if params.address_ip6 else
                       f": {v6_packets} IPv6 packet(s) were sent into the tunnel") + ".",
            remedy="Raise the tunnel MTU to at least 1280 for IPv6 (check the base MTU of the path), or disable "
                   "IPv6 in the tunnel.",
            evidence={"mtu": tunnel_mtu, "address_ip6": params.address_ip6, "ipv6_packets": v6_packets}))
    return out
