"""TLS_HANDSHAKE_STALLED: the gateway's TLS handshake stopped arriving — the client's ClientHello went out, then
nothing came back (no ServerHello) or only the ServerHello, for 5 s or more until the client gave up or the capture
ended (analyzer/phases/grouping.py `server_stalled_in_handshake`).

Fact: the server's first flight after the ServerHello (its certificate chain; in TLS 1.3 the encrypted
EncryptedExtensions/Certificate/CertificateVerify/Finished) is the connection's first run of full-size TCP
segments. A link on the path with a smaller MTU drops them when its ICMP "fragmentation needed" (RFC 1191) does not
reach the gateway — a path MTU black hole (RFC 2923): the small packets before it (SYN-ACK, ServerHello) arrive, the
big ones never do. A gateway whose TLS service hung looks the same from the client's side; the gateway's side shows
the difference (its full-size segments retransmitted and never acknowledged). Lab scenario `path-mtu-blackhole`.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.record import UNSET
from ..phases.tls_handshake import TLSHandshakeDetails

RULE_IDS = ("TLS_HANDSHAKE_STALLED",)


def check(session, ctx):
    d = session.phase("tls-handshake").details
    st = d.server_stalled if isinstance(d, TLSHandshakeDetails) and d.server_stalled is not UNSET else None
    if not st:
        return []
    after = (f"its ServerHello (frame {st['since_frame']})" if st["server_hello"] else
             f"the client's ClientHello (frame {st['since_frame']}), not even a ServerHello")
    end = (f"until the client gave up and closed the connection (frame {st['closed_frame']})" if st["closed_frame"]
           else "until the capture ended")
    if st.get("retransmitted"):  # seen from the gateway's side: the flight left and was sent again
        what = (f"The gateway's TLS handshake never reached the client: after its ServerHello (frame "
                f"{st['since_frame']}) the gateway sent the rest of its handshake (the certificate) and sent it again "
                f"{st['retransmitted']} times, never acknowledged, for {st['waited']:.1f} s {end}. Those are the "
                "connection's first full-size packets: a path MTU black hole between gateway and client loses "
                "exactly those (a link with a smaller MTU whose ICMP 'fragmentation needed' does not come back).")
    else:
        what = (f"The gateway's TLS handshake stopped arriving: nothing came after {after} for {st['waited']:.1f} s, "
                f"{end}. Its next messages (the certificate) are the connection's first full-size packets: a path "
                "MTU black hole loses exactly those (a link with a smaller MTU whose ICMP 'fragmentation needed' "
                "does not come back), or the gateway's TLS service hung.")
    return [Finding(
        id="TLS_HANDSHAKE_STALLED", severity="error", phase="tls-handshake", time=st["since_time"],
        frames=sorted({st["since_frame"]} | ({st["closed_frame"]} if st["closed_frame"] else set())),
        message=what,
        remedy="Clamp the TCP MSS on the path (a router or firewall between client and gateway; on an ASA `sysopt "
               "connection tcpmss`) or let ICMP 'fragmentation needed' (type 3 code 4) through, and try a lower MTU "
               "on the client's network; a capture on the gateway's side tells the two causes apart (its full-size "
               "segments retransmitted and never acknowledged: the black hole).",
        evidence=dict(st))]
