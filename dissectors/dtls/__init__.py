"""DTLS for the VPN's UDP channel (sans-I/O): records, handshake, keys, decryption.

See :mod:`dissectors.dtls.connection` for the model and :mod:`dissectors.dtls.events` for the events.
"""

from .connection import DTLSConnection
from .events import (
    DTLSAlert,
    DTLSApplicationData,
    DTLSChangeCipherSpec,
    DTLSClientHello,
    DTLSEvent,
    DTLSFinished,
    DTLSHandshakeMessage,
    DTLSHelloVerifyRequest,
    DTLSRecordError,
    DTLSServerHello,
    DTLSUndecrypted,
)
from .keyexport import wireshark_keylog_line, wireshark_options, wireshark_psk_hex
from .keys import DTLSKeys, dtls_mode_from_connect, keys_from_connect
from .psk import psk_from_tls12_master_secret, psk_from_tls13_exporter_secret

__all__ = [
    "DTLSAlert",
    "DTLSApplicationData",
    "DTLSChangeCipherSpec",
    "DTLSClientHello",
    "DTLSConnection",
    "DTLSEvent",
    "DTLSFinished",
    "DTLSHandshakeMessage",
    "DTLSHelloVerifyRequest",
    "DTLSKeys",
    "DTLSRecordError",
    "DTLSServerHello",
    "DTLSUndecrypted",
    "dtls_mode_from_connect",
    "keys_from_connect",
    "psk_from_tls12_master_secret",
    "psk_from_tls13_exporter_secret",
    "wireshark_keylog_line",
    "wireshark_options",
    "wireshark_psk_hex",
]
