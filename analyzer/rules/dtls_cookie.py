"""DTLS_COOKIE_IGNORED (warning): the gateway answers with HelloVerifyRequests, the client keeps sending hellos
without the cookie.

Facts (RFC 6347 §4.2.1): a DTLS server may answer a ClientHello with a HelloVerifyRequest carrying a cookie; the
client must then send its ClientHello again with that cookie. Cisco gateways and GnuTLS servers do this by
default. A HelloVerifyRequest followed by a ClientHello *with* the cookie is the normal exchange, not a retry.
A client that answers HelloVerifyRequests with more cookie-less hellos never gets past them: the answers do not
reach its DTLS socket (they come from another address or port, a firewall passes only one direction, a NAT maps
the answer elsewhere), or the client does not implement the exchange.
"""
from __future__ import annotations

from ..model import Finding
from ..phases.dtls import DTLSDetails, DTLSFlowSummary

RULE_IDS = ("DTLS_COOKIE_IGNORED",)

MIN_IGNORED = 2  # HelloVerifyRequests answered by a cookie-less hello before it is a finding


def _ignored(flow: DTLSFlowSummary) -> list[tuple[float, int, int]]:
    """(time, HelloVerifyRequest frame, next hello frame) for each HVR answered by a hello without a cookie."""
    hvr = list(zip(flow.hello_verify_request_times, flow.hello_verify_request_frames))
    out = []
    for ts, frame in hvr:
        nxt = next((h for h in flow.client_hellos if h.ts > ts or (h.ts == ts and h.frame > frame)), None)
        if nxt is not None and not nxt.cookie:
            out.append((ts, frame, nxt.frame))
    return out


def check(session, ctx):
    out = []
    d = session.phase("dtls").details
    for f in d.flow_list if isinstance(d, DTLSDetails) else []:
        ignored = _ignored(f)
        if len(ignored) < MIN_IGNORED:
            continue
        frames = sorted({x for _, a, b in ignored for x in (a, b)})
        out.append(Finding(
            id="DTLS_COOKIE_IGNORED", severity="warning", phase="dtls", time=ignored[0][0], frames=frames[:12],
            message=f"The gateway answered with {len(f.hello_verify_request_frames)} "
                    f"HelloVerifyRequest(s) on {f.connection}, but {len(ignored)} time(s) the client's next "
                    "ClientHello carried no cookie: the cookie exchange never completed.",
            remedy="The HelloVerifyRequests do not reach the client's DTLS socket or are not understood: check that "
                   "the answers come back from the address and port the client sent to (NAT, load balancer, "
                   "asymmetric firewall rules) and that the client's DTLS implementation supports cookies.",
            evidence={"flow": f.connection, "ignored": [{"hello_verify_request_frame": a, "next_hello_frame": b}
                                                           for _, a, b in ignored[:20]]}))
    return out
