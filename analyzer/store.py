"""The results store of `acflow batch`: one DuckDB file a support team can query with SQL (I/O edge).

Tables (one row each; every row names the capture by its path and its content hash, SHA-256):

* ``captures`` — one per analysed capture (a file, or a ring buffer's files: ``files``, ``path`` the first):
  status (``ok``; ``unreadable``: not a capture, an unreadable file;
  ``error``: the analysis raised; ``timeout``: stopped at ``--task-timeout``; ``lost``: the worker running it died
  every time it was tried), the reason when
  not ok, frames, first/last packet time, counts, the "other traffic" summary (JSON) and where the full JSON report
  is (``report_file``, beside the database: ``<db>.reports/<hash>.json``).
* ``sessions`` — one per VPN session: client, gateway (address and port apart), start/end, confidence, client
  software, the phases that failed and the finding ids, inner packet counts, how the tunnel ended, the verdict's
  outcome and the username the login sent (NULL when it was not read: no keys, single sign-on, a certificate).
* ``phases`` — one per phase of a session (six per session, in order: ``seq`` 1…6): status, times, frames, summary.
* ``findings`` — one per finding: id, severity, time, phase, message, remedy, frames, evidence (JSON);
  ``session_id`` is NULL for capture-level findings (CAPTURE_DAMAGED…).

Times are TIMESTAMP (UTC). The rows are a projection of the public JSON report (docs/json-schema.md):
`rows_from_document` is the only place that reads it, and the full report is kept beside the database.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from .report.json_report import dumps
from .selection import usernames_in

TABLES = ("captures", "sessions", "phases", "findings")

_SCHEMA = {
    "captures": (
        "hash VARCHAR PRIMARY KEY, path VARCHAR, size BIGINT, mtime_ns BIGINT, keys_digest VARCHAR, status VARCHAR, "
        "error VARCHAR, analysed_at TIMESTAMP, acflow_version VARCHAR, seconds DOUBLE, worker VARCHAR, "
        "frames BIGINT, first_time TIMESTAMP, last_time TIMESTAMP, capture_errors VARCHAR[], sessions INTEGER, "
        "findings INTEGER, other_traffic JSON, report_file VARCHAR, files VARCHAR[]"),
    "sessions": (
        "capture_hash VARCHAR, capture_path VARCHAR, session_id VARCHAR, client VARCHAR, gateway VARCHAR, "
        "gateway_address VARCHAR, gateway_port INTEGER, start_time TIMESTAMP, end_time TIMESTAMP, "
        "duration_s DOUBLE, confidence VARCHAR, client_software VARCHAR, client_version VARCHAR, "
        "evidence VARCHAR[], failed_phases VARCHAR[], finding_ids VARCHAR[], cstp_inner_packets BIGINT, "
        "dtls_inner_packets BIGINT, end_reason VARCHAR, outcome VARCHAR, username VARCHAR"),
    "phases": (
        "capture_hash VARCHAR, capture_path VARCHAR, session_id VARCHAR, seq INTEGER, phase VARCHAR, "
        "status VARCHAR, start_time TIMESTAMP, end_time TIMESTAMP, duration_s DOUBLE, frames BIGINT[], "
        "summary VARCHAR"),
    "findings": (
        "capture_hash VARCHAR, capture_path VARCHAR, session_id VARCHAR, seq INTEGER, finding_id VARCHAR, "
        "severity VARCHAR, time TIMESTAMP, phase VARCHAR, message VARCHAR, remedy VARCHAR, frames BIGINT[], "
        "evidence JSON"),
}

#: column names per table, in order
COLUMNS = {t: [c.split()[0] for c in s.split(", ")] for t, s in _SCHEMA.items()}


def _ts(v) -> _dt.datetime | None:
    """An epoch time of the report as a naive UTC datetime (None stays None)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    try:
        return _dt.datetime.fromtimestamp(v, _dt.UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def _dur(a, b) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(b) - float(a)
    return None


def _frames(v) -> list[int]:
    return [int(f) for f in (v or []) if isinstance(f, int) and not isinstance(f, bool)]


def _sum2(d) -> int | None:
    if not isinstance(d, dict):
        return None
    return sum(int(x) for x in d.values() if isinstance(x, int))


def _split_gateway(gw) -> tuple[str | None, int | None]:
    if not isinstance(gw, str):
        return None, None
    if gw.startswith("["):  # [IPv6]:port
        addr, _, rest = gw[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        addr, sep, port = gw.rpartition(":")
        if not sep:
            addr, port = gw, ""
    return addr, int(port) if port.isdigit() else None


def rows_from_document(doc: dict, capture_hash: str, capture_path: str) -> dict[str, list[tuple]]:
    """The ``sessions``, ``phases`` and ``findings`` rows of one capture's JSON report (`to_document`)."""
    out: dict[str, list[tuple]] = {"sessions": [], "phases": [], "findings": []}
    base = (capture_hash, capture_path)

    def finding_rows(findings, session_id):
        for i, f in enumerate(findings or [], 1):
            out["findings"].append(base + (
                session_id, i, f.get("id"), f.get("severity"), _ts(f.get("time")), f.get("phase"),
                f.get("message"), f.get("remedy"), _frames(f.get("frames")),
                json.dumps(f.get("evidence"), sort_keys=True) if f.get("evidence") is not None else None))

    finding_rows(doc.get("findings"), None)
    for s in doc.get("sessions") or []:
        sid = s.get("id")
        addr, port = _split_gateway(s.get("gateway"))
        sw = s.get("client_software") or {}
        tunnel = s.get("tunnel") or {}
        end = tunnel.get("end") or {}
        phases = s.get("phases") or []
        out["sessions"].append(base + (
            sid, s.get("client"), s.get("gateway"), addr, port, _ts(s.get("start")), _ts(s.get("end")),
            _dur(s.get("start"), s.get("end")), s.get("confidence"), sw.get("name"), sw.get("version"),
            [e.get("code") for e in s.get("evidence") or [] if isinstance(e, dict)],
            [p.get("phase") for p in phases if p.get("status") == "failed"],
            [f.get("id") for f in s.get("findings") or []],
            _sum2((tunnel.get("cstp") or {}).get("inner_packets")),
            _sum2((tunnel.get("dtls") or {}).get("inner_packets")),
            end.get("reason") if isinstance(end, dict) else None,
            (s.get("verdict") or {}).get("outcome"),
            ",".join(usernames_in(r.get("xml") for p in phases if p.get("phase") == "user-auth"
                                  for r in (p.get("details") or {}).get("rounds") or () if isinstance(r, dict)))
            or None))
        for i, p in enumerate(phases, 1):
            out["phases"].append(base + (
                sid, i, p.get("phase"), p.get("status"), _ts(p.get("start")), _ts(p.get("end")),
                _dur(p.get("start"), p.get("end")), _frames(p.get("frames")), p.get("summary")))
        finding_rows(s.get("findings"), sid)
    return out


class Store:
    """A DuckDB results file (created when missing) and the directory of full JSON reports beside it."""

    def __init__(self, path) -> None:
        import duckdb  # noqa: PLC0415 - the batch extra; imported only by `acflow batch`

        self.path = Path(path)
        self.reports = self.path.with_name(self.path.name + ".reports")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))
        for table, cols in _SCHEMA.items():
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")
        # a store written before the column was added (columns are only added, at the end)
        self.con.execute("ALTER TABLE captures ADD COLUMN IF NOT EXISTS files VARCHAR[]")
        self.con.execute("ALTER TABLE sessions ADD COLUMN IF NOT EXISTS outcome VARCHAR")
        self.con.execute("ALTER TABLE sessions ADD COLUMN IF NOT EXISTS username VARCHAR")

    def close(self) -> None:
        self.con.close()

    # -- what is there ----------------------------------------------------------------------------------------
    def done(self) -> dict[str, tuple]:
        """hash -> (status, keys_digest, path, size, mtime_ns) of every capture in the store."""
        rows = self.con.execute("SELECT hash, status, keys_digest, path, size, mtime_ns FROM captures").fetchall()
        return {r[0]: r[1:] for r in rows}

    # -- writing ----------------------------------------------------------------------------------------------
    def put(self, *, hash: str, path: str, size: int, mtime_ns: int, keys_digest: str, status: str,
            error: str | None, version: str, seconds: float | None, worker: str | None,
            document: dict | None, files: list[str] | None = None) -> None:
        """Replace everything stored for capture ``hash`` by this result (one transaction); ``files``: the files
        it is made of (a ring buffer's; default: ``path`` alone). What was stored for an older content of the same
        ``path`` (a file rewritten, a ring buffer that got more files) goes with it: one capture per path."""
        report_file = None
        rows: dict[str, list[tuple]] = {"sessions": [], "phases": [], "findings": []}
        frames = first = last = None
        cap_errors: list[str] = []
        other = None
        if document is not None:
            self.reports.mkdir(parents=True, exist_ok=True)
            rf = self.reports / f"{hash}.json"
            tmp = rf.with_suffix(".part")
            tmp.write_text(dumps(document) + "\n", encoding="utf-8")
            tmp.replace(rf)
            report_file = str(rf)
            rows = rows_from_document(document, hash, path)
            caps = document.get("captures") or []
            if caps:
                frames = sum(int(c.get("frames") or 0) for c in caps)
                first, last = _ts(caps[0].get("first")), _ts(caps[-1].get("last"))
                cap_errors = [str(e) for c in caps for e in c.get("errors") or []]
            other = json.dumps(document.get("other_traffic"), sort_keys=True)
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            old = [r[0] for r in con.execute("SELECT hash FROM captures WHERE path = ? AND hash <> ?",
                                             [path, hash]).fetchall()]
            for h in [hash, *old]:
                for table in TABLES:
                    col = "hash" if table == "captures" else "capture_hash"
                    con.execute(f"DELETE FROM {table} WHERE {col} = ?", [h])
            con.execute(f"INSERT INTO captures VALUES ({', '.join('?' * len(COLUMNS['captures']))})", [
                hash, path, size, mtime_ns, keys_digest, status, error,
                _dt.datetime.now(_dt.UTC).replace(tzinfo=None), version, seconds, worker, frames, first, last,
                cap_errors, len(rows["sessions"]) if document is not None else None,
                len(rows["findings"]) if document is not None else None, other, report_file, list(files or [path])])
            for table in ("sessions", "phases", "findings"):
                if rows[table]:
                    marks = ", ".join("?" * len(COLUMNS[table]))
                    con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows[table])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def export_parquet(self, directory) -> list[Path]:
        """Every table as ``DIR/<table>.parquet`` (DuckDB writes Parquet itself: no pyarrow)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        out = []
        for table in TABLES:
            p = d / f"{table}.parquet"
            self.con.execute(f"COPY {table} TO '{_sql_str(p)}' (FORMAT PARQUET)")
            out.append(p)
        return out


def _sql_str(p) -> str:
    return str(p).replace("'", "''")
