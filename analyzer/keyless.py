"""What the tunnel carried, read from the sizes of records that could not be decrypted (issue #13, first part).

Without keys every CSTP frame (over TLS) and every DTLS channel packet is still one protected record whose length
is the plaintext's plus a fixed protection overhead that the clear handshake names (the cipher suite in the
ServerHello). So the plaintext length of each record is known exactly for AEAD suites and to within one block for
CBC ones, and with it the frame class:

* CSTP over TLS: plaintext = 8-byte CSTP header + payload. A payload of 0 is a control frame (DPD request or
  response, keepalive); anything else is DATA carrying an inner packet of `plaintext − 8` bytes.
* DTLS channel: plaintext = 1 type byte + payload; a payload of 0 is a control packet, the rest DATA of
  `plaintext − 1` bytes (MTU probes — padded DPD requests — count as DATA here: nothing tells them apart but the
  answer of the same size).

Control frames answered by one from the other side within `ANSWER_WINDOW` are counted as answered (DPD
exchanges), the others as unanswered (keepalives, or DPD requests that got no answer). An unanswered one is classed
by timing: a DPD request goes out after the DPD interval without a record from the peer, a keepalive after the
keepalive interval without one sent (`TunnelEstimate.refine`, `share_dpd_timers`; one the peer got and left
unanswered is a keepalive — over TLS one left unanswered while a later DPD request is answered, over DTLS one
between two promptly answered DPD requests of its side (`_received`) — and so is one sent after no longer a
silence than such a keepalive; unanswered ones that end a side's traffic while the peer is silent are DPD requests
to a dead peer). Everything here is an
estimate, labelled as such in reports: a TLS record may in principle hold two CSTP frames (the clients seen put
one frame per record), and compression changes DATA sizes. Counters only: memory stays flat.
"""
from __future__ import annotations

from dataclasses import dataclass, field

CSTP_HEADER = 8
DTLS_TYPE_BYTE = 1
ANSWER_WINDOW = 2.5  # seconds: a control frame answered this fast by the other side is a DPD exchange
#: seconds: the least silence of the peer after which a DPD request goes out (the DPD interval, 5 s at least on Cisco
#: gateways — 'anyconnect dpd-interval' takes 5 to 3600 —, less a timer's second)
MIN_DPD_SILENCE = 4.0
#: seconds: a DPD exchange answered this fast (a round trip, not a keepalive crossing the peer's own control
#: frame) shows its sender's DPD timer (`TunnelEstimate.dpd_silence`)
TIMER_ANSWER = 1.0
CBC_BLOCK = 16
MIN_IP_PACKET = 20  # an inner packet is at least an IPv4 header: a shorter non-empty payload is no DATA frame
MAX_CONTROL_LOG = 2000  # control records remembered per estimate (for their class per record)
MTU_PROBE_MIN = 100  # DTLS: a padded DPD request longer than this is an MTU probe (as analyzer/tcptracker.py)
PROBE_WINDOW = 1.0  # seconds: an MTU probe is answered by a DPD response of the same size this fast
PROBE_PERIOD = 15.0  # seconds after the channel's first record: clients probe the MTU right after the handshake
MAX_PROBE_REPEATS = 3  # echoes of one record length: this many or more are traffic (pings), not MTU probes


@dataclass(frozen=True)
class Protection:
    """The per-record overhead of a cipher suite: fixed bytes, and the block size when padded (CBC)."""

    fixed: int  # explicit nonce/IV + tag (+ TLS 1.3 inner content type); CBC: the explicit IV
    block: int = 0  # CBC: plaintext + MAC + padding-length byte is padded to a multiple of this
    mac: int = 0  # CBC: MAC length (inside the padded part; after it with encrypt-then-MAC)
    etm: bool = False  # CBC with encrypt-then-MAC (RFC 7366): the MAC follows the padded ciphertext

    def plaintext(self, length: int) -> tuple[int, int]:
        """(least, most) plaintext length for a record of ``length`` bytes."""
        if not self.block:
            n = length - self.fixed
            return n, n
        # length = IV + padded(plaintext [+ MAC] + 1) [+ MAC]; padding 0..block-1 bytes besides the length byte
        most = length - self.fixed - self.mac - 1
        return max(most - (self.block - 1), 0), most

    def record_length(self, plaintext: int) -> int:
        """The protected record length of ``plaintext`` bytes (CBC: with the least padding)."""
        if not self.block:
            return plaintext + self.fixed
        inside = plaintext + 1 + (0 if self.etm else self.mac)
        return self.fixed + -(-inside // self.block) * self.block + (self.mac if self.etm else 0)


def protection(suite_name: str | None, version: int | None, *, dtls: bool, etm: bool = False) -> Protection | None:
    """The record overhead of ``suite_name`` under ``version`` (TLS or DTLS), None when unknown; ``etm``: the
    ServerHello accepted encrypt-then-MAC (CBC suites only).

    * TLS 1.3 AEAD (AES-GCM, ChaCha20-Poly1305, AES-CCM): 16-byte tag (CCM_8: 8) + 1 inner content-type byte
      (RFC 8446 §5.2);
    * TLS 1.2 / DTLS 1.2 AES-GCM: 8-byte explicit nonce + 16-byte tag (RFC 5288 §3); AES-CCM: the same, CCM_8 with
      an 8-byte tag (RFC 6655 §3);
    * ChaCha20-Poly1305 (TLS 1.2 / DTLS 1.2): 16-byte tag, no explicit nonce (RFC 7905 §2);
    * CBC in TLS 1.1/1.2, DTLS 1.0/1.2 and Cisco's DTLS 0x0100 (OpenSSL's pre-RFC 4347 DTLS, the same layout):
      explicit IV of one block + MAC + padding to the block with its length byte (RFC 5246 §6.2.3.2, RFC 4346
      §6.2.3.2, RFC 6347 §4.1.2.1); in TLS 1.0 without the explicit IV, the previous record's last block being
      the IV (RFC 2246 §6.2.3.2); with encrypt-then-MAC the MAC follows the padded ciphertext (RFC 7366 §3).

    MAC: HMAC-SHA1 20 bytes, -SHA256 32, -SHA384 48 (RFC 5246 §6.2.3.1); block: AES 16, 3DES 8.
    """
    if not suite_name or version is None:
        return None
    name = suite_name.upper()
    tls13 = not dtls and version >= 0x0304
    if tls13:
        return Protection((8 if "CCM_8" in name else 16) + 1)  # AEAD tag + inner content type
    if "CHACHA20" in name:
        return Protection(16)
    if "GCM" in name or ("CCM" in name and "CCM_8" not in name):
        return Protection(8 + 16)  # explicit nonce + tag
    if "CCM_8" in name:
        return Protection(8 + 8)
    if "CBC" in name:
        mac = 48 if name.endswith("SHA384") else 32 if name.endswith("SHA256") else 20
        block = 8 if "3DES" in name or "_DES_" in name or "IDEA" in name else CBC_BLOCK
        iv = block if dtls or version >= 0x0302 else 0  # TLS 1.0: implicit IV
        return Protection(iv, block, mac, etm)
    return None


# -- connections whose handshake is not in the capture ----------------------------------------------------------

#: The record protections a TLS connection of the AnyConnect protocol may use, for a connection that was already
#: up when the capture started (a ring buffer's later file, a capture started after the problem): no ServerHello
#: names its suite, so `guess_protection` tries each. Each gives a CSTP control frame (the 8-byte header alone) its
#: own record length: 25, 32, 24, 48, 52, 64, 80 bytes. (CBC with encrypt-then-MAC and HMAC-SHA256/384 gives the
#: same control length as without it and is left out: the DATA sizes would be within one block either way.)
GUESS_CANDIDATES = (
    ("TLS 1.3 AEAD", Protection(17)),
    ("TLS 1.2 AES-GCM", Protection(8 + 16)),
    ("TLS 1.2 ChaCha20-Poly1305", Protection(16)),
    ("TLS 1.1/1.2 AES-CBC-SHA1", Protection(CBC_BLOCK, CBC_BLOCK, 20)),
    ("TLS 1.1/1.2 AES-CBC-SHA1 encrypt-then-MAC", Protection(CBC_BLOCK, CBC_BLOCK, 20, True)),
    ("TLS 1.2 AES-CBC-SHA256", Protection(CBC_BLOCK, CBC_BLOCK, 32)),
    ("TLS 1.2 AES-CBC-SHA384", Protection(CBC_BLOCK, CBC_BLOCK, 48)),
)
#: the same for the DTLS channel (DTLS 1.2 and Cisco's 0x0100: explicit nonce or IV; a control packet is the type
#: byte alone: 25, 17, 48, 52, 64, 80 bytes)
DTLS_GUESS_CANDIDATES = (
    ("DTLS 1.2 AES-GCM", Protection(8 + 16)),
    ("DTLS 1.2 ChaCha20-Poly1305", Protection(16)),
    ("DTLS AES-CBC-SHA1", Protection(CBC_BLOCK, CBC_BLOCK, 20)),
    ("DTLS AES-CBC-SHA1 encrypt-then-MAC", Protection(CBC_BLOCK, CBC_BLOCK, 20, True)),
    ("DTLS 1.2 AES-CBC-SHA256", Protection(CBC_BLOCK, CBC_BLOCK, 32)),
    ("DTLS 1.2 AES-CBC-SHA384", Protection(CBC_BLOCK, CBC_BLOCK, 48)),
)
GUESS_MIN_CONTROL = 3  # control-size records a guessed protection needs (2 when the ServerHello names the suite)
#: plaintext bytes: the longest CSTP frame (header + an inner packet of a tunnel MTU, 1500 at most in practice,
#: with room to spare); a longer record (an HTTP/2 or bulk HTTPS record of up to 16 KiB) is no CSTP frame
MAX_CSTP_PLAINTEXT = CSTP_HEADER + 2048
MAX_SHORT_RECORDS = 2  # TLS 1.3: records too short for a CSTP frame (an alert, a KeyUpdate) a tunnel may carry


def control_records(sizes: dict, size: int) -> tuple[int, list[int]]:
    """(count, frames) of the records of exactly ``size`` bytes in ``sizes`` (direction -> [(ts, length, frame)])."""
    frames = sorted(fr for d in ("c2s", "s2c") for _ts, n, fr in sizes[d] if n == size)
    return len(frames), frames


def control_pattern(sizes: dict, size: int, least: int = 2, answered: bool = False) -> tuple[int, list[int]] | None:
    """Records of exactly ``size`` bytes (a CSTP control frame's protected length) in ``sizes`` (direction ->
    [(ts, length, frame)], in time order): (count, frames) when they form the DPD/keepalive pattern, else None.

    The pattern: a control-size record answered by one from the other side within 5 s (DPD request/response) and
    ``least`` of them in all, or — unless ``answered`` is asked for — ``least`` control-size records from one side
    with two of them at least 5 s apart (keepalives). HTTP traffic has no records of these exact sizes recurring
    like this."""
    ctl = {d: [(ts, fr) for ts, n, fr in sizes[d] if n == size] for d in ("c2s", "s2c")}
    pairs = any(0 <= b[0] - a[0] <= 5.0 for x, y in (("c2s", "s2c"), ("s2c", "c2s")) for a in ctl[x] for b in ctl[y])
    spaced = [d for d in ("c2s", "s2c") if len(ctl[d]) >= least and not answered
              and any(y[0] - x[0] >= 5.0 for x, y in zip(ctl[d], ctl[d][1:]))]
    n = len(ctl["c2s"]) + len(ctl["s2c"])
    if (pairs and n >= least) or spaced:
        return control_records(sizes, size)
    return None


def fits_cstp(prot: Protection, sizes: dict, whole: bool = False, header: int = CSTP_HEADER) -> bool:
    """Every record in ``sizes`` from the first of a control frame's size on can be a CSTP frame under ``prot``
    (``header``: `DTLS_TYPE_BYTE` for the DTLS channel's packets): a control frame, a DATA frame with an inner
    packet (at least an IPv4 header, at most a tunnel MTU), or — as the last record of its direction only — a
    DISCONNECT (a payload too short for a packet); CBC: every length a whole number of blocks. TLS 1.3 may carry
    an alert or a KeyUpdate (shorter than any CSTP frame) as well. (Records before it may be the end of the HTTP
    exchanges: a capture started between a reconnect's handshake and its CONNECT.) ``whole``: every record, from
    the first."""
    control = prot.record_length(header)
    start = min((ts for d in ("c2s", "s2c") for ts, n, _fr in sizes[d] if n == control), default=None)
    if start is None:
        return False
    if whole:
        start = float("-inf")
    short = 0
    for d in ("c2s", "s2c"):
        recs = sizes[d]
        last = len(recs) - 1
        for i, (ts, n, _fr) in enumerate(recs):
            if ts < start:
                continue
            if prot.block:
                body = n - prot.fixed - (prot.mac if prot.etm else 0)
                if body <= 0 or body % prot.block:
                    return False
            least, most = prot.plaintext(n)
            if most < header:
                short += 1
                if prot.block or prot.fixed != 17 or header != CSTP_HEADER or short > MAX_SHORT_RECORDS:
                    return False
            elif least > MAX_CSTP_PLAINTEXT:
                return False
            elif least > header and most - header < MIN_IP_PACKET and i != last:
                return False
    return True


def guess_protection(sizes: dict, candidates=GUESS_CANDIDATES, header: int = CSTP_HEADER,
                     known: bool = False) -> tuple[str, Protection] | None:
    """The protection of a TLS connection whose handshake is not in the capture, from its records' sizes
    (direction -> [(ts, length, frame)], in time order): the one candidate (`GUESS_CANDIDATES`) under which every
    record can be a CSTP frame and records of the control frame's exact size form the DPD pattern
    (`control_pattern`: at least `GUESS_MIN_CONTROL` of them, one answered in kind by the other side — keepalives
    from one side alone are not enough: an XMPP client's whitespace pings over TLS 1.2 AES-GCM are 25-byte records,
    a TLS 1.3 control frame's size). (name, Protection), or None when no candidate or more than one equally fits:
    the connection is then not read as a tunnel. The DTLS channel of a flow whose handshake was before the capture:
    ``candidates`` `DTLS_GUESS_CANDIDATES`, ``header`` `DTLS_TYPE_BYTE`. ``known``: the flow is known to be the
    AnyConnect protocol's already (its cut ClientHello resumed a 32-byte session id): two control-size records are
    enough, in any pattern (a client's unanswered DPD requests to a gateway that stopped answering)."""
    found = []
    for name, prot in candidates:
        if not fits_cstp(prot, sizes, header=header):
            continue
        size = prot.record_length(header)
        if known:
            pat = control_records(sizes, size)
            pat = pat if pat[0] >= 2 else None
        else:
            pat = control_pattern(sizes, size, GUESS_MIN_CONTROL, answered=True)
        if pat is not None:
            found.append((pat[0], name, prot))
    found.sort(key=lambda x: -x[0])
    if not found or (len(found) > 1 and found[1][0] == found[0][0]):
        return None
    return found[0][1], found[0][2]


def tls13_finished_length(prot: Protection, suite: str) -> int:
    """The record length of a TLS 1.3 Finished message (4-byte header + verify data of the hash's size)."""
    return prot.record_length(4 + (48 if suite.upper().endswith("SHA384") else 32))


@dataclass(slots=True)
class Direction:
    records: int = 0
    control: int = 0
    data: int = 0
    inner_bytes_least: int = 0
    inner_bytes_most: int = 0
    disconnect: int = 0  # records of a DISCONNECT's size (a payload too short for an IP packet)
    mtu_probes: int = 0  # DTLS: padded DPD requests and their answers (a record echoed at its exact size)


@dataclass(slots=True)
class TunnelEstimate:
    """Frame classes of an undecrypted tunnel (CSTP over TLS, or the DTLS channel), from record sizes."""

    header: int  # CSTP_HEADER or DTLS_TYPE_BYTE
    prot: Protection
    dirs: dict = field(default_factory=lambda: {"c2s": Direction(), "s2c": Direction()})
    control_answered: int = 0  # control frame answered in kind by the other side (a DPD exchange)
    control_unanswered: int = 0  # keepalives, and DPD requests without an answer
    _pending: dict = field(default_factory=dict)  # direction -> (ts, log entry) of an unanswered control frame
    #: [direction, frame, ts, class, silence, heard, received] of every control-class record (the first
    #: MAX_CONTROL_LOG): class DPD_REQ and DPD_RESP (a control record answered in kind), KEEPALIVE (not
    #: answered), DISCONNECT; silence: seconds since the other side's last record (None: none yet); heard
    #: (KEEPALIVE, DPD_RESP): when the other side's next record came (None: none came); received: CSTP over TLS,
    #: the other side answered a later control record of this side in kind (TCP delivers in order: it got this
    #: one too; `_received`)
    controls: list = field(default_factory=list)
    #: direction -> the shortest silence of the other side after which it sent a DPD request that was answered
    #: (at most its DPD interval, within the clients' one-second timer resolution: `refine`)
    dpd_silence: dict = field(default_factory=dict)
    _waiting: dict = field(default_factory=dict)  # direction -> its control entries the other side sent nothing after
    #: runs of unanswered DPD requests that end one side's traffic: {direction, first, last, requests, frames}
    dead_peer: list = field(default_factory=list)
    last_data: dict = field(default_factory=dict)  # direction -> ts of its last DATA-class record
    first_data: dict = field(default_factory=dict)  # direction -> ts of its first DATA-class record
    _first_ts: float | None = None
    #: DTLS only, made on first use (an estimate is kept for every undecrypted TLS connection: stay small):
    _probes: dict | None = None  # direction -> recent big DATA-class records
    #: record length -> the probe pairs of that length ((direction, frame, ts, least, most) of request and answer):
    #: a length echoed again and again is traffic (pings), not a probe (`_repeated_echoes`)
    _echoes: dict | None = None
    _early: list | None = None  # records of the probe period, for unanswered probe runs
    _last: dict = field(default_factory=dict)  # direction -> ts of its last record
    _last_data: dict = field(default_factory=dict)  # direction -> ts of its last record that is no control frame
    _last_frame: dict = field(default_factory=dict)  # direction -> ts of its last record big enough for a frame
    _answer: dict = field(default_factory=dict)  # direction -> its last DPD_RESP entry, until its next record
    #: direction -> its DPD_RESP entries followed by its own next record that was no control frame (it wrote on
    #: the connection after answering, without a second answer: `_received`), by frame
    _wrote_on: set = field(default_factory=set)

    @classmethod
    def from_sizes(cls, header: int, prot: Protection, sizes: dict) -> TunnelEstimate:
        """An estimate that starts with the records of ``sizes`` (direction -> [(ts, length, frame)]), taken in
        capture order (a protection guessed from them: `guess_protection`); later records are `add`-ed."""
        est = cls(header, prot)
        for ts, frame, direction, length in sorted((ts, frame, d, length) for d in ("c2s", "s2c")
                                                   for ts, length, frame in sizes[d]):
            est.add(direction, length, ts, frame)
        return est

    def last_frame(self, direction: str) -> float | None:
        """When ``direction`` sent its last record big enough to hold a tunnel frame (a TLS 1.3 close_notify, an
        alert, is not one), or None."""
        return self._last_frame.get(direction)

    def add(self, direction: str, length: int, ts: float, frame: int = 0) -> None:
        least, most = self.prot.plaintext(length)
        d = self.dirs[direction]
        d.records += 1
        other = "s2c" if direction == "c2s" else "c2s"
        for e in self._waiting.pop(other, ()):
            e[5] = ts
        silence = ts - self._last[other] if other in self._last else None
        self._last[direction] = ts
        if most < self.header:
            return  # shorter than a frame header: not a tunnel frame (or not what we think)
        self._last_frame[direction] = ts
        answer = self._answer.pop(direction, None)
        if least > self.header:
            self._last_data[direction] = ts
            if answer is not None:
                self._wrote_on.add((direction, answer[1]))
        else:  # (CBC: when the range includes a bare header, call it control)
            d.control += 1
            asked = self._pending.pop(other, None)
            if asked is not None and ts - asked[0] <= ANSWER_WINDOW:
                self.control_answered += 1
                asked[1][3] = "DPD_REQ"
                if asked[1][4] is not None and ts - asked[0] <= TIMER_ANSWER:
                    self.dpd_silence[other] = min(asked[1][4], self.dpd_silence.get(other, asked[1][4]))
                entry = self._log(direction, frame, ts, "DPD_RESP", silence)
                if len(self.controls) <= MAX_CONTROL_LOG:
                    self._waiting.setdefault(direction, []).append(entry)
                    self._answer[direction] = entry
            else:
                if direction in self._pending:
                    self.control_unanswered += 1
                entry = self._log(direction, frame, ts, "KEEPALIVE", silence)
                self._pending[direction] = (ts, entry)
                if len(self.controls) <= MAX_CONTROL_LOG:
                    self._waiting.setdefault(direction, []).append(entry)
            return
        if most - self.header < MIN_IP_PACKET:
            # a payload too short to be an IP packet: a DISCONNECT's reason (openconnect: b0 + text)
            d.disconnect += 1
            self._log(direction, frame, ts, "DISCONNECT")
            return
        if self._first_ts is None:
            self._first_ts = ts
        if self.header == DTLS_TYPE_BYTE and ts - self._first_ts <= PROBE_PERIOD:
            if least - self.header > MTU_PROBE_MIN and self._probe(direction, length, ts, frame):
                return
            if self._early is None:
                self._early = []
            if len(self._early) < 400:
                self._early.append([direction, ts, length, frame, least, most])
        d.data += 1
        d.inner_bytes_least += least - self.header
        d.inner_bytes_most += most - self.header
        self.last_data[direction] = ts
        self.first_data.setdefault(direction, ts)

    def rehandshake(self) -> None:
        """A new handshake on the channel (a DTLS rekey: its records protected under the current epoch): clients
        probe the MTU again after it, so the probe period starts again with the next record that can carry data."""
        self._first_ts = None

    def _probe(self, direction: str, length: int, ts: float, frame: int) -> bool:
        """DTLS MTU probes: a big record answered from the other side by one of exactly its length within
        PROBE_WINDOW (a padded DPD request and its echo). True when this record is such an answer; the request,
        counted as DATA when it came, is moved to the probes."""
        other = "s2c" if direction == "c2s" else "c2s"
        if self._probes is None:
            self._probes = {"c2s": [], "s2c": []}
        for i, (t0, n, fr, least, most) in enumerate(self._probes[other]):
            if n == length and 0 <= ts - t0 <= PROBE_WINDOW:
                del self._probes[other][i]
                self._early = [e for e in self._early or () if not (e[0] == other and e[3] == fr and e[1] == t0)]
                asked = self.dirs[other]
                asked.data -= 1
                asked.inner_bytes_least -= least - self.header
                asked.inner_bytes_most -= most - self.header
                asked.mtu_probes += 1
                self.dirs[direction].mtu_probes += 1
                self._log(other, fr, t0, "MTU_PROBE")
                self._log(direction, frame, ts, "MTU_PROBE")
                if self._echoes is None:
                    self._echoes = {}
                self._echoes.setdefault(length, []).append(
                    ((other, fr, t0, least, most), (direction, frame, ts) + self.prot.plaintext(length)))
                return True
        least, most = self.prot.plaintext(length)
        q = self._probes[direction]
        q.append((ts, length, frame, least, most))
        if len(q) > 16:
            del q[0]
        return False

    def _log(self, direction: str, frame: int, ts: float, kind: str, silence: float | None = None) -> list:
        entry = [direction, frame, ts, kind, silence, None, False]
        if len(self.controls) < MAX_CONTROL_LOG:
            self.controls.append(entry)
        return entry

    def classes(self) -> dict:
        """Records per class and direction: DATA, DPD_REQ, DPD_RESP, KEEPALIVE (unanswered control), DISCONNECT."""
        out = {"c2s": {}, "s2c": {}}
        for d, dd in self.dirs.items():
            if dd.data:
                out[d]["DATA"] = dd.data
        for e in self.controls:
            direction, kind = e[0], e[3]
            out[direction][kind] = out[direction].get(kind, 0) + 1
        return out

    def forget(self, direction: str, length: int) -> None:
        """Take back one record counted by `add` (a record before the tunnel: an HTTP request or answer)."""
        least, most = self.prot.plaintext(length)
        d = self.dirs[direction]
        d.records -= 1
        if most < self.header:
            return
        if least <= self.header:
            d.control -= 1
        elif most - self.header < MIN_IP_PACKET:
            d.disconnect -= 1
        else:
            d.data -= 1
            d.inner_bytes_least -= least - self.header
            d.inner_bytes_most -= most - self.header

    def _repeated_echoes(self) -> None:
        """A record length echoed `MAX_PROBE_REPEATS` times or more is traffic of one size both ways (pings of a
        fixed size: an echo reply has the request's length), not MTU probes — a client's search for the MTU tries
        each size once (again only when it got no answer). Its pairs go back to DATA."""
        undo = set()
        for pairs in (self._echoes or {}).values():
            if len(pairs) < MAX_PROBE_REPEATS:
                continue
            for pair in pairs:
                for direction, frame, ts, least, most in pair:
                    d = self.dirs[direction]
                    d.mtu_probes -= 1
                    d.data += 1
                    d.inner_bytes_least += least - self.header
                    d.inner_bytes_most += most - self.header
                    if ts > self.last_data.get(direction, ts - 1):
                        self.last_data[direction] = ts
                    if ts < self.first_data.get(direction, ts + 1):
                        self.first_data[direction] = ts
                    undo.add((direction, frame))
        if undo:
            self.controls = [e for e in self.controls if not (e[3] == "MTU_PROBE" and (e[0], e[1]) in undo)]
        self._echoes = None

    def _unanswered_probes(self) -> None:
        """DTLS MTU probes nobody answered: a run of three or more big records from one side, each within a second
        of the last and none longer than the one before, the first three strictly shrinking (the binary search of
        a client whose probes are lost), nothing big from the other side in between (its small records — a DPD
        exchange of its own, an acknowledgement — and the probes it answered, taken out before, do not end a run:
        the lab's both-sides-mtu-blackhole)."""
        runs: list = []
        for e in self._early or ():
            big = e[4] - self.header > MTU_PROBE_MIN
            run = runs[-1] if runs else None
            if run and not big and e[0] != run[-1][0]:
                continue  # the peer's small record: the search goes on
            if run and big and run[-1][0] == e[0] and e[1] - run[-1][1] <= PROBE_WINDOW and e[2] <= run[-1][2]:
                run.append(e)
            else:
                runs.append([e] if big else [])
        for run in runs:
            # a binary search starts by halving: the first three strictly shrinking (a bulk transfer's run of
            # full-size records does not)
            if len(run) < 3 or not run[0][2] > run[1][2] > run[2][2]:
                continue
            for direction, ts, _n, frame, least, most in run:
                d = self.dirs[direction]
                d.data -= 1
                d.inner_bytes_least -= least - self.header
                d.inner_bytes_most -= most - self.header
                d.mtu_probes += 1
                self._log(direction, frame, ts, "MTU_PROBE")
        self._early = None

    def _dead_peer(self, until: float | None = None) -> None:
        """Unanswered control frames that end one side's traffic while the other side sends no data any more are
        DPD requests to a peer that no longer answers (keepalives come and go with traffic around them; over TLS, one
        followed by an answered DPD request of its side reached a live peer: `_received`). At least two of them
        must have had `ANSWER_WINDOW` seconds of capture after them (``until``: the capture's end): a capture that
        stops right after an idle client's keepalive and its next DPD request has not seen the answer that came
        after it."""
        for direction, other in (("c2s", "s2c"), ("s2c", "c2s")):
            since = self._last_data.get(direction)
            # (a DPD request follows the peer's silence on the channel for the DPD interval: one sent sooner than
            # MIN_DPD_SILENCE after the peer's last record is a keepalive)
            run = [e for e in self.controls if e[0] == direction and e[3] == "KEEPALIVE" and not e[6]
                   and (since is None or e[2] > since) and (e[4] is None or e[4] >= MIN_DPD_SILENCE)]
            heard = self._last_data.get(other)
            if until is not None and sum(1 for e in run if until - e[2] >= ANSWER_WINDOW) < 2:
                continue
            if len(run) >= 2 and (heard is None or heard < run[0][2]):
                for e in run:
                    e[3] = "DPD_REQ"
                self.dead_peer.append({"direction": direction, "first": run[0][2], "last": run[-1][2],
                                       "requests": len(run), "frames": [e[1] for e in run][:10]})

    def refine(self, direction: str, silence: float, kept: float | None = None) -> None:
        """Unanswered control records of ``direction`` that came after at least ``silence`` seconds without a record
        from the other side are DPD requests (keepalives stay those sent sooner). ``silence``: the shortest
        silence after which that side sent a DPD request that was answered (`dpd_silence`, of this channel or
        of another channel of the session: `share_dpd_timers`). A client sends a DPD request once nothing came for
        its DPD interval, a keepalive once it sent nothing for its keepalive interval; the timers count whole
        seconds, so an answered request shows the interval to within a second, and a keepalive sent before that
        silence cannot be a DPD request. ``kept``: the longest silence after which that side sent a control record
        the peer got and left unanswered (a keepalive: `_received`, `kept_silence`; of any channel of the
        session): its DPD timer had not fired by then, so one sent after no longer a silence stays a keepalive."""
        kept = max((x for x in (kept, self.kept_silence(direction)) if x is not None), default=None)
        for e in self.controls:
            if (e[0] == direction and e[3] == "KEEPALIVE" and e[4] is not None and e[4] >= silence and not e[6]
                    and (kept is None or e[4] > kept)):
                e[3] = "DPD_REQ"

    def kept_silence(self, direction: str) -> float | None:
        """The longest silence of the peer after which ``direction`` sent a control record the peer got and left
        unanswered (a keepalive: `_received`), None when there is none."""
        return max((e[4] for e in self.controls if e[0] == direction and e[3] == "KEEPALIVE" and e[6]
                    and e[4] is not None), default=None)

    def peer_silent(self, direction: str, since: float, until: float) -> None:
        """The peer of ``direction`` was silent on another channel of the session from ``since`` until ``until``,
        when ``direction`` ended its traffic there with DPD requests: its unanswered control records here in that
        time, after its last data here, with no record from the peer here until ``until``, are DPD requests."""
        sent = self._last_data.get(direction)
        for x in self.controls:
            if (x[0] == direction and x[3] == "KEEPALIVE" and since <= x[2] <= until and not x[6]
                    and (sent is None or x[2] > sent) and (x[5] is None or x[5] > until)):
                x[3] = "DPD_REQ"

    def _received(self) -> None:
        """An unanswered control record that the peer got and left unanswered is a keepalive, whatever the silence
        before it (`refine`, `_dead_peer` and `peer_silent` leave it so): a peer answers every DPD request it gets,
        at once.

        * CSTP over TLS: TCP delivers the records in order, so one followed by an answered DPD request of the same
          side was received, when the connection went on after the answer — the asking side sent again, or the
          answering side's next record there was no control frame (it wrote on the connection after answering,
          with no second answer pending: a DISCONNECT, data) — and not a peer that answered one request from a
          backlog as the connection died.
        * DTLS: a datagram may be lost, so only one between two DPD requests of its side that the peer answered
          within a round trip (`TIMER_ANSWER`), the earlier answer at most `ANSWER_WINDOW` before it and the later
          request at most `ANSWER_WINDOW` after it: the peer answered its side's requests just before and just
          after, and sent in between (the path was up).
        """
        if self.header != CSTP_HEADER:
            self._between_answers()
            return
        later = {"c2s": False, "s2c": False}  # a DPD request of this side answered later, the connection going on
        for e in reversed(self.controls):
            if e[3] == "DPD_RESP" and (e[5] is not None or (e[0], e[1]) in self._wrote_on):
                later["s2c" if e[0] == "c2s" else "c2s"] = True
            elif e[3] == "KEEPALIVE":
                e[6] = later[e[0]]

    def _between_answers(self) -> None:
        """DTLS: unanswered control records between two promptly answered DPD requests of their side (`_received`)."""
        # (request, answer) pairs answered within a round trip, per asking side, in order
        pairs: dict = {"c2s": [], "s2c": []}
        asked: dict = {}
        for e in self.controls:
            if e[3] == "DPD_REQ":
                asked[e[0]] = e
            elif e[3] == "DPD_RESP":
                side = "s2c" if e[0] == "c2s" else "c2s"
                q = asked.pop(side, None)
                if q is not None and e[2] - q[2] <= TIMER_ANSWER:
                    pairs[side].append((q, e))
        for e in self.controls:
            if e[3] != "KEEPALIVE" or e[6]:
                continue
            before = [p for p in pairs[e[0]] if p[1][2] <= e[2]]
            after = [p for p in pairs[e[0]] if p[0][2] > e[2]]
            if (before and after and e[2] - before[-1][1][2] <= ANSWER_WINDOW
                    and after[0][0][2] - e[2] <= ANSWER_WINDOW):
                e[6] = True

    def finish(self, until: float | None = None) -> None:
        """Class what only the whole channel tells; ``until``: when the capture ends (its last frame)."""
        self._repeated_echoes()
        self._unanswered_probes()
        self._received()
        self._dead_peer(until)
        for direction, silence in self.dpd_silence.items():
            self.refine(direction, silence)
        self.control_unanswered += len(self._pending)
        self._pending.clear()


def share_dpd_timers(estimates) -> None:
    """The keyless estimates of one session's channels (its CSTP tunnel connections and DTLS flows), finished:
    what one channel shows of a side's DPD timer holds on the others.

    * The shortest silence after which a side sent an answered DPD request (`TunnelEstimate.dpd_silence`) on
      any channel is that side's DPD interval to within a second (the clients use one interval for CSTP and
      DTLS, each channel timed on its own): its unanswered control records after a silence at least that long
      are DPD requests on every channel (`TunnelEstimate.refine`).
    * A run of DPD requests that ends a side's traffic on one channel while the peer is silent (`dead_peer`):
      that side's unanswered control records on another channel sent during the same silence, after its last
      data there, with no record from the peer there until the run ended, are DPD requests too — the peer went
      silent on both channels at once and the DPD timer fires on each.
    """
    ests = [e for e in estimates if e is not None]
    for direction in ("c2s", "s2c"):
        known = [e.dpd_silence[direction] for e in ests if direction in e.dpd_silence]
        kept = max((x for x in (e.kept_silence(direction) for e in ests) if x is not None), default=None)
        if known:
            for e in ests:
                e.refine(direction, min(known), kept)
    for e in ests:
        for run in e.dead_peer:
            side = run["direction"]
            first = next((x for x in e.controls if x[0] == side and x[1] == run["frames"][0]), None)
            if first is None or first[4] is None:
                continue
            since = run["first"] - first[4]  # the peer's last record on the run's channel
            for o in ests:
                if o is not e:
                    o.peer_silent(side, since, run["last"])
