"""Events emitted by :class:`dissectors.tls.connection.TLSConnection` (frozen, slotted dataclasses).

Every event carries ``direction`` ("c2s"/"s2c"), ``ts`` (capture epoch seconds) and ``frame`` (1-based
frame number).  For records that span several TCP segments, ``ts``/``frame`` are those of the segment that
completed the record (when its content became available); ``ApplicationData.first_frame`` is where the
record started.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .names import cipher_suite_name, extension_name, group_name, version_name

__all__ = [
    "Alert",
    "ApplicationData",
    "CertificateMsg",
    "CertificateRequestMsg",
    "ChangeCipherSpec",
    "ClientHello",
    "DecryptionStatus",
    "EncryptedRecord",
    "HandshakeMessage",
    "OtherRecord",
    "RecordError",
    "ServerHello",
    "TLSEvent",
]


@dataclass(frozen=True, slots=True)
class ClientHello:
    """RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2.  Extension-derived fields are empty/None when absent."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...]
    extensions: tuple[tuple[int, bytes], ...]
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    supported_versions: tuple[int, ...] = ()
    supported_groups: tuple[int, ...] = ()
    key_share_groups: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    extended_master_secret: bool = False
    encrypt_then_mac: bool = False
    session_ticket: bytes | None = None  # None: no extension; b"": extension present, no ticket
    psk_identities: tuple[bytes, ...] = ()
    psk_key_exchange_modes: tuple[int, ...] = ()
    early_data: bool = False
    secure_renegotiation: bool = False
    cookie: bytes = b""  # DTLS only
    direction: str = "c2s"
    ts: float = 0.0
    frame: int = 0

    @property
    def cipher_suite_names(self) -> tuple[str, ...]:
        return tuple(cipher_suite_name(c) for c in self.cipher_suites)

    @property
    def extension_names(self) -> tuple[str, ...]:
        return tuple(extension_name(t) for t, _ in self.extensions)

    @property
    def offers_tls13(self) -> bool:
        return 0x0304 in self.supported_versions

    @property
    def max_version(self) -> int:
        real = [v for v in self.supported_versions if (v & 0x0F0F) != 0x0A0A]  # drop GREASE
        return max(real) if real else self.legacy_version

    @property
    def key_share_group_names(self) -> tuple[str, ...]:
        return tuple(group_name(g) for g in self.key_share_groups)


@dataclass(frozen=True, slots=True)
class ServerHello:
    """RFC 8446 §4.1.3 / RFC 5246 §7.4.1.3.  ``version`` is the negotiated version (supported_versions
    extension if present, else legacy_version).  A HelloRetryRequest is a ServerHello with
    ``is_hello_retry_request`` set."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[tuple[int, bytes], ...]
    version: int
    is_hello_retry_request: bool = False
    alpn: str | None = None
    extended_master_secret: bool = False
    encrypt_then_mac: bool = False
    session_ticket: bool = False  # server will send a NewSessionTicket (RFC 5077)
    selected_psk: int | None = None
    key_share_group: int | None = None
    secure_renegotiation: bool = False
    direction: str = "s2c"
    ts: float = 0.0
    frame: int = 0

    @property
    def cipher_suite_name(self) -> str:
        return cipher_suite_name(self.cipher_suite)

    @property
    def version_name(self) -> str:
        return version_name(self.version)

    @property
    def extension_names(self) -> tuple[str, ...]:
        return tuple(extension_name(t) for t, _ in self.extensions)


@dataclass(frozen=True, slots=True)
class CertificateMsg:
    """Certificate message; ``certificates`` are DER, leaf first.  ``encrypted``: it came out of a
    decrypted record (TLS 1.3)."""

    direction: str
    certificates: tuple[bytes, ...]
    context: bytes = b""
    encrypted: bool = False
    ts: float = 0.0
    frame: int = 0


@dataclass(frozen=True, slots=True)
class CertificateRequestMsg:
    """CertificateRequest.  ``ca_names`` are DER-encoded X.501 DistinguishedNames (TLS 1.2 body, or the
    TLS 1.3 certificate_authorities extension)."""

    direction: str
    certificate_types: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    ca_names: tuple[bytes, ...] = ()
    context: bytes = b""
    encrypted: bool = False
    ts: float = 0.0
    frame: int = 0


@dataclass(frozen=True, slots=True)
class HandshakeMessage:
    """Any other handshake message.  ``msg_type`` -1 with name "encrypted_handshake_message" is a TLS 1.2
    handshake record that could not be decrypted (typically Finished).  ``info`` holds parsed details
    (e.g. ``named_group`` for ServerKeyExchange, ``lifetime`` for NewSessionTicket)."""

    direction: str
    msg_type: int
    name: str
    length: int
    body: bytes = b""
    encrypted: bool = False
    info: dict = field(default_factory=dict, hash=False, compare=False)
    ts: float = 0.0
    frame: int = 0


@dataclass(frozen=True, slots=True)
class ApplicationData:
    direction: str
    data: bytes
    ts: float = 0.0
    frame: int = 0
    first_frame: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    """``level``/``description`` are None for a TLS 1.2 alert record that could not be decrypted."""

    direction: str
    level: int | None
    description: int | None
    name: str
    encrypted: bool = False
    ts: float = 0.0
    frame: int = 0

    @property
    def fatal(self) -> bool:
        return self.level == 2


@dataclass(frozen=True, slots=True)
class ChangeCipherSpec:
    direction: str
    ts: float = 0.0
    frame: int = 0


@dataclass(frozen=True, slots=True)
class DecryptionStatus:
    """Decryption state change for one direction: ``ok`` True when records start (or resume) decrypting,
    False when they cannot (no key, wrong key, unsupported cipher, lost sequence number …)."""

    direction: str
    ok: bool
    reason: str
    ts: float = 0.0
    frame: int = 0


@dataclass(frozen=True, slots=True)
class RecordError:
    """Malformed or implausible record-layer/handshake data; the connection resynchronises and goes on."""

    direction: str
    message: str
    ts: float = 0.0
    frame: int = 0


@dataclass(frozen=True, slots=True)
class EncryptedRecord:
    """A protected record whose content could not be recovered (no key / failed decryption).
    ``length`` is the record fragment length: useful for traffic analysis without keys."""

    direction: str
    content_type: int
    length: int
    ts: float = 0.0
    frame: int = 0


@dataclass(frozen=True, slots=True)
class OtherRecord:
    """A record of a content type without a dedicated event (e.g. heartbeat, 24)."""

    direction: str
    content_type: int
    length: int
    ts: float = 0.0
    frame: int = 0


TLSEvent = (
    ClientHello | ServerHello | CertificateMsg | CertificateRequestMsg | HandshakeMessage | ApplicationData
    | Alert | ChangeCipherSpec | DecryptionStatus | RecordError | EncryptedRecord | OtherRecord
)
