"""DTLS_PSK_MISMATCH (warning): in PSK-NEGOTIATE mode the gateway answered the client's DTLS ClientHello, the client
sent its Finished — again and again — and the gateway never sent its own: it could not verify the client's Finished,
so the two ends did not hold the same pre-shared key.

Facts: with `X-DTLS-CipherSuite: PSK-NEGOTIATE` (openconnect and ocserv), the DTLS pre-shared key is not sent in the
CONNECT: each end derives it from *its* TLS session with the exporter labelled `EXPORTER-openconnect-psk` (RFC 5705 /
RFC 8446 §7.5). In a DTLS 1.2 PSK handshake the client's Finished comes first and the server answers with its own
only once the client's verifies (RFC 6347 §4.2.4: records that fail to verify are discarded silently, so the
client's flight is sent again until it gives up). When acflow verifies the client's Finished with the key it
derived from the client's TLS session (from the key log), the client used that session's key — and a gateway that
never answers it holds another: its TLS session is not the client's. Something between them ends the client's TLS
and opens its own to the gateway: a TLS-inspecting firewall or proxy ("SSL decryption"), which lets UDP pass. The
certificate the client received then comes from that device (its issuer is named). Lab scenario `tls-inspection`
(lab/inspect.py, real openconnect and ocserv).

Seen from the gateway's side (its capture and its key log): the client's Finished does not even decrypt with the key
acflow derives from the session's TLS connection — the one the gateway holds —, and the gateway never answers it:
the client keyed its DTLS from another TLS session (`verified_with_session_tls: false`); its DTLS then comes from
the client's own address while the TLS came from the intercepting device's, which the message names (lab scenario
`both-sides-tls-inspection`, the middlebox on a router between the two captures).

Without keys (`inferred`): the same shape — a PSK cipher suite chosen, the client's protected handshake record sent
three times or more, nothing protected from the gateway — with the cause as the most likely one; the key log proves
it.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.dtls import DTLSDetails, DTLSFlowSummary
from ..phases.record import UNSET
from ..phases.tls_handshake import TLSHandshakeDetails

RULE_IDS = ("DTLS_PSK_MISMATCH",)

MIN_SENT_KEYED = 2  # the client's Finished sent at least this often (the first and a copy) with keys
MIN_SENT_KEYLESS = 3  # without keys (a lost answer is one retransmission; a key mismatch is all of them)


def _unanswered_finished(f: DTLSFlowSummary):
    """The client's Finished records when the gateway never sent its own, else None."""
    fin = f.finished if f.finished is not UNSET else {}
    mine = fin.get("c2s")
    if mine is None or "s2c" in fin or f.established or f.before_capture:
        return None
    psk = f.mode == "psk-negotiate" or "_PSK_" in (f.cipher_suite or "")
    return mine if psk else None


def check(session, ctx):
    out = []
    d = session.phase("dtls").details
    td = session.phase("tls-handshake").details
    cert = td.certificates[0] if isinstance(td, TLSHandshakeDetails) and td.certificates else None
    for f in d.flow_list if isinstance(d, DTLSDetails) else []:
        mine = _unanswered_finished(f)
        if mine is None:
            continue
        keyed = mine.verified is True
        gateway_side = mine.verified is False  # keyed too: it does not verify with the session's TLS key
        if len(mine.frames) < (MIN_SENT_KEYED if keyed or gateway_side else MIN_SENT_KEYLESS):
            continue
        sent = len(mine.frames)
        frames = ([f.server_hello.frame] if f.server_hello is not None else []) + mine.frames[:6]
        issuer = cert.get("issuer") if isinstance(cert, dict) else None
        who = (f" The certificate the client received for the gateway names {cert.get('subject')}, issued by "
               f"{issuer}: if that is not the gateway's own, it is the intercepting device's." if issuer else "")
        evidence = {"connection": f.connection, "finished_sent": sent, "finished_frames": mine.frames[:16],
                    "verified_with_client_tls_session": keyed, "certificate_issuer": issuer}
        # (seen from the gateway's side, the TLS comes from the intercepting device, the DTLS from the client)
        tls_from, dtls_from = session.client, f.client.rsplit(":", 1)[0] if f.client else None
        moved = (f" — the TLS connection came from {tls_from}, the DTLS from {dtls_from}: the device is at "
                 f"{tls_from}" if dtls_from and tls_from and dtls_from != tls_from else "")
        if moved:
            evidence.update(tls_client=tls_from, dtls_client=dtls_from)
        if gateway_side:
            evidence = {"connection": f.connection, "finished_sent": sent, "finished_frames": mine.frames[:16],
                        "verified_with_session_tls": False, "tls_client": tls_from, "dtls_client": dtls_from}
            message = (f"The client's DTLS Finished on {f.connection}, sent {sent} times, does not decrypt with "
                       "the key of this session's TLS connection (PSK-NEGOTIATE derives the DTLS key from it; "
                       "acflow derived it with the key log), and the gateway never answered it: the client keyed "
                       "its DTLS from another TLS session — its TLS connection does not end at the gateway. A "
                       "TLS-inspecting firewall or proxy between them ends it and opens its own to the gateway"
                       f"{moved}.")
        elif keyed:
            message = (f"The gateway never accepted the client's DTLS Finished on {f.connection}, sent {sent} times, "
                       "although it verifies with the key of the client's TLS session (PSK-NEGOTIATE derives the DTLS "
                       "key from it; acflow verified it with the key log): the gateway holds a different key, from "
                       "a TLS session of its own — the client's TLS connection does not end at the gateway. A "
                       "TLS-inspecting firewall or proxy between them ends it and opens its own, most likely "
                       "(UDP passes it, DTLS cannot)." + who)
        else:
            message = (f"The gateway answered the client's DTLS ClientHello on {f.connection} but never its Finished, "
                       f"sent {sent} times (PSK cipher suite): the gateway could not verify it, so the two ends hold "
                       "different keys — the DTLS key comes from each end's TLS session, and a TLS-inspecting "
                       f"firewall or proxy between them makes two{moved} (inferred without keys; the key log proves "
                       "it)." + ("" if moved else who))
        out.append(Finding(
            id="DTLS_PSK_MISMATCH", severity="warning", phase="dtls", time=mine.times[0], frames=frames,
            message=message,
            remedy="Exempt the VPN gateway (its address or name) from TLS inspection / SSL decryption on the "
                   "firewall or proxy the client's traffic passes: through it the tunnel cannot use DTLS (TCP only), "
                   "and the client does not see the gateway's own certificate.",
            evidence=evidence, inferred=not (keyed or gateway_side)))
    return out
