"""NSS key log format parsing and a pure-data key store.

The NSS key log format (written by NSS, OpenSSL, GnuTLS, BoringSSL, … through ``SSLKEYLOGFILE``) is one
secret per line::

    <LABEL> <client_random hex (32 bytes)> <secret hex>

plus two RSA forms understood by Wireshark::

    RSA <first 8 bytes of the encrypted premaster, hex> <premaster hex (48 bytes)>
    RSA Session-ID:<session id hex> Master-Key:<master secret hex (48 bytes)>

``#`` starts a comment line; blank lines are ignored.  :func:`parse_keylog` never raises: lines it
cannot use are returned as error strings carrying their 1-based line number.

:class:`KeyStore` answers the lookups the TLS/DTLS dissectors need.  It does no I/O; loading a key
file is the caller's business (``analyzer/``), :func:`load_rsa_private_key` only parses bytes.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CLIENT_RANDOM",
    "PMS_CLIENT_RANDOM",
    "RSA_PREMASTER",
    "RSA_SESSION",
    "TLS13_LABELS",
    "KeyLogEntry",
    "KeyStore",
    "load_rsa_private_key",
    "parse_keylog",
]

# Labels as they appear in the key log.  RSA lines get synthetic labels so that every entry has one.
CLIENT_RANDOM = "CLIENT_RANDOM"  # TLS <= 1.2 master secret (48 bytes) by client random
PMS_CLIENT_RANDOM = "PMS_CLIENT_RANDOM"  # premaster secret by client random
RSA_PREMASTER = "RSA"  # premaster (48 bytes) by the first 8 bytes of the RSA-encrypted premaster
RSA_SESSION = "RSA_SESSION_ID"  # master secret by session id ("RSA Session-ID:… Master-Key:…")

TLS13_LABELS = frozenset(
    {
        "CLIENT_EARLY_TRAFFIC_SECRET",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "EXPORTER_SECRET",
        "EARLY_EXPORTER_SECRET",
    }
)
_TRAFFIC_PREFIXES = ("CLIENT_TRAFFIC_SECRET_", "SERVER_TRAFFIC_SECRET_")
_SECRET_LENGTHS = (32, 48, 64)  # SHA-256 / SHA-384 / SHA-512 hash lengths
_MAX_LINE = 4096  # a key log line is < 300 characters; anything longer is garbage
_LABEL_LIKE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")  # NSS labels: upper case, digits, underscores
_HEX_RUN = re.compile(r"[0-9a-fA-F]{8}")  # a label with 8 hex digits in a row may be a secret glued to a word


@dataclass(frozen=True, slots=True)
class KeyLogEntry:
    """One usable key log line.

    ``key_id`` is what the secret is looked up by: the 32-byte client random for the client-random
    labels, the first 8 bytes of the encrypted premaster for ``RSA``, the session id for
    ``RSA_SESSION_ID``.
    """

    label: str
    key_id: bytes
    secret: bytes
    line: int = 0

    @property
    def client_random(self) -> bytes | None:
        return self.key_id if self.label not in (RSA_PREMASTER, RSA_SESSION) else None

    def to_line(self) -> str:
        if self.label == RSA_SESSION:
            return f"RSA Session-ID:{self.key_id.hex()} Master-Key:{self.secret.hex()}"
        return f"{self.label} {self.key_id.hex()} {self.secret.hex()}"


def _is_known_label(label: str) -> bool:
    if label in TLS13_LABELS or label in (CLIENT_RANDOM, PMS_CLIENT_RANDOM):
        return True
    for prefix in _TRAFFIC_PREFIXES:
        # OpenSSL 3.0 logs the secrets after a KeyUpdate with the literal suffix "_N" (the generation is
        # not given); accepted, but TLSConnection derives later generations itself (RFC 8446 §7.2).
        suffix = label[len(prefix):]
        if label.startswith(prefix) and (suffix.isdigit() or suffix == "N"):
            return True
    return False


def _unhex(text: str) -> bytes | None:
    if len(text) % 2:
        return None
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        return None


def _parse_line(line: str, lineno: int) -> KeyLogEntry | str:
    """One non-blank, non-comment line -> entry, or an error message."""
    if len(line) > _MAX_LINE:
        return f"line {lineno}: too long ({len(line)} characters)"
    fields = line.split()
    label = fields[0]
    if label == "RSA":
        # Two Wireshark forms: "RSA <enc pms 8 bytes> <pms>" and "RSA Session-ID:<x> Master-Key:<y>"
        if len(fields) == 3 and fields[1].startswith("Session-ID:") and fields[2].startswith("Master-Key:"):
            sid = _unhex(fields[1][len("Session-ID:"):])
            ms = _unhex(fields[2][len("Master-Key:"):])
            if sid is None or ms is None:
                return f"line {lineno}: RSA Session-ID line has invalid hex"
            if not 1 <= len(sid) <= 32:
                return f"line {lineno}: RSA Session-ID must be 1..32 bytes, got {len(sid)}"
            if len(ms) != 48:
                return f"line {lineno}: RSA Master-Key must be 48 bytes, got {len(ms)}"
            return KeyLogEntry(RSA_SESSION, sid, ms, lineno)
        if len(fields) != 3:
            return f"line {lineno}: RSA line needs 3 fields, got {len(fields)}"
        enc = _unhex(fields[1])
        pms = _unhex(fields[2])
        if enc is None or pms is None:
            return f"line {lineno}: RSA line has invalid hex"
        if len(enc) != 8:
            return f"line {lineno}: RSA encrypted premaster prefix must be 8 bytes, got {len(enc)}"
        if len(pms) != 48:
            return f"line {lineno}: RSA premaster must be 48 bytes, got {len(pms)}"
        return KeyLogEntry(RSA_PREMASTER, enc, pms, lineno)

    if len(fields) != 3:
        return f"line {lineno}: expected '<LABEL> <client_random> <secret>', got {len(fields)} fields"
    if not _is_known_label(label):
        # name the label only when it looks like one: a shifted or damaged line may have a secret there
        if _LABEL_LIKE.fullmatch(label) and not _HEX_RUN.search(label):
            return f"line {lineno}: unknown label {label!r}"
        return f"line {lineno}: unknown label (not shown: it is not a label and may be a secret)"
    cr = _unhex(fields[1])
    secret = _unhex(fields[2])
    if cr is None or len(cr) != 32:
        return f"line {lineno}: client random must be 64 hex digits"
    if secret is None or not secret:
        return f"line {lineno}: secret is not valid hex"
    if label == CLIENT_RANDOM and len(secret) != 48:
        return f"line {lineno}: CLIENT_RANDOM master secret must be 48 bytes, got {len(secret)}"
    if label == PMS_CLIENT_RANDOM:
        if len(secret) > 1024:
            return f"line {lineno}: PMS_CLIENT_RANDOM premaster too long ({len(secret)} bytes)"
    elif label != CLIENT_RANDOM and len(secret) not in _SECRET_LENGTHS:
        return f"line {lineno}: {label} secret must be 32, 48 or 64 bytes, got {len(secret)}"
    return KeyLogEntry(label, cr, secret, lineno)


def parse_keylog(text: str) -> tuple[list[KeyLogEntry], list[str]]:
    """Parse NSS key log text; returns (entries, errors).  Never raises on bad input."""
    entries: list[KeyLogEntry] = []
    errors: list[str] = []
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", "replace")
    for lineno, raw in enumerate(text.split("\n"), 1):  # numbered as an editor shows the file
        line = raw.strip().lstrip("\ufeff").strip()
        if not line or line.startswith("#"):
            continue
        result = _parse_line(line, lineno)
        if isinstance(result, str):
            errors.append(result)
        else:
            entries.append(result)
    return entries, errors


def load_rsa_private_key(data: bytes, password: bytes | None = None):
    """Parse an RSA private key from PEM or DER (PKCS#1 or PKCS#8, optionally encrypted with ``password``).

    Returns a ``cryptography`` RSAPrivateKey; raises ValueError if ``data`` holds no RSA private key.
    Pure: the caller reads the file.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key

    data = bytes(data)
    loaders = (load_pem_private_key,) if b"-----BEGIN" in data else (load_der_private_key,)
    last: Exception | None = None
    for loader in loaders:
        try:
            key = loader(data, password=password)
        except (ValueError, TypeError) as exc:  # bad format, wrong/missing password, unsupported
            last = exc
            continue
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"not an RSA private key: {type(key).__name__}")  # noqa: TRY004 - bad data
        return key
    raise ValueError(f"cannot parse RSA private key: {last}")


class KeyStore:
    """Pure-data store of TLS secrets (NSS key log entries) and RSA private keys.

    Lookups:
      * :meth:`secret` — any client-random label (``CLIENT_RANDOM``, ``CLIENT_TRAFFIC_SECRET_0`` …)
      * :meth:`master_secret_for_session_id` — ``RSA Session-ID:… Master-Key:…`` lines (and
        :meth:`add_session`)
      * :meth:`premaster_for_rsa` — ``RSA <enc-pms-prefix> <pms>`` lines
      * :attr:`rsa_keys` / :meth:`rsa_key_for_modulus` — private keys for RSA key exchange

    The TLS dissector adds master secrets it derives itself (e.g. from an RSA private key) with
    :meth:`add_secret`, so :meth:`to_keylog_lines` can hand Wireshark everything that was learnt.
    """

    __slots__ = ("_order", "_rsa_keys", "_rsa_pms", "_secrets", "_sessions")

    def __init__(self, entries: Iterable[KeyLogEntry] = ()) -> None:
        self._secrets: dict[tuple[str, bytes], bytes] = {}
        self._sessions: dict[bytes, bytes] = {}
        self._rsa_pms: dict[bytes, bytes] = {}
        self._rsa_keys: list = []
        self._order: dict[tuple[str, bytes], None] = {}  # insertion order for export, no duplicates
        self.add_entries(entries)

    # --- building -------------------------------------------------------------------------------
    @classmethod
    def from_keylog(cls, text: str) -> tuple[KeyStore, list[str]]:
        entries, errors = parse_keylog(text)
        return cls(entries), errors

    def add_keylog_text(self, text: str) -> list[str]:
        """Parse and add key log text (e.g. a pcapng Decryption Secrets Block); returns the errors."""
        entries, errors = parse_keylog(text)
        self.add_entries(entries)
        return errors

    def add_entries(self, entries: Iterable[KeyLogEntry]) -> None:
        for e in entries:
            if e.label == RSA_SESSION:
                self._sessions[bytes(e.key_id)] = bytes(e.secret)
            elif e.label == RSA_PREMASTER:
                self._rsa_pms[bytes(e.key_id[:8])] = bytes(e.secret)
            else:
                self._secrets[(e.label, bytes(e.key_id))] = bytes(e.secret)
            self._order[(e.label, bytes(e.key_id))] = None

    def add_secret(self, label: str, client_random: bytes, secret: bytes) -> None:
        self.add_entries([KeyLogEntry(label, bytes(client_random), bytes(secret))])

    def add_session(self, session_id: bytes, master_secret: bytes) -> None:
        """Master secret by session id (what a ``RSA Session-ID:… Master-Key:…`` line says)."""
        self.add_entries([KeyLogEntry(RSA_SESSION, bytes(session_id), bytes(master_secret))])

    def add_rsa_private_key(self, key) -> None:
        """Add a ``cryptography`` RSAPrivateKey used to decrypt RSA ClientKeyExchange messages."""
        from cryptography.hazmat.primitives.asymmetric import rsa

        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("add_rsa_private_key expects a cryptography RSAPrivateKey")
        n = key.public_key().public_numbers().n
        if all(k.public_key().public_numbers().n != n for k in self._rsa_keys):
            self._rsa_keys.append(key)

    # --- lookups --------------------------------------------------------------------------------
    def secret(self, label: str, client_random: bytes) -> bytes | None:
        return self._secrets.get((label, bytes(client_random)))

    def master_secret(self, client_random: bytes) -> bytes | None:
        """TLS <= 1.2 master secret (``CLIENT_RANDOM`` line)."""
        return self._secrets.get((CLIENT_RANDOM, bytes(client_random)))

    def labels_for(self, client_random: bytes) -> list[str]:
        """Labels known for a client random (for diagnostics)."""
        cr = bytes(client_random)
        return sorted(label for (label, k) in self._secrets if k == cr)

    def master_secret_for_session_id(self, session_id: bytes) -> bytes | None:
        if not session_id:
            return None
        return self._sessions.get(bytes(session_id))

    def premaster_for_rsa(self, encrypted_pms: bytes) -> bytes | None:
        """Premaster from an ``RSA`` line, looked up by the encrypted premaster (only 8 bytes used)."""
        if len(encrypted_pms) < 8:
            return None
        return self._rsa_pms.get(bytes(encrypted_pms[:8]))

    def premaster_for_client_random(self, client_random: bytes) -> bytes | None:
        return self._secrets.get((PMS_CLIENT_RANDOM, bytes(client_random)))

    @property
    def rsa_keys(self) -> tuple:
        return tuple(self._rsa_keys)

    def rsa_key_for_modulus(self, n: int):
        for k in self._rsa_keys:
            if k.public_key().public_numbers().n == n:
                return k
        return None

    def __len__(self) -> int:
        return len(self._order) + len(self._rsa_keys)

    def __bool__(self) -> bool:  # an empty store is still a store; keep truthiness explicit
        return True

    # --- export ---------------------------------------------------------------------------------
    def entries(self) -> list[KeyLogEntry]:
        out = []
        for label, key_id in self._order:
            if label == RSA_SESSION:
                out.append(KeyLogEntry(label, key_id, self._sessions[key_id]))
            elif label == RSA_PREMASTER:
                out.append(KeyLogEntry(label, key_id, self._rsa_pms[key_id]))
            else:
                out.append(KeyLogEntry(label, key_id, self._secrets[(label, key_id)]))
        return out

    def to_keylog_lines(self) -> list[str]:
        """NSS key log lines (no trailing newline) for every secret held; RSA private keys are not
        representable in the format and are left out."""
        return [e.to_line() for e in self.entries()]
