"""`acflow diff`: a regression diff of the VPN sessions of two analyses (pure: JSON documents in, a diff out).

Both sides are report documents as `acflow analyze --format json` writes them (docs/json-schema.md; a capture is
analysed into one first, by the CLI edge `analyzer/diff_run.py`). Each session is reduced to *facts*: a field
name (``cstp.response.X-CSTP-MTU``, ``dtls.mode``, ``finding.MTU_EXCEEDED``…), where it was seen (``CONNECT
/CSCOSSLC/tunnel #1``…) and a comparable value. Sessions are paired, their facts compared; what differs is a
change, unless the field is volatile (differs on every run: cookies, secrets, STRAP keys, DTLS app id…), within
its tolerance (timings, rekey countdowns) or ignored by the user (``--ignore``, a glob on the field name).

Tolerances are documented in docs/diff.md; a timing differs only when the change exceeds both its absolute and
its relative tolerance. Nothing here reads a file, a socket or the clock.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

#: Headers whose value differs on every run of the same session: never compared (lower case).
VOLATILE_HEADERS = frozenset({
    "cookie", "set-cookie", "x-dtls-master-secret", "x-dtls-app-id", "x-dtls-session-id", "x-pad",
    "content-length", "date", "x-anyconnect-strap-pubkey", "x-anyconnect-strap-dh-pubkey",
    "x-anyconnect-strap-verify", "x-dtls-header-pad-length", "x-cstp-session-timeout-remaining",
})

#: Headers and tunnel parameters that count down (seconds): equal within REKEY_TOLERANCE seconds.
COUNTDOWN_FIELDS = frozenset({"x-cstp-rekey-time", "x-dtls-rekey-time", "rekey_time"})
REKEY_TOLERANCE = 300.0

#: Tunnel parameters that differ on every run (the DTLS application id is a fresh random value).
VOLATILE_PARAMETERS = frozenset({"dtls_app_id", "dtls_session_id"})

#: Timings: (absolute seconds, relative fraction of the baseline). A timing differs when the change is larger
#: than both. Documented in docs/diff.md.
TIMING_TOLERANCES: dict[str, tuple[float, float]] = {
    "timing.tls_handshake": (0.5, 1.0),
    "timing.auth": (1.0, 1.0),
    "timing.connect": (0.5, 1.0),
    "timing.dtls_establishment": (1.0, 1.0),
    "timing.dpd_rtt": (0.25, 1.0),
}


@dataclass
class Change:
    field: str  # the field's name (what --ignore matches)
    where: str  # which exchange / flow ("" for session-wide facts)
    kind: str  # "changed", "added" (only in NEW), "removed" (only in BASELINE)
    baseline: object = None
    new: object = None
    tolerance: str | None = None  # for timings and countdowns: the tolerance applied

    def to_json(self) -> dict:
        d = {"field": self.field, "where": self.where, "kind": self.kind, "baseline": self.baseline,
             "new": self.new}
        if self.tolerance:
            d["tolerance"] = self.tolerance
        return d


@dataclass
class Pair:
    baseline: str | None  # session id in BASELINE (None: only in NEW)
    new: str | None
    label: str  # "s1 ↔ s1 (group …)"
    changes: list[Change] = field(default_factory=list)
    within_tolerance: list[Change] = field(default_factory=list)
    ignored: list[Change] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"baseline": self.baseline, "new": self.new, "label": self.label,
                "changes": [c.to_json() for c in self.changes],
                "within_tolerance": [c.to_json() for c in self.within_tolerance],
                "ignored": [c.to_json() for c in self.ignored]}


@dataclass
class DiffResult:
    baseline: dict  # {"path", "sessions"}
    new: dict
    pairs: list[Pair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    capture_changes: list[Change] = field(default_factory=list)  # capture-wide findings

    @property
    def differs(self) -> bool:
        return bool(self.capture_changes) or any(p.changes for p in self.pairs)

    def to_json(self, version: str) -> dict:
        return {"acflow": version, "kind": "acflow-diff", "verdict": "differs" if self.differs else "same",
                "baseline": self.baseline, "new": self.new, "ignore": list(self.ignore), "notes": list(self.notes),
                "capture_changes": [c.to_json() for c in self.capture_changes],
                "pairs": [p.to_json() for p in self.pairs]}


# -- facts --------------------------------------------------------------------------------------------------------

_REDACTED_MARK = "redacted"


def _phase(s: dict, name: str) -> dict:
    for p in _L(s.get("phases")):
        if p.get("phase") == name:
            return p
    return {}


def _details(s: dict, name: str) -> dict:
    d = _phase(s, name).get("details")
    return d if isinstance(d, dict) else {}


def _L(x) -> list:
    """x when it is a list (of dicts), else []: a damaged or hand-edited report never makes the diff crash."""
    return [i for i in x if isinstance(i, dict)] if isinstance(x, list) else []


def _list(x) -> list:
    return x if isinstance(x, list) else []


def _D(x) -> dict:
    return x if isinstance(x, dict) else {}


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _headers(items) -> dict[str, tuple[str, list[str]]]:
    """lower-case name → (name as first written, [values in order])."""
    out: dict[str, tuple[str, list[str]]] = {}
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            continue
        name, value = str(item[0]), str(item[1])
        out.setdefault(name.lower(), (name, []))[1].append(value)
    return out


class _Facts:
    """An ordered map (field, where) → value, with the field's display name."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], object] = {}
        self.names: dict[tuple[str, str], str] = {}

    def add(self, name: str, where: str, value) -> None:
        if value is None:
            return
        key = (name.lower(), where)
        self.values[key] = value
        self.names.setdefault(key, name)


def _exchange_labels():
    seen: dict[str, int] = {}

    def label(method: str, target) -> str:
        base = f"{method} {target or '?'}"
        seen[base] = seen.get(base, 0) + 1
        return f"{base} #{seen[base]}"

    return label


def _header_facts(f: _Facts, prefix: str, where: str, items) -> None:
    for low, (name, values) in _headers(items).items():
        if low in VOLATILE_HEADERS:
            continue
        f.add(f"{prefix}.{name}", where, values[0] if len(values) == 1 else values)


#: the JSON key of an exchange's fact where it is not the fact name's last part
_FACT_KEYS = {"auth.form": "form_fields"}


def _item_facts(f: _Facts, where: str, item: dict, *names: str) -> None:
    """The facts ``names`` of one exchange ``item`` (a POST, a GET, a CONNECT): ``prefix.key`` is ``item[key]``."""
    for name in names:
        f.add(name, where, item.get(_FACT_KEYS.get(name, name.rpartition(".")[2])))


def session_facts(s: dict) -> tuple[_Facts, dict[str, float]]:
    """The comparable facts of one session of a report document, and its timings (seconds)."""
    f = _Facts()
    timings: dict[str, float] = {}
    label = _exchange_labels()

    f.add("session.confidence", "", s.get("confidence"))
    sw = _D(s.get("client_software"))
    if sw.get("name"):
        f.add("session.client_software", "", " ".join(str(x) for x in (sw.get("name"), sw.get("version")) if x))

    started = [(p.get("start"), p.get("phase")) for p in _L(s.get("phases"))
               if p.get("status") not in (None, "absent") and _num(p.get("start")) is not None]
    f.add("phases.order", "", [name for _, name in sorted(started, key=lambda x: x[0])])
    for p in _L(s.get("phases")):
        f.add(f"phase.{p.get('phase')}", "", p.get("status"))

    # phase 1: TLS handshake
    tls = _details(s, "tls-handshake")
    ch = _D(tls.get("client_hello"))
    sh = _D(tls.get("server_hello"))
    f.add("tls.sni", "", ch.get("sni"))
    f.add("tls.alpn_offered", "", ch.get("alpn") or None)
    f.add("tls.max_version_offered", "", ch.get("max_version"))
    f.add("tls.version", "", sh.get("version"))
    f.add("tls.cipher_suite", "", sh.get("cipher_suite"))
    f.add("tls.alpn", "", sh.get("alpn"))
    f.add("tls.resumed", "", sh.get("resumed"))
    certs = _L(tls.get("certificates"))
    if certs and isinstance(certs[0], dict):
        f.add("tls.certificate.subject", "", certs[0].get("subject"))
        f.add("tls.certificate.sha256", "", certs[0].get("sha256"))
    f.add("tls.certificate_verdicts", "", sorted(str(v.get("verdict", v)) if isinstance(v, dict) else str(v)
                                                 for v in _list(tls.get("certificate_verdicts"))) or None)
    f.add("tls.alerts", "", [a.get("name") for a in _L(tls.get("alerts")) if isinstance(a, dict)] or None)
    p1 = _phase(s, "tls-handshake")
    if _num(p1.get("start")) is not None and _num(p1.get("end")) is not None:
        timings["timing.tls_handshake"] = p1["end"] - p1["start"]

    # phase 2: group selection
    g = _details(s, "group-selection")
    for post in _L(g.get("posts")):
        where = label("POST", post.get("target"))
        _item_facts(f, where, post, "http.status", "http.response_type", "group.aggregate_auth_version",
                    "group.client_version", "group.device_id", "group.group_select", "group.server_version")
        _header_facts(f, "http.request", where, post.get("headers"))
        _header_facts(f, "http.response", where, post.get("response_headers"))
    f.add("group.list", "", g.get("group_list") or None)
    f.add("group.default", "", g.get("default_group"))
    f.add("group.selected", "", g.get("group_selected"))
    f.add("group.aggregate_auth_version_answered", "", g.get("aggregate_auth_version_answered"))
    f.add("group.version_fallback", "", g.get("version_fallback") or None)
    f.add("group.fallback_to_form", "", g.get("fallback_to_form") or None)

    # phase 3: user authentication
    a = _details(s, "user-auth")
    f.add("auth.mode", "", a.get("mode"))
    f.add("auth.result", "", a.get("result"))
    f.add("auth.rounds", "", len(_L(a.get("rounds"))) or None)
    f.add("auth.failure_message", "", a.get("failure_message"))
    f.add("auth.profile_manifest", "", [m.get("uri") for m in _L(a.get("profile_manifest"))
                                        if isinstance(m, dict)] or None)
    for r in _L(a.get("rounds")):
        _item_facts(f, label("POST", r.get("target")), r, "http.status", "http.response_type", "auth.type",
                    "auth.fields", "auth.group_select", "auth.auth_id", "auth.message", "auth.error", "auth.form",
                    "auth.rejected")
    p2, p3 = _phase(s, "group-selection"), _phase(s, "user-auth")
    first = next((_num(p.get("start")) for p in (p2, p3) if _num(p.get("start")) is not None), None)
    if first is not None and _num(p3.get("end")) is not None and p3.get("status") == "ok":
        timings["timing.auth"] = p3["end"] - first

    # phase 4: downloader
    dl = _details(s, "downloader")
    for get in _L(dl.get("gets")):
        _item_facts(f, label("GET", get.get("target")), get, "http.status", "downloader.size", "downloader.sha1")
    f.add("downloader.missing_profiles", "", dl.get("missing_profiles") or None)

    # phase 5: CSTP CONNECT
    c = _details(s, "cstp-connect")
    for con in _L(c.get("connects")):
        where = label("CONNECT", con.get("target"))
        _item_facts(f, where, con, "cstp.status", "cstp.reason", "cstp.x_reason")
        _header_facts(f, "cstp.request", where, con.get("request_headers"))
        _header_facts(f, "cstp.response", where, con.get("response_headers"))
        t0, t1 = _num(con.get("time")), _num(con.get("response_time"))
        if t0 is not None and t1 is not None and "timing.connect" not in timings:
            timings["timing.connect"] = t1 - t0
    for k, v in _D(c.get("parameters")).items():
        if k not in VOLATILE_PARAMETERS:
            f.add(f"tunnel.{k}", "", v if not isinstance(v, list) or v else None)

    # phase 6: DTLS
    d = _details(s, "dtls")
    f.add("dtls.offered", "", d.get("offered"))
    f.add("dtls.mode", "", d.get("mode"))
    f.add("dtls.version", "", d.get("version"))
    f.add("dtls.cipher_suite", "", d.get("cipher_suite"))
    f.add("dtls.established", "", d.get("established"))
    flows = [fl for fl in _L(d.get("flows")) if isinstance(fl, dict)]
    if flows:
        f.add("dtls.hello_verify_requests", "", int(sum(_num(fl.get("hello_verify_requests")) or 0 for fl in flows)))
        f.add("dtls.alerts", "", [al.get("name") for fl in flows for al in _L(fl.get("alerts"))
                                  if isinstance(al, dict)] or None)
    est = sorted(t for t in (_num(fl.get("established_time")) for fl in flows) if t is not None)
    up = _num(_D(c.get("tunnel_established")).get("time"))
    if est and up is not None:
        timings["timing.dtls_establishment"] = est[0] - up

    # tunnel: inner traffic, DPD, end
    tun = _D(s.get("tunnel"))
    for d_ in ("c2s", "s2c"):
        f.add(f"traffic.inner_packets.{d_}", "", _D(tun.get("inner_packets")).get(d_))
        for ch_ in ("cstp", "dtls"):
            f.add(f"traffic.{ch_}.inner_packets.{d_}", "", _D(_D(tun.get(ch_)).get("inner_packets")).get(d_))
    end = _D(tun.get("end"))
    if isinstance(end, dict) and end:
        for k in ("type", "direction", "reason", "channel"):
            f.add(f"end.{k}", "", end.get(k))
    rtts = [_num(_D(ch.get("dpd")).get("rtt_median"))
            for ch in [_D(c.get("channel"))] + [_D(fl.get("channel")) for fl in flows]]
    rtts = [r for r in rtts if r is not None]
    if rtts:
        timings["timing.dpd_rtt"] = max(rtts)

    # findings: a multiset of ids (severity with it)
    counts: dict[str, list[str]] = {}
    for fd in _L(s.get("findings")):
        counts.setdefault(str(fd.get("id")), []).append(str(fd.get("severity")))
    for fid, sev in counts.items():
        f.add(f"finding.{fid}", "", sev[0] if len(sev) == 1 else sorted(sev))
    return f, timings


# -- pairing ------------------------------------------------------------------------------------------------------

_USER_RE = re.compile(r"<username>([^<]*)</username>")


def session_identity(s: dict) -> dict:
    """What tells sessions apart: user (the username the client sent; reports show it), group, gateway."""
    user = None
    for r in _L(_details(s, "user-auth").get("rounds")):
        m = _USER_RE.search(str(r.get("xml") or ""))
        if m and _REDACTED_MARK not in m.group(1):
            user = m.group(1)
            break
    g = _details(s, "group-selection")

    def text(v):
        return None if v is None else str(v)

    return {"user": user, "group": text(g.get("group_selected")), "gateway": text(s.get("gateway")),
            "id": text(s.get("id"))}


def _describe(ident: dict) -> str:
    parts = [ident["id"] or "?"]
    if ident["user"]:
        parts.append(f"user {ident['user']}")
    if ident["group"]:
        parts.append(f"group {ident['group']}")
    return " ".join(parts)


def pair_sessions(base: list[dict], new: list[dict]) -> tuple[list[tuple[dict | None, dict | None]], list[str]]:
    """Pair sessions by user and group where both sides name them, else by position. Returns the pairs (None on
    the side that has no partner) and notes for the user."""
    notes: list[str] = []
    bid = [session_identity(s) for s in base]
    nid = [session_identity(s) for s in new]
    pairs: list[tuple[dict | None, dict | None]] = []
    used_new: set[int] = set()
    leftover_base: list[int] = []
    for i, bi in enumerate(bid):
        match = None
        if bi["user"] or bi["group"]:
            for j, nj in enumerate(nid):
                if j not in used_new and (nj["user"], nj["group"]) == (bi["user"], bi["group"]):
                    match = j
                    break
        if match is None:
            leftover_base.append(i)
            pairs.append((base[i], None))
        else:
            used_new.add(match)
            pairs.append((base[i], new[match]))
    free_new = [j for j in range(len(new)) if j not in used_new]
    # by position: the n-th unmatched baseline session with the n-th unmatched new one
    for i, j in zip(leftover_base, free_new, strict=False):
        k = next(x for x, (b, n) in enumerate(pairs) if b is base[i] and n is None)
        pairs[k] = (base[i], new[j])
        used_new.add(j)
        if (bid[i]["user"], bid[i]["group"]) != (nid[j]["user"], nid[j]["group"]) and (
                bid[i]["user"] or bid[i]["group"] or nid[j]["user"] or nid[j]["group"]):
            notes.append(f"the captures hold different sessions: baseline {_describe(bid[i])} is compared with new "
                         f"{_describe(nid[j])} (paired by position)")
    for j in range(len(new)):
        if j not in used_new:
            pairs.append((None, new[j]))
    if len(base) != len(new):
        notes.append(f"the captures hold different sessions: baseline has {len(base)} session(s) "
                     f"({', '.join(_describe(x) for x in bid) or 'none'}), new has {len(new)} "
                     f"({', '.join(_describe(x) for x in nid) or 'none'})")
    return pairs, notes


# -- comparison ---------------------------------------------------------------------------------------------------


def _ignored(name: str, patterns: list[str]) -> bool:
    low = name.lower()
    for p in patterns:
        p = p.lower()
        if low == p or low.startswith(p + ".") or fnmatch.fnmatchcase(low, p):
            return True
    return False


def _countdown(name: str) -> bool:
    return name.lower().rsplit(".", 1)[-1] in COUNTDOWN_FIELDS


def _as_float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


_GROUPS = ("tunnel", "end", "downloader", "dtls", "group", "auth")


def _unit(key: tuple[str, str]) -> str:
    """An exchange ("CONNECT /CSCOSSLC/tunnel #1") or "=" + a session-wide group of facts ("=tunnel")."""
    if key[1]:
        return key[1]
    top = key[0].split(".", 1)[0]
    return "=" + top if top in _GROUPS else ""


FEW_FACTS = 3  # a group of session-wide facts this small on one side only is listed field by field


def _units(f: _Facts) -> dict[str, object]:
    """unit → the exchange's status, or the number of facts in the group."""
    out: dict[str, object] = {}
    for key, v in f.values.items():
        u = _unit(key)
        if not u:
            continue
        if u.startswith("="):
            out[u] = out.get(u, 0) + 1
        elif key[0].endswith(".status"):
            out[u] = v
        else:
            out.setdefault(u, None)
    return out


def compare_sessions(b: dict, n: dict, ignore: list[str]) -> tuple[list[Change], list[Change], list[Change]]:
    """(changes, within tolerance, ignored) between two paired sessions."""
    bf, bt = session_facts(b)
    nf, nt = session_facts(n)
    changes: list[Change] = []
    tolerated: list[Change] = []
    ignored: list[Change] = []
    keys = list(bf.values) + [k for k in nf.values if k not in bf.values]
    # an exchange, or a group of session-wide facts (tunnel.*, end.*…), on one side only is one change, not one
    # per header / parameter
    bw, nw = _units(bf), _units(nf)
    whole: set[str] = set()
    for unit in list(bw) + [u for u in nw if u not in bw]:
        side = bw if unit in bw else nw
        if unit in bw and unit in nw or unit.startswith("=") and side[unit] <= FEW_FACTS:
            continue
        name, where = (unit[1:], "") if unit.startswith("=") else ("exchange", unit)
        ch = Change(name, where, "removed" if unit in bw else "added")
        setattr(ch, "baseline" if unit in bw else "new",
                f"{side[unit]} field(s)" if unit.startswith("=") else side[unit])
        whole.add(unit)
        (ignored if _ignored(name, ignore) else changes).append(ch)
    for key in keys:
        name = bf.names.get(key) or nf.names[key]
        where = key[1]
        if _unit(key) in whole:
            continue
        if key not in nf.values:
            ch = Change(name, where, "removed", baseline=bf.values[key])
        elif key not in bf.values:
            ch = Change(name, where, "added", new=nf.values[key])
        else:
            bv, nv = bf.values[key], nf.values[key]
            if bv == nv:
                continue
            ch = Change(name, where, "changed", baseline=bv, new=nv)
            if _countdown(name):
                x, y = _as_float(bv), _as_float(nv)
                if x is not None and y is not None and abs(x - y) <= REKEY_TOLERANCE:
                    ch.tolerance = f"±{REKEY_TOLERANCE:.0f} s (a countdown)"
                    tolerated.append(ch)
                    continue
        (ignored if _ignored(name, ignore) else changes).append(ch)
    for name, (tol_abs, tol_rel) in TIMING_TOLERANCES.items():
        x, y = bt.get(name), nt.get(name)
        if x is None or y is None:
            continue
        ch = Change(name, "", "changed", baseline=round(x, 6), new=round(y, 6),
                    tolerance=f"±{tol_abs:g} s and ±{tol_rel:.0%}")
        delta = abs(y - x)
        if delta <= tol_abs or delta <= tol_rel * abs(x):
            if delta:
                tolerated.append(ch)
        elif _ignored(name, ignore):
            ignored.append(ch)
        else:
            changes.append(ch)
    return changes, tolerated, ignored


def _capture_findings(doc: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for fd in _L(doc.get("findings")):
        out[str(fd.get("id"))] = out.get(str(fd.get("id")), 0) + 1
    return out


def diff_documents(base: dict, new: dict, *, ignore=(), base_name: str = "baseline",
                   new_name: str = "new") -> DiffResult:
    """The regression diff of two report documents (docs/json-schema.md)."""
    ignore = [str(p) for p in ignore]
    bs = [s for s in _L(base.get("sessions")) if isinstance(s, dict)]
    ns = [s for s in _L(new.get("sessions")) if isinstance(s, dict)]
    res = DiffResult(baseline={"path": base_name, "sessions": len(bs)}, new={"path": new_name, "sessions": len(ns)},
                     ignore=ignore)
    pairs, res.notes = pair_sessions(bs, ns)
    if not bs and not ns:
        res.notes.append("neither capture holds an AnyConnect-protocol session: only capture-wide findings are "
                         "compared")
    for b, n in pairs:
        if b is None or n is None:
            only = b or n
            side = "baseline" if b is not None else "new"
            p = Pair(b and b.get("id"), n and n.get("id"), f"{only.get('id')} only in {side}")
            ch = Change("session", _describe(session_identity(only)), "removed" if b is not None else "added",
                        baseline=b and b.get("id"), new=n and n.get("id"))
            (p.ignored if _ignored("session", ignore) else p.changes).append(ch)
            res.pairs.append(p)
            continue
        p = Pair(b.get("id"), n.get("id"), f"{_describe(session_identity(b))} ↔ {_describe(session_identity(n))}")
        p.changes, p.within_tolerance, p.ignored = compare_sessions(b, n, ignore)
        res.pairs.append(p)
    bc, nc = _capture_findings(base), _capture_findings(new)
    for fid in list(bc) + [k for k in nc if k not in bc]:
        x, y = bc.get(fid), nc.get(fid)
        if x == y:
            continue
        kind = "added" if x is None else "removed" if y is None else "changed"
        ch = Change(f"capture.finding.{fid}", "", kind, baseline=x, new=y)
        if not _ignored(ch.field, ignore):
            res.capture_changes.append(ch)
    return res
