"""Small wording helpers for reports: '1 entry', '2 entries', never '1 entries' or '1 POST(s)'."""
from __future__ import annotations


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 entry', '2 entries', '1 key log', '0 RSA keys', '3 POSTs' (`words` for an irregular plural)."""
    if n == 1:
        return f"1 {word}"
    if words is None:
        words = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"
    return f"{n} {words}"


def timer(seconds: int) -> str:
    """A timer a gateway announced (X-CSTP-Session-Timeout, X-CSTP-Idle-Timeout…) in whole seconds, or in minutes or
    hours when it is a whole number of tenths of them: '30 s', '30 min', '8 h'."""
    if seconds >= 7200 and seconds % 360 == 0:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 120 and seconds % 6 == 0 else f"{seconds} s"


def captive_portals_line(items: list[dict], most: int = 4) -> str:
    """"captive portal: portal.hotspot.test (198.18.0.5:80) answered 198.18.0.2's plain HTTP" — other traffic's
    captive portals (analyzer/captive_portal.py; finding CAPTIVE_PORTAL)."""
    parts = [f"{i['portal']} ({i['answers'][0]['server']}) answered {i['client']}'s plain HTTP"
             + (f", its DNS server answering {len(i['dns']['names'])} names with its address" if i.get("dns") else "")
             for i in items[:most]]
    return "captive portal: " + "; ".join(parts) + (f"; {len(items) - most} more" if len(items) > most else "")


def tls_servers_line(servers: list[dict], most: int = 8) -> str:
    """"vpn.example.com 198.51.100.7:443 ×3, 203.0.113.9:443 ×1" — other traffic's TLS servers (their SNI names first:
    what --gateway takes)."""
    return ", ".join((f"{'/'.join(t['names'][:2])} " if t.get("names") else "") + f"{t['server']} ×{t['connections']}"
                     for t in servers[:most])
