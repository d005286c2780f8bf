"""DTLS_FALLBACK_TLS, DTLS_SOURCE_MISMATCH, DTLS_NAT_REBINDING: where the tunnel's data went.

Facts (seed document "DTLS Handshake", "DTLS Port Blocked"; protocol-notes "Failure patterns", "Behaviour of the
Debian versions"): data moves to DTLS only once its handshake is complete; if DTLS fails the data stays on the TLS
channel and the client must apply X-CSTP-MTU. DTLS answers must come from the gateway's address and X-DTLS-Port.
A NAT that rebinds the client's UDP port mid-session shows as DTLS data from a new source port without a new
handshake (ocserv accepts it but does not answer there; the client's DPD then declares the peer dead).
"""
from __future__ import annotations

from ..evidence import split_endpoint
from ..model import Finding
from ..phases.cstp_connect import connect_details
from ..phases.dtls import DTLSDetails
from ..phases.inferred import reading
from ..phases.inferred import tunnels as inferred_tunnels

RULE_IDS = ("DTLS_FALLBACK_TLS", "DTLS_SOURCE_MISMATCH", "DTLS_NAT_REBINDING")


def check(session, ctx):
    out = []
    d = session.phase("dtls").details
    d = d if isinstance(d, DTLSDetails) else DTLSDetails()
    cstp = session.phase("cstp-connect")
    cd = connect_details(cstp)
    params = cd.parameters or None if cd is not None else None
    ch = cd.channel or None if cd is not None else None
    flows = d.flow_list
    cstp_data = ch.inner_packets if ch else {}
    cstp_first = ch.first_data if ch else {}
    dtls_port = params.dtls_port if params else None
    mtu, dtls_mtu = (params.mtu, params.dtls_mtu) if params else (None, None)
    proxy = next((c.proxy for c in session.connections if getattr(c, "proxy", None)), None)
    if dtls_port and not d.established and not flows and proxy and (cstp_data.get("c2s") or cstp_data.get("s2c")):
        t = min(cstp_first.values()) if cstp_first else cstp.start
        out.append(Finding(
            id="DTLS_FALLBACK_TLS", severity="info", phase="dtls", time=t, frames=[proxy.get("frame")],
            message=f"The tunnel runs over TLS only: the client reaches the gateway through an HTTP proxy (CONNECT "
                    f"{proxy.get('target')}), which carries no UDP, so it sends no DTLS; all "
                    f"{cstp_data.get('c2s', 0)}+{cstp_data.get('s2c', 0)} inner packets travelled over CSTP.",
            remedy="Expected behind a proxy. For DTLS, let the client reach the gateway directly (a proxy bypass for "
                   "the gateway's address, UDP allowed to it).",
            evidence={"cstp_inner_packets": cstp_data, "proxy": proxy.get("target"), "x_cstp_mtu": mtu}))
    elif proxy and not flows and cstp.status == "undecrypted" and reading(cstp, confident=False) == "ok":
        # without keys: the proxy's CONNECT is in the clear, the tunnel inferred up, no DTLS at all
        out.append(Finding(
            id="DTLS_FALLBACK_TLS", severity="info", phase="dtls", time=cstp.start, frames=[proxy.get("frame")],
            inferred=True,
            message=f"The tunnel runs over TLS only: the client reaches the gateway through an HTTP proxy (CONNECT "
                    f"{proxy.get('target')}), which carries no UDP, so it sends no DTLS (read without keys).",
            remedy="Expected behind a proxy. For DTLS, let the client reach the gateway directly (a proxy bypass for "
                   "the gateway's address, UDP allowed to it).",
            evidence={"proxy": proxy.get("target"), "inferred": True}))
    elif dtls_port and not d.established and (cstp_data.get("c2s") or cstp_data.get("s2c")):
        t = min(cstp_first.values()) if cstp_first else cstp.start
        out.append(Finding(
            id="DTLS_FALLBACK_TLS", severity="warning", phase="dtls", time=t, frames=[],
            message=f"DTLS did not come up: all {cstp_data.get('c2s', 0)}+{cstp_data.get('s2c', 0)} inner packets "
                    f"travelled over the TLS channel (CSTP). The client must now use X-CSTP-MTU "
                    f"{mtu}" + (f" instead of X-DTLS-MTU {dtls_mtu}" if dtls_mtu and dtls_mtu != mtu else "") + ".",
            remedy="Fix DTLS (see the DTLS findings): TCP-over-TCP degrades badly under loss and latency.",
            evidence={"cstp_inner_packets": cstp_data, "x_cstp_mtu": mtu, "x_dtls_mtu": dtls_mtu}))
    elif d.established:
        moved = d.data_moved_to_dtls
        last_cstp = ch.last_data.get("c2s") if ch else None
        if moved and last_cstp and last_cstp > moved + 1.0:
            out.append(Finding(
                id="DTLS_FALLBACK_TLS", severity="warning", phase="dtls", time=last_cstp, frames=[],
                message="Data moved back to the TLS channel after DTLS had carried it (last client data over CSTP "
                        f"{last_cstp - moved:.1f} s after DTLS took over).",
                remedy="DTLS broke during the session (DPD failure, rekey, NAT change): see the DPD and DTLS "
                       "findings around that time.",
                evidence={"dtls_first_data": moved, "last_cstp_data": last_cstp}))
    if cd is None and flows and (inf := _inferred_fallback(session, d)) is not None:
        out.append(inf)
    gw_ip = split_endpoint(session.gateway)[0]
    port = dtls_port
    for f in flows:
        ip, p = split_endpoint(f.gateway)
        if ip != gw_ip or (port and int(p) != port):
            out.append(Finding(
                id="DTLS_SOURCE_MISMATCH", severity="warning", phase="dtls", time=f.start,
                frames=[f.first_frame],
                message=f"DTLS packets from {f.gateway}, not from the gateway {gw_ip}:{port or '?'} the client "
                        "talks to.",
                remedy="An asymmetric path, a load balancer or NAT rewrites the gateway's DTLS answers: clients and "
                       "firewalls drop answers from an unexpected address/port.",
                evidence={"flow": f.connection, "expected": f"{gw_ip}:{port}", "seen": f.gateway}))
    for f in flows:
        fr = f.first_record or {}
        if fr.get("from") == "client" and fr.get("content_type") == 23 and not f.client_hello_count:
            # a rebinding moves a flow that was up: an earlier flow of this session that carried DTLS records.
            # Without one, this flow was simply up before the capture started (see the dtls phase).
            prev = [g for g in flows if g.start < f.start and g is not f and (g.established or g.before_capture)]
            if not prev:
                continue
            out.append(Finding(
                id="DTLS_NAT_REBINDING", severity="warning", phase="dtls", time=f.start,
                frames=[f.first_frame],
                message=f"DTLS data from a new client port ({f.client}) without a new handshake"
                        + (f" (the session was on {prev[-1].client})" if prev else "") + ": a NAT rebound the "
                        "client's UDP mapping.",
                remedy="A NAT or firewall on the client side expires UDP mappings too early: raise its UDP timeout "
                       "or lower the DTLS keepalive/DPD interval on the gateway so the mapping stays alive.",
                evidence={"flow": f.connection, "new_source": f.client,
                          "previous_source": prev[-1].client if prev else None}))
    return out


def _inferred_fallback(session, d: DTLSDetails):
    """Without keys: the client tried DTLS (its hellos are in the capture: it was offered) and the tunnel
    connection carried DATA-sized CSTP records instead, or again more than a second after DTLS carried its first
    (analyzer/phases/inferred.py)."""
    ts = [t for t in inferred_tunnels(session) if t.estimate is not None]
    if not ts:
        return None
    if d.established:
        # the first tunnel connection, as with keys, and the DTLS its CONNECT set up (data after it came up)
        up = ts[0].established_time
        dtls_first = min((f.estimate.first_data.get("c2s") for f in d.flow_list if f.established and f.estimate
                          and f.estimate.first_data and f.estimate.first_data.get("c2s") is not None
                          and (up is None or f.estimate.first_data["c2s"] >= up)), default=None)
        last_cstp = ts[0].estimate.last_data.get("c2s")
        if dtls_first is None or last_cstp is None or last_cstp <= dtls_first + 1.0:
            return None
        return Finding(
            id="DTLS_FALLBACK_TLS", severity="warning", phase="dtls", time=last_cstp, frames=[], inferred=True,
            message="Data moved back to the TLS channel after DTLS had carried it (last client DATA-sized CSTP record "
                    f"{last_cstp - dtls_first:.1f} s after DTLS took over; inferred from record sizes, no keys).",
            remedy="DTLS broke during the session (DPD failure, rekey, NAT change): see the DPD and DTLS findings "
                   "around that time.",
            evidence={"dtls_first_data": dtls_first, "last_cstp_data": last_cstp, "inferred": True})
    data = {k: sum(getattr(t.estimate, k).data for t in ts) for k in ("c2s", "s2c")}
    if not (data["c2s"] or data["s2c"]):
        return None
    t = ts[0]
    return Finding(
        id="DTLS_FALLBACK_TLS", severity="warning", phase="dtls", time=t.established_time,
        frames=[t.connect_frame] if t.connect_frame is not None else [],
        inferred=True,
        message=f"DTLS did not come up: about {data['c2s']}+{data['s2c']} inner packets travelled over the TLS channel "
                f"(CSTP; inferred from record sizes on {t.connection}, no keys).",
        remedy="Fix DTLS (see the DTLS findings): TCP-over-TCP degrades badly under loss and latency.",
        evidence={"cstp_inner_packets_estimated": data, "connection": t.connection, "inferred": True})
