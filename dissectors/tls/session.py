"""Shared TLS <= 1.2 session cache for resumption across connections (RFC 5246 §7.3, RFC 5077).

Pass one :class:`SessionCache` to every :class:`~dissectors.tls.connection.TLSConnection` of a capture:
a full handshake whose master secret was recovered records it under its session id and under any
session ticket the server issued; a later abbreviated handshake resuming that id/ticket finds it here
even if the key log has no line for the new client random.  Pure data, bounded (oldest entries drop).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["CachedSession", "SessionCache"]


@dataclass(frozen=True, slots=True)
class CachedSession:
    master_secret: bytes
    cipher_suite: int | None = None
    version: int | None = None
    extended_master_secret: bool | None = None


class SessionCache:
    __slots__ = ("_by_id", "_by_ticket", "max_entries")

    def __init__(self, max_entries: int = 10000) -> None:
        self._by_id: OrderedDict[bytes, CachedSession] = OrderedDict()
        self._by_ticket: OrderedDict[bytes, CachedSession] = OrderedDict()
        self.max_entries = max_entries

    @staticmethod
    def _put(d: OrderedDict, key: bytes, value: CachedSession, limit: int) -> None:
        d[key] = value
        d.move_to_end(key)
        while len(d) > limit:
            d.popitem(last=False)

    def add_session(self, session_id: bytes, master_secret: bytes, *, cipher_suite: int | None = None,
                    version: int | None = None, extended_master_secret: bool | None = None) -> None:
        if session_id and master_secret:
            self._put(self._by_id, bytes(session_id),
                      CachedSession(bytes(master_secret), cipher_suite, version, extended_master_secret),
                      self.max_entries)

    def add_ticket(self, ticket: bytes, master_secret: bytes, *, cipher_suite: int | None = None,
                   version: int | None = None, extended_master_secret: bool | None = None) -> None:
        if ticket and master_secret:
            self._put(self._by_ticket, bytes(ticket),
                      CachedSession(bytes(master_secret), cipher_suite, version, extended_master_secret),
                      self.max_entries)

    def lookup_session(self, session_id: bytes) -> CachedSession | None:
        return self._by_id.get(bytes(session_id)) if session_id else None

    def lookup_ticket(self, ticket: bytes) -> CachedSession | None:
        return self._by_ticket.get(bytes(ticket)) if ticket else None

    def __len__(self) -> int:
        return len(self._by_id) + len(self._by_ticket)
