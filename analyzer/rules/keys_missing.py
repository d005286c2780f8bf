"""KEYS_MISSING (info): which phases stayed undecrypted and which key would unlock them.

Fact: phases 2–5 travel inside TLS; an NSS key log (SSLKEYLOGFILE) with the session's CLIENT_RANDOM (TLS 1.2)
or traffic secrets (TLS 1.3), or the gateway's RSA key for TLS_RSA_* suites, decrypts them. DTLS keys come from
the decrypted CONNECT exchange; for PSK-NEGOTIATE over TLS 1.3 the key log must hold EXPORTER_SECRET.
"""
from __future__ import annotations

import re

from ..model import Finding
from ..phases.tls_handshake import TLSHandshakeDetails

RULE_IDS = ("KEYS_MISSING",)


def _keyed_elsewhere(phase) -> bool:
    """The DTLS phase's client Finished failed authentication with the keys acflow derived for it."""
    flows = getattr(phase.details, "flow_list", None) or []
    for f in flows:
        fin = f.finished if isinstance(getattr(f, "finished", None), dict) else {}
        mine = fin.get("c2s")
        if mine is not None and mine.verified is False:
            return True
    return False


def check(session, ctx):
    if any(getattr(c, "truncated_frames", 0) for c in session.connections):
        return []  # packets cut short by the capture: no key helps (CAPTURE_TRUNCATED says so)
    # (a DTLS channel whose client Finished fails with the keys derived from the session's TLS is not short of
    # keys: the client keyed it from another TLS session — DTLS_PSK_MISMATCH says so)
    phases = [p for p in session.phases
              if p.status == "undecrypted" and not (p.phase == "dtls" and _keyed_elsewhere(p))]
    before = [p for p in session.phases if p.status == "before-capture"]
    if not phases and not (before and any(p.status == "before-capture" and p.phase in ("cstp-connect", "dtls")
                                          for p in before)) and not (
            session.phase("tls-handshake").status == "not-captured" and session.phase("dtls").status not in
            ("ok", "absent", "failed")):
        return []
    tls = session.phase("tls-handshake").details
    tls = tls if isinstance(tls, TLSHandshakeDetails) else None
    sh = tls.server_hello or None if tls is not None else None
    ch = tls.client_hello or None if tls is not None else None
    suite = sh.cipher_suite if sh is not None else None
    reasons = {k: v.get("reason") for k, v in (tls.decryption if tls is not None else {}).items() if v}
    names = [p.phase for p in phases]
    if session.phase("tls-handshake").status == "not-captured":
        # only the DTLS channel is in the capture: its keys come from the CONNECT exchange (legacy master secret)
        # or the TLS connection's exporter (PSK-NEGOTIATE), neither of which is in it
        return [_no_key_helps(session, (phases or before or session.phases)[-1].phase, names,
                              "The capture holds this session's DTLS channel but not its TLS connection",
                              ": the DTLS keys come from that connection's CONNECT exchange, so no key log can "
                              "decrypt the channel from this capture.",
                              "Capture TCP too (a capture filter such as 'udp port 443' drops the TLS connection), "
                              "from before the client connects, and supply the key log written then.",
                              {"cipher_suite": None, "reasons": reasons, "client_hello_captured": False,
                               "tls_captured": False})]
    if not ch:
        # no ClientHello in the capture: a key log is indexed by the ClientHello's random, so no key can be
        # matched to this connection, whatever the user supplies
        return [_no_key_helps(session, (phases or before)[0].phase, names,
                              "The session's TLS connection started before the capture",
                              ": its keys cannot be matched, because a key log names each TLS session by the random "
                              "of its ClientHello, which the capture does not hold.",
                              "Start the capture before the client connects (or reconnect the client while "
                              "capturing) and supply the key log written during that connection.",
                              {"cipher_suite": suite, "reasons": reasons, "client_hello_captured": False})]
    if not phases:
        return []
    if names == ["dtls"] and _dtls_hello_missed(phases[0]):
        # the TLS is decrypted, and the DTLS handshake is in the capture but not its ClientHello: its random goes
        # into the DTLS keys, so nothing the user supplies decrypts the channel
        flows = [f for f in phases[0].details.flow_list if getattr(f, "client_hello_count", 0) == 0]
        return [_no_key_helps(session, "dtls", names,
                              "The capture misses the DTLS ClientHello of this session's channel ("
                              + ", ".join(f.connection for f in flows[:3]) + ")",
                              ": the DTLS keys are made from its random, so no key decrypts the channel from this "
                              "capture (the capture's own loss: the handshake's other messages are in it).",
                              "Capture with a bigger buffer (dumpcap -B) or on a less busy host so that it drops "
                              "no packets; the TLS connection's keys are fine.",
                              {"cipher_suite": suite, "reasons": reasons, "client_hello_captured": True,
                               "dtls_client_hello_captured": False})]
    if suite and "TLS_RSA_" in suite:
        key = "the gateway's RSA private key (--rsa-key) or a key log with its CLIENT_RANDOM line (--keylog)"
    elif sh is not None and sh.version == "TLS 1.3":
        key = "a key log (--keylog) with the TLS 1.3 traffic secrets (and EXPORTER_SECRET for DTLS PSK)"
    else:
        key = "a key log (--keylog) with the CLIENT_RANDOM line of this session"
    wrong = any("wrong key" in (r or "") for r in reasons.values())
    why = " The key material given does not decrypt this session (wrong key)." if wrong else ""
    remedy = f"Supply {key}; the session's ClientHello is frame {ch.frame}."
    evidence = {"phases": names, "cipher_suite": suite or None, "reasons": reasons, "client_hello_captured": True}
    random = _client_random(reasons)
    if not wrong and random is not None:
        given = []
        cert = (tls.certificates or [{}])[0] if tls is not None else {}
        no_match = any("no RSA private key matches" in (r or "") for r in reasons.values())
        if suite and "TLS_RSA_" in suite and ctx.rsa_keys and no_match:
            # the RSA key exchange failed with every key given: none is the certificate's key
            where = f" in frame {cert['frame']}" if cert.get("frame") else ""
            subject = f" ({cert['subject']})" if cert.get("subject") else ""
            files = ", ".join(ctx.rsa_keys)
            if len(ctx.rsa_keys) == 1:
                given.append(f"the RSA key {files} does not match the certificate{where}{subject}")
            else:
                given.append(f"none of the RSA keys ({files}) matches the certificate{where}{subject}")
            remedy = (f"Supply the private key of the certificate the gateway sent{where}{subject}, or a key log "
                      f"with this session's CLIENT_RANDOM line; the session's ClientHello is frame {ch.frame}.")
            evidence["rsa_key_matches_certificate"] = False
            evidence["certificate_frame"] = cert.get("frame")
        if ctx.keylog_entries and random not in ctx.keylog_randoms:
            n = ctx.keylog_entries
            given.append(f"the key log has {n} {'entry' if n == 1 else 'entries'}, none for this session's "
                         f"ClientHello random {random.hex()} (frame {ch.frame})")
            remedy = (f"Supply the key log the client wrote during this connection (SSLKEYLOGFILE set before it "
                      f"connected): the one given is for other TLS sessions. {remedy}")
            evidence["keylog_entries"] = n
            evidence["keylog_has_client_random"] = False
        if given:
            why = " " + "; ".join(given)[:1].upper() + "; ".join(given)[1:] + "."
    # live: acflow parks the records of a connection until the key log has its keys, up to a limit
    if any("past its limit" in (r or "") for r in reasons.values()):
        why += (" acflow live held this connection's records waiting for its keys until its buffer limit was "
                "reached; the key log did not have them by then.")
        remedy += (" Let the client write its key log (SSLKEYLOGFILE) as it connects, or analyse the capture "
                   "written with --write afterwards with the key log.")
        evidence["keys_waited_past_limit"] = True
    return [Finding(id="KEYS_MISSING", severity="info", phase=phases[0].phase, time=session.start, frames=[],
                    message=f"Not decrypted: {', '.join(names)}" + (f" ({suite})" if suite else "") + f".{why}",
                    remedy=remedy, evidence=evidence)]


_RANDOM = re.compile(r"client random ([0-9a-f]{64})")


def _dtls_hello_missed(phase) -> bool:
    """A DTLS channel whose handshake the capture holds (a ServerHello) but not the ClientHello it answered."""
    flows = getattr(phase.details, "flow_list", None) or []
    return bool(flows) and all(getattr(f, "client_hello_count", 0) == 0 and getattr(f, "server_hello", None)
                               for f in flows)


def _client_random(reasons: dict) -> bytes | None:
    """The ClientHello random the TLS layer named when it found no key for the session."""
    for r in reasons.values():
        m = _RANDOM.search(r or "")
        if m:
            return bytes.fromhex(m.group(1))
    return None


def _no_key_helps(session, phase: str, names: list, what: str, why: str, remedy: str, evidence: dict) -> Finding:
    """KEYS_MISSING for a session no key log can decrypt from this capture: ``what`` (the phases not decrypted)
    ``why``."""
    return Finding(id="KEYS_MISSING", severity="info", phase=phase, time=session.start, frames=[],
                   message=what + (f" (not decrypted: {', '.join(names)})" if names else "") + why,
                   remedy=remedy, evidence={"phases": names, **evidence})
