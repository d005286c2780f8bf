"""TLS_ALERT (warning for fatal alerts, info otherwise): alerts in the session's TLS and DTLS connections.

Fact: RFC 8446 §6 / RFC 5246 §7.2 — alerts close or warn about a connection; close_notify is the normal end of
a connection and is not reported. An encrypted alert without keys that its sender follows within 1 s by FIN or
RST is that normal close (close_notify) and is not reported either; other encrypted alerts are reported as
"encrypted alert".
"""
from __future__ import annotations

from ..model import Finding
from ..phases.dtls import DTLSDetails
from ..phases.tls_handshake import ConnectionSummary, TLSAlert

RULE_IDS = ("TLS_ALERT",)


CLOSE_WINDOW = 1.0  # seconds: an encrypted alert this close to its sender's FIN (or RST) is the normal close


def _closing(alert: TLSAlert, conn: ConnectionSummary) -> bool:
    """An encrypted (unreadable) alert followed at once by its sender closing the connection: close_notify."""
    if alert.level is not None or alert.name not in (None, "encrypted alert", "encrypted_alert"):
        return False
    t = alert.time
    return t is not None and any(c.get("direction") == alert.direction and 0 <= c["ts"] - t <= CLOSE_WINDOW
                                 for c in conn.closed)


def check(session, ctx):
    out = []
    alerts = []
    for c in session.connections:
        if not isinstance(c, ConnectionSummary):
            continue  # a DTLS flow: its alerts are in the dtls phase
        for a in c.alerts:
            if _closing(a, c):
                continue  # the normal close: an encrypted close_notify, then FIN (shown in the connection list)
            alerts.append(dict(a.to_json(), connection=c.connection))
    dtls = session.phase("dtls").details
    for f in dtls.flow_list if isinstance(dtls, DTLSDetails) else []:
        alerts += [dict(a, dtls=True) for a in f.alerts]
    for a in alerts:
        name = a.get("name") or "encrypted alert"
        if name == "close_notify":
            continue
        fatal = a.get("level") == 2
        who = "client" if a.get("direction") == "c2s" else "gateway"
        out.append(Finding(
            id="TLS_ALERT", severity="warning" if fatal else "info",
            phase="dtls" if a.get("dtls") else "tls-handshake", time=a.get("time") or a.get("ts"),
            frames=[a["frame"]] if a.get("frame") else [],
            message=f"The {who} sent a {'fatal ' if fatal else ''}{'DTLS' if a.get('dtls') else 'TLS'} alert: {name}"
                    + (f" on {a['connection']}" if a.get("connection") else "") + ".",
            remedy={"handshake_failure": "No cipher suite/version in common: compare the client's offer with the "
                                         "gateway's TLS settings.",
                    "bad_certificate": "The peer rejected a certificate: check the client certificate and its CA.",
                    "unknown_ca": "The peer does not trust the certificate's CA.",
                    "certificate_expired": "A certificate in the exchange has expired.",
                    "decrypt_error": "Keys or signatures did not verify: a middlebox may alter the traffic.",
                    "access_denied": "The gateway refused access (e.g. bad or expired cookie on a later request).",
                    }.get(name, "See the alert description; it names what the sender objected to."),
            evidence={"alert": name, "level": a.get("level"), "direction": a.get("direction")}))
    return out
