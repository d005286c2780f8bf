"""Small wording helpers for reports: '1 entry', '2 entries', never '1 entries' or '1 POST(s)'."""
from __future__ import annotations


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 entry', '2 entries', '1 key log', '0 RSA keys', '3 POSTs' (`words` for an irregular plural)."""
    if n == 1:
        return f"1 {word}"
    if words is None:
        words = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"
    return f"{n} {words}"


def tls_servers_line(servers: list[dict], most: int = 8) -> str:
    """"vpn.example.com 198.51.100.7:443 ×3, 203.0.113.9:443 ×1" — other traffic's TLS servers (their SNI names first:
    what --gateway takes)."""
    return ", ".join((f"{'/'.join(t['names'][:2])} " if t.get("names") else "") + f"{t['server']} ×{t['connections']}"
                     for t in servers[:most])
