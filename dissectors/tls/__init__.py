"""TLS record layer, handshake parsing, key schedules and decryption (sans-I/O).

Modules: ``record`` (framing, resync), ``handshake`` (message reassembly/parsing), ``keyschedule``
(TLS 1.0-1.3 PRF/HKDF, exporters), ``ciphers`` (suite table, record protection; shared with DTLS),
``session`` (resumption cache), ``events``, ``names`` and ``connection`` (:class:`TLSConnection`).
"""

from .ciphers import CipherSuite, DecryptError, suite_info
from .connection import TLSConnection
from .events import (
    Alert,
    ApplicationData,
    CertificateMsg,
    CertificateRequestMsg,
    ChangeCipherSpec,
    ClientHello,
    DecryptionStatus,
    EncryptedRecord,
    HandshakeMessage,
    OtherRecord,
    RecordError,
    ServerHello,
)
from .session import SessionCache

__all__ = [
    "Alert",
    "ApplicationData",
    "CertificateMsg",
    "CertificateRequestMsg",
    "ChangeCipherSpec",
    "CipherSuite",
    "ClientHello",
    "DecryptError",
    "DecryptionStatus",
    "EncryptedRecord",
    "HandshakeMessage",
    "OtherRecord",
    "RecordError",
    "ServerHello",
    "SessionCache",
    "TLSConnection",
    "suite_info",
]
