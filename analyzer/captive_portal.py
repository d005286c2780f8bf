"""A captive portal in front of the client: the guest network of a hotel, an airport or a café that holds every
device at its sign-in page until someone accepts its terms — "the VPN does not connect at the hotel", and
AnyConnect's "captive portal detected". Read from what such a network does in the clear, so with keys or without:

* it answers plain HTTP itself: a request for any web site gets a redirect to its sign-in page, or the status made
  for it, 511 Network Authentication Required (RFC 6585 §6). Operating systems check their connectivity exactly so as
  they join a network — a plain HTTP request for a known URL whose answer they know (`CHECKS`) — and a portal's
  redirect of that request is the surest sign (a web site's own redirects to another of its hosts are not);
* many also answer DNS themselves, every name with the portal's own address, so that even the VPN gateway's name
  leads to the portal: the client's TLS then meets the portal's certificate, not the gateway's;
* and they let nothing else through: the client's SYNs to the gateway go unanswered or are reset.

`read(pipe, inside)` gives, per client address, what the capture shows of it (the JSON "other traffic"
`captive_portal`, docs/json-schema.md): the portal's answers (`answers`: request, status, Location, page title,
frames and times, and why each is a portal's: `why`), the portal (`portal`: the host its redirects name, else the
address that answered), and the names its resolver answered with the portal's address (`dns`). Findings:
analyzer/rules/captive_portal.py (CAPTIVE_PORTAL).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from dissectors.redact import redact_url

from .model import Secret

#: operating systems' and browsers' connectivity checks: host -> the status their check URL answers with on an open
#: network (a plain HTTP request for a fixed URL; a redirect, a 511, or — where an empty 204 is expected — a page
#: instead, is a captive portal's doing)
CHECKS = {
    "connectivity-check.ubuntu.com": 204,  # Ubuntu's NetworkManager
    "connectivitycheck.gstatic.com": 204,  # Android, ChromeOS (/generate_204)
    "connectivitycheck.android.com": 204,
    "clients3.google.com": 204,
    "clients1.google.com": 204,
    "www.msftconnecttest.com": 200,  # Windows NCSI (/connecttest.txt)
    "ipv6.msftconnecttest.com": 200,
    "www.msftncsi.com": 200,  # older Windows (/ncsi.txt)
    "captive.apple.com": 200,  # macOS, iOS (/hotspot-detect.html)
    "detectportal.firefox.com": 200,  # Firefox (/success.txt)
    "nmcheck.gnome.org": 200,  # GNOME's NetworkManager (/check_network_status.txt)
    "network-test.debian.org": 200,  # Debian's NetworkManager (/nm)
    "networkcheck.kde.org": 200,  # KDE's
}
REDIRECTS = (301, 302, 303, 307, 308)
MAX_ANSWERS = 10  # a portal's answers kept per client


def _host(value: str | None) -> str | None:
    """A Host header's or URL authority's host, lower case, without port or trailing dot."""
    if not value:
        return None
    h = value.strip().lower()
    if h.startswith("["):  # an IPv6 literal
        return h[1:h.find("]")] if "]" in h else None
    return h.rsplit(":", 1)[0].rstrip(".") if h.count(":") <= 1 else h


def _location_host(location: str | None) -> str | None:
    if not location:
        return None
    try:
        return _host(urlsplit(location).netloc) or None
    except ValueError:
        return None


def _site(host: str) -> str:
    """The last two labels of a name (a site's own hosts share them: www.example.com, login.example.com)."""
    return ".".join(host.split(".")[-2:])


def _exchanges(pipe, inside: set):
    """(client address, server (address, port), exchange) of every plain HTTP exchange answered, in capture order."""
    rows = []
    for c in (getattr(pipe, "tcp", None) or {}).values():
        plain = getattr(c, "plain_http", None)
        if plain is None or c.client[0] in inside:
            continue
        rows += [(c.client[0], c.server, e) for e in plain.exchanges if e.get("status") is not None]
    rows.sort(key=lambda r: (r[2]["time"], r[2]["frame"]))
    return rows


def _why(e: dict, host: str | None) -> str | None:
    """Why a single exchange is a portal's answer, or None."""
    status = e["status"]
    if status == 511:
        return "network-authentication-required"
    expected = CHECKS.get(host or "")
    if expected is not None and (status in REDIRECTS or (expected == 204 and status == 200)):
        return "connectivity-check"
    return None


def read(pipe, inside: set | frozenset = frozenset()) -> list[dict]:
    """The captive portals the capture shows, one item per client address that met one (see the module's
    docstring); ``inside``: addresses whose traffic is inside a VPN tunnel (left out)."""
    rows = _exchanges(pipe, set(inside))
    if not rows:
        return []
    # a redirect to another site's host, per client and that host: the requested hosts sent there
    sent: dict[tuple, set] = {}
    for client, _server, e in rows:
        host, to = _host(e.get("host")), _location_host(e.get("location"))
        if e["status"] in REDIRECTS and host and to and _site(to) != _site(host):
            sent.setdefault((client, to), set()).add(host)
    # a web filter's block page is not a portal: it redirects some sites while others answer — a portal answers
    # every site the same way, so every other answer the client got meanwhile rules the host out
    for (client, to), hosts in list(sent.items()):
        times = [e["time"] for c, _s, e in rows if c == client and _location_host(e.get("location")) == to]
        if len(hosts) >= 2 and any(c == client and min(times) <= e["time"] <= max(times)
                                   and _location_host(e.get("location")) != to and _host(e.get("host")) != to
                                   for c, _s, e in rows):
            del sent[(client, to)]
    found: dict[str, dict] = {}
    for client, server, e in rows:
        host, to = _host(e.get("host")), _location_host(e.get("location"))
        why = _why(e, host)
        if why is None and e["status"] in REDIRECTS and to and len(sent.get((client, to), ())) >= 2:
            why = "redirects-every-site"
        if why is None:
            continue
        item = found.setdefault(client, {"client": client, "answers": [], "portal": None, "portal_address": None})
        if len(item["answers"]) >= MAX_ANSWERS:
            continue
        url = redact_url(f"http://{e.get('host') or server[0]}{e['target']}" if e["target"].startswith("/")
                         else e["target"])
        a = {"frame": e["frame"], "time": e["time"], "server": f"{server[0]}:{server[1]}", "request": e["method"]
             + " " + url, "status": e["status"], "reason": e.get("reason"), "answer_frame": e.get("answer_frame"),
             "answer_time": e.get("answer_time"), "why": why}
        if e.get("title"):
            a["title"] = e["title"]
        if e.get("location"):  # (a portal's redirect may carry its session: its secret-looking values redacted)
            a["location"] = redact_url(e["location"])
            if a["location"] != e["location"]:
                a["location_secret"] = Secret(e["location"])  # the whole URL, with --show-secrets
        item["answers"].append(a)
        if item["portal"] is None:
            item["portal"] = to or server[0]
            item["portal_address"] = server[0]
    dns = getattr(pipe, "dns", None)
    for item in found.values():
        item["first_time"] = item["answers"][0]["time"]
        item["dns"] = _hijacked(dns, item) if dns is not None else None
    return sorted(found.values(), key=lambda i: i["first_time"])


def _hijacked(dns, item: dict) -> dict | None:
    """The names the client's resolver answered with the address of the portal that answered its HTTP (a portal's
    DNS: every name is the portal), when there are two or more, not counting the portal's own name."""
    addr, own = item["portal_address"], item["portal"]
    names: dict[str, dict] = {}
    for e in dns.entries.values():
        if e["client"] != item["client"] or addr not in (e.get("addresses") or ()) or e["name"].rstrip(".") == own:
            continue
        n = names.setdefault(e["name"].rstrip("."), {"frames": [], "server": e["server"], "time": e["queries"][0][0]})
        if e.get("answer_frame") is not None:
            n["frames"].append(e["answer_frame"])
    if len(names) < 2:
        return None
    order = sorted(names.items(), key=lambda kv: kv[1]["time"])
    return {"server": order[0][1]["server"], "address": addr, "names": [n for n, _ in order][:10],
            "frames": sorted({f for _, v in order for f in v["frames"]})[:10]}
