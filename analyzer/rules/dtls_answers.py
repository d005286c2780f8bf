"""DTLS_ANSWERS_LOST (warning): the gateway answered the client's DTLS ClientHellos with ServerHellos, but the client
kept sending its ClientHello again and never its next handshake message — the answers did not reach it. Seen where
both directions pass: a capture on the gateway's side of a way back that drops UDP from the gateway's port (a
firewall or NAT without the return state, asymmetric routing). Lab scenario `dtls-return-blocked`.

Facts (RFC 6347 §4.2.4): a DTLS client retransmits its flight (the ClientHello) when its timer expires without the
server's next flight; once the ServerHello flight arrives it goes on with its own (ClientKeyExchange or
ChangeCipherSpec, Finished). A ClientHello sent again after a ServerHello, more than once, and no handshake
completed: the ServerHellos never reached the client. (A cookie exchange, HelloVerifyRequest then a ClientHello with
the cookie, is DTLS_COOKIE_IGNORED's case, not this one.)
"""
from __future__ import annotations

from ..model import Finding
from ..phases.dtls import DTLSDetails, DTLSFlowSummary
from ..phases.record import UNSET

RULE_IDS = ("DTLS_ANSWERS_LOST",)

MIN_AGAIN = 2  # ClientHellos sent after a ServerHello before it is a finding


def _lost(f: DTLSFlowSummary) -> tuple[list[int], list]:
    """(ServerHello frames, the ClientHellos sent after the first of them)."""
    frames = f.server_hello_frames if f.server_hello_frames is not UNSET else []
    times = f.server_hello_times if f.server_hello_times is not UNSET else []
    if not frames or f.established or f.before_capture:
        return [], []
    first = (times[0], frames[0])
    again = [h for h in f.client_hellos if (h.ts, h.frame) > first]
    return frames, again


def check(session, ctx):
    out = []
    d = session.phase("dtls").details
    for f in d.flow_list if isinstance(d, DTLSDetails) else []:
        answers, again = _lost(f)
        if len(again) < MIN_AGAIN:
            continue
        n = len(answers)
        out.append(Finding(
            id="DTLS_ANSWERS_LOST", severity="warning", phase="dtls", time=f.server_hello_times[0],
            frames=sorted(set(answers[:6] + [h.frame for h in again[:6]])),
            message=f"The gateway answered the client's DTLS ClientHellos on {f.connection} ({n} ServerHello"
                    f"{'s' if n != 1 else ''}, frame{'s' if n != 1 else ''} {', '.join(map(str, answers[:5]))}"
                    f"{', …' if n > 5 else ''}), but the client sent its ClientHello again {len(again)} times and "
                    "never its next handshake message: the gateway's answers did not reach it.",
            remedy=f"Let the gateway's UDP answers back to the client: from {f.gateway} to {f.client} (a firewall "
                   "or NAT that passes the client's UDP out but not the answers in, or routes them another way). "
                   "A capture on the client's side shows the answers missing there.",
            evidence={"flow": f.connection, "server_hello_frames": answers[:20],
                      "client_hellos_after": [h.frame for h in again[:20]]}))
    return out
