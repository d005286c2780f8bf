"""Events emitted by :class:`dissectors.dtls.connection.DTLSConnection` (frozen, slotted dataclasses).

Every event carries ``ts`` (capture epoch seconds) and ``frame`` (1-based frame number) of the datagram
that completed it; events about one record also carry ``direction`` ("c2s" = client -> gateway,
"s2c"), ``epoch`` and ``seq`` (the 48-bit record sequence number).  For a handshake message that was
fragmented over several records, ``frames`` lists every frame that carried a fragment.

Records that cannot be decrypted when they arrive produce :class:`DTLSUndecrypted`; if keys become
available later (:meth:`DTLSConnection.set_keys`), the events of the now decrypted records are returned
then, with their original ``ts``/``frame``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dissectors.tls.names import cipher_suite_name, extension_name, version_name

__all__ = [
    "DTLSAlert",
    "DTLSApplicationData",
    "DTLSChangeCipherSpec",
    "DTLSClientHello",
    "DTLSDuplicate",
    "DTLSEvent",
    "DTLSFinished",
    "DTLSHandshakeMessage",
    "DTLSHelloVerifyRequest",
    "DTLSRecordError",
    "DTLSServerHello",
    "DTLSUndecrypted",
]

EXT_EXTENDED_MASTER_SECRET = 23
EXT_ENCRYPT_THEN_MAC = 22


def _ext_types(extensions: tuple[tuple[int, bytes], ...]) -> tuple[int, ...]:
    return tuple(t for t, _ in extensions)


@dataclass(frozen=True, slots=True)
class DTLSClientHello:
    """RFC 6347 §4.2.1 ClientHello.  ``version`` is client_version; ``record_version`` the record header's.

    ``retransmission``: an identical ClientHello (same message_seq and body) of the same handshake was
    seen before.  ``new_session``: this hello started a new handshake state (first hello, or a different
    client random on the same 5-tuple, e.g. after a reconnect)."""

    direction: str
    version: int
    record_version: int
    random: bytes
    session_id: bytes
    cookie: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...]
    extensions: tuple[tuple[int, bytes], ...]
    message_seq: int
    epoch: int
    seq: int
    retransmission: bool
    new_session: bool
    ts: float
    frame: int
    frames: tuple[int, ...] = ()

    @property
    def version_name(self) -> str:
        return version_name(self.version)

    @property
    def cipher_suite_names(self) -> tuple[str, ...]:
        return tuple(cipher_suite_name(s) for s in self.cipher_suites)

    @property
    def extension_types(self) -> tuple[int, ...]:
        return _ext_types(self.extensions)

    @property
    def extension_names(self) -> tuple[str, ...]:
        return tuple(extension_name(t) for t, _ in self.extensions)


@dataclass(frozen=True, slots=True)
class DTLSHelloVerifyRequest:
    """RFC 6347 §4.2.1: the server's stateless cookie exchange."""

    direction: str
    version: int
    cookie: bytes
    message_seq: int
    epoch: int
    seq: int
    retransmission: bool
    ts: float
    frame: int


@dataclass(frozen=True, slots=True)
class DTLSServerHello:
    """``resumed``: the server echoed the client's non-empty session id (abbreviated handshake)."""

    direction: str
    version: int
    record_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[tuple[int, bytes], ...]
    resumed: bool
    message_seq: int
    epoch: int
    seq: int
    retransmission: bool
    ts: float
    frame: int
    frames: tuple[int, ...] = ()

    @property
    def version_name(self) -> str:
        return version_name(self.version)

    @property
    def cipher_suite_name(self) -> str:
        return cipher_suite_name(self.cipher_suite)

    @property
    def extension_types(self) -> tuple[int, ...]:
        return _ext_types(self.extensions)


@dataclass(frozen=True, slots=True)
class DTLSHandshakeMessage:
    """Any other handshake message (Certificate, ServerKeyExchange, ServerHelloDone, ClientKeyExchange,
    CertificateRequest, NewSessionTicket, …).  ``body`` is the reassembled message body (at most 64 KiB
    kept); ``psk_identity`` is set for a PSK ClientKeyExchange (RFC 4279 §2)."""

    direction: str
    msg_type: int
    name: str
    message_seq: int
    length: int
    body: bytes
    epoch: int
    seq: int
    retransmission: bool
    ts: float
    frame: int
    frames: tuple[int, ...] = ()
    psk_identity: bytes | None = None


@dataclass(frozen=True, slots=True)
class DTLSChangeCipherSpec:
    """``message_seq``: Cisco's pre-standard DTLS 0x0100 sends a 3-byte ChangeCipherSpec (1, then the
    16-bit handshake message_seq it consumes); None for the standard 1-byte form."""

    direction: str
    epoch: int
    seq: int
    ts: float
    frame: int
    message_seq: int | None = None


@dataclass(frozen=True, slots=True)
class DTLSFinished:
    """A decrypted Finished.  ``verified``: True/False once checked against the handshake transcript
    (RFC 5246 §7.4.9), None when it could not be checked (transcript incomplete, no master secret)."""

    direction: str
    verify_data: bytes
    verified: bool | None
    message_seq: int
    epoch: int
    seq: int
    retransmission: bool
    ts: float
    frame: int


@dataclass(frozen=True, slots=True)
class DTLSAlert:
    """``encrypted``: the alert was protected (epoch > 0) and has been decrypted."""

    direction: str
    level: int
    description: int
    name: str
    encrypted: bool
    epoch: int
    seq: int
    ts: float
    frame: int

    @property
    def fatal(self) -> bool:
        return self.level == 2


@dataclass(frozen=True, slots=True)
class DTLSApplicationData:
    """Decrypted application data of one record (for the VPN: 1 type byte + payload)."""

    direction: str
    data: bytes
    epoch: int
    seq: int
    ts: float
    frame: int


@dataclass(frozen=True, slots=True)
class DTLSUndecrypted:
    """A protected record that could not be decrypted (yet): no keys, keys not derivable (e.g. full
    handshake instead of a resumption), unsupported cipher, or authentication failure (wrong keys)."""

    direction: str
    reason: str
    epoch: int
    seq: int
    length: int
    content_type: int
    ts: float
    frame: int


@dataclass(frozen=True, slots=True)
class DTLSDuplicate:
    """A record whose epoch and sequence number this direction already carried: a copy the capture made (two
    interfaces of the path, Windows pktmon's components) — a sender never reuses a record sequence number, a
    retransmitted handshake message gets a new one (RFC 6347 §4.1, §4.2.4). Not processed again."""

    direction: str
    epoch: int
    seq: int
    ts: float
    frame: int


@dataclass(frozen=True, slots=True)
class DTLSRecordError:
    """Malformed input: a datagram that is not DTLS, a truncated record, a bad handshake message…"""

    message: str
    ts: float
    frame: int
    direction: str = ""


DTLSEvent = (DTLSClientHello | DTLSHelloVerifyRequest | DTLSServerHello | DTLSHandshakeMessage
             | DTLSChangeCipherSpec | DTLSFinished | DTLSAlert | DTLSApplicationData | DTLSUndecrypted
             | DTLSDuplicate | DTLSRecordError)
