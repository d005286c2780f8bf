"""CAPTIVE_PORTAL: the client's network held it at a captive portal's sign-in page (analyzer/captive_portal.py) — a
guest network of a hotel, an airport or a café that answers plain HTTP itself (a redirect to its sign-in page, or
511), often DNS too (every name its own address), and lets nothing else through until someone accepts its terms.

In a session (`check`): error when the session's tunnel never came up after the portal's first answer (the
portal is why: its DNS sent the client's TLS to the portal itself, or it dropped the client's connections to the
gateway), info when the tunnel came up after it (someone signed in meanwhile). Capture-wide (`capture_wide`): no
session, and a portal — warning. Lab scenarios `captive-portal` (the portal's DNS and HTTPS) and
`captive-portal-firewall` (plain HTTP answered, the gateway's port dropped).

Fact: RFC 6585 §6 defines status 511 (Network Authentication Required) for captive portals; operating systems
check for one by fetching a fixed plain-HTTP URL whose answer they know (analyzer/captive_portal.py CHECKS).
"""
from __future__ import annotations

from ..model import Finding
from ..phases import cstp_connect, inferred

RULE_IDS = ("CAPTIVE_PORTAL",)

REMEDY = ("Open a web browser on the client and sign in on the portal's page (or accept its terms), then connect the "
          "VPN again. Where the VPN client blocks the network until it connects (AnyConnect Always-On with a closed "
          "connect failure policy), the profile must allow captive portal remediation (Allow Captive Portal "
          "Remediation) for that browser to reach the portal.")
REMEDY_PASSED = "Nothing to fix in the VPN: the client connected once the portal let it through."

_WHY = {"connectivity-check": "the operating system's connectivity check",
        "network-authentication-required": "511 Network Authentication Required",
        "redirects-every-site": "every site redirected to the same page"}


def describe(item: dict) -> tuple[str, list[int]]:
    """What the capture shows of one client's captive portal, in words, and the frames it rests on."""
    first = item["answers"][0]
    answer = f"{first['status']} {first.get('reason') or ''}".strip()
    if first.get("location"):
        answer += f" → {first['location']}"
    if first.get("title"):
        answer += f" (page “{first['title']}”)"
    text = (f"{first['request']} was answered by {first['server']} with {answer} (frames {first['frame']}, "
            f"{first['answer_frame']}; {_WHY[first['why']]})")
    more = len(item["answers"]) - 1
    if more:
        text += f", and {more} more request{'s' if more != 1 else ''} the same way"
    frames = sorted({f for a in item["answers"][:3] for f in (a["frame"], a["answer_frame"]) if f is not None})
    dns = item.get("dns")
    if dns:
        text += (f"; the network's DNS server {dns['server']} answered every name with the portal's own address "
                 f"{dns['address']} ({', '.join(dns['names'][:4])}{', …' if len(dns['names']) > 4 else ''})")
        frames = sorted(set(frames) | set(dns["frames"][:4]))
    return text, frames


def _evidence(item: dict) -> dict:
    return {"portal": item["portal"], "portal_address": item["portal_address"], "answers": item["answers"][:5],
            **({"dns": item["dns"]} if item.get("dns") else {})}


def _tunnel_up(session) -> float | None:
    """When the session's tunnel first came up (its CONNECT answered 2xx; without keys, as inferred), else None."""
    times = [x.response_time for x in cstp_connect.answered(session)]
    times += [t.established_time for t in inferred.tunnels(session) if t.established_time is not None]
    return min(times) if times else None


def check(session, ctx):
    item = next((i for i in ctx.captive_portals if i["client"] == session.client
                 and (session.end is None or i["first_time"] <= session.end)), None)
    if item is None:
        return []
    up = _tunnel_up(session)
    if up is not None and up < item["first_time"]:
        return []  # the tunnel was up before: another network's portal later, not this session's trouble
    text, frames = describe(item)
    t0 = session.start if session.start is not None else item["first_time"]
    ahead = t0 - item["first_time"]
    at = (f"at +{-ahead:.1f} s" if ahead <= 0 else "just before the session began" if ahead < 1 else
          f"{ahead:.0f} s before the session began")
    gw_addr = session.gateway.rsplit(":", 1)[0].strip("[]")
    if up is not None:
        return [Finding(id="CAPTIVE_PORTAL", severity="info", phase="tls-handshake", time=item["first_time"],
                        frames=frames,
                        message=f"The client's network held it at a captive portal ({at}): {text}. The tunnel came "
                                f"up at +{up - t0:.1f} s, after it: someone signed in on the portal's page meanwhile.",
                        remedy=REMEDY_PASSED, evidence=_evidence(item) | {"tunnel_up": up})]
    msg = (f"The client's network holds it at a captive portal (a guest network's sign-in page: hotel, airport, café) "
           f"— {at}, {text}. Until someone signs in there, the network lets nothing else through: ")
    if gw_addr == item["portal_address"]:
        msg += (f"the address the client took for the gateway, {gw_addr}, is the portal's own — its TLS connection "
                "met the portal, not the VPN gateway.")
    else:
        msg += "the client could not reach the VPN gateway."
    return [Finding(id="CAPTIVE_PORTAL", severity="error", phase="tls-handshake", time=item["first_time"],
                    frames=frames, message=msg, remedy=REMEDY, evidence=_evidence(item))]


def capture_wide(analysis) -> Finding | None:
    """No session in the capture, and a captive portal answered a client's HTTP: why the VPN could not connect."""
    if analysis.sessions:
        return None
    items = (analysis.other_traffic or {}).get("captive_portal") or []
    if not items:
        return None
    item = items[0]
    text, frames = describe(item)
    others = [i["client"] for i in items[1:]]
    msg = (f"No VPN session, and the network held the client {item['client']} at a captive portal (a guest "
           f"network's sign-in page: hotel, airport, café): {text}. Until someone signs in there, the network lets "
           "nothing else through: the VPN client cannot reach its gateway"
           + (" (the gateway's name, too, leads to the portal)" if item.get("dns") else "") + "."
           + (f" Other clients held the same way: {', '.join(others[:5])}." if others else ""))
    return Finding(id="CAPTIVE_PORTAL", severity="warning", time=item["first_time"], frames=frames, message=msg,
                   remedy=REMEDY, evidence=_evidence(item) | {"clients": [i["client"] for i in items][:20]})
