"""Small wording helpers for reports: '1 entry', '2 entries', never '1 entries' or '1 POST(s)'."""
from __future__ import annotations


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 entry', '2 entries', '1 key log', '0 RSA keys', '3 POSTs' (`words` for an irregular plural)."""
    if n == 1:
        return f"1 {word}"
    if words is None:
        words = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"
    return f"{n} {words}"
