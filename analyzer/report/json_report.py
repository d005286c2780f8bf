"""JSON renderer: the public, versioned document described in docs/json-schema.md (schema file:
docs/acflow-report.schema.json)."""
from __future__ import annotations

import codecs
import json
import math
from collections.abc import Iterator

from ..timefmt import iso

try:  # orjson: the same document ~10x faster than the standard library's encoder, which is pure Python with indent
    import orjson
except ImportError:  # pragma: no cover - a platform without its wheel: the standard library, same text but floats
    orjson = None

def _u_escape(c: str) -> str:
    """A non-ASCII character as JSON's \\u escape(s), as the standard library's ensure_ascii writes it."""
    c = ord(c)
    if c < 0x10000:
        return f"\\u{c:04x}"
    c -= 0x10000
    return f"\\u{0xD800 | (c >> 10):04x}\\u{0xDC00 | (c & 0x3FF):04x}"


def _json_u_errors(e: UnicodeEncodeError) -> tuple[str, int]:
    """Codec error handler "acflow-json-u": each run of characters ASCII cannot encode as \\u escapes (the
    encoder scans the text at C speed and calls this only for those runs)."""
    return "".join(_u_escape(c) for c in e.object[e.start:e.end]), e.end


codecs.register_error("acflow-json-u", _json_u_errors)


def dumps(doc) -> str:
    """``doc`` (JSON types only, as `to_document` gives it) as JSON text indented by 2, ASCII only (non-ASCII
    characters as \\u escapes): the standard library's `json.dumps(doc, indent=2)`, but for how a float is written
    (orjson: 5e-6, the standard library 5e-06: the same number)."""
    if orjson is not None:
        try:
            text = orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode()
            # (a report is mostly ASCII: the codec's C scan, a Python call per run of other characters only)
            return text if text.isascii() else text.encode("ascii", "acflow-json-u").decode("ascii")
        except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits…: the standard library
            pass
    return json.dumps(doc, indent=2, default=str)


_KEPT = frozenset({str, int, bool, type(None)})  # exact types `_clean` gives back as they are


def _clean(v):
    """``v`` in JSON types: dict keys as strings, tuples and sets as lists (sets sorted), bytes as hex, IntEnums by
    name, non-finite floats as null. Most values are plain strings, integers, booleans and None: those are taken
    inside the containers' loops (a call per value would be most of the walk's time)."""
    t = type(v)
    if t is str or t is int or t is bool or v is None:  # most values
        return v
    # (in the loops, a float is kept as it is when finite: x - x is 0.0 for a finite float only)
    if t is dict:
        return {k if type(k) is str else str(k): x if (tx := type(x)) in _KEPT or (tx is float and x - x == 0.0)
                else _clean(x) for k, x in v.items()}
    if t is list or t is tuple:
        return [x if (tx := type(x)) in _KEPT or (tx is float and x - x == 0.0) else _clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, (set, frozenset)):
        return sorted(_clean(x) for x in v)
    if hasattr(v, "name") and hasattr(v, "value") and isinstance(v.value, int):  # IntEnum
        return v.name
    return v


def _add_iso(obj: dict, keys: tuple[str, ...], tz) -> None:
    """Beside each epoch-seconds key K, K_iso: the same time in ISO 8601 (in --tz; 'Z' for UTC), null if none."""
    for k in keys:
        if k in obj:
            obj[f"{k}_iso"] = iso(obj[k], tz)


def to_document(analysis, *, version: str, show_secrets: bool = False, tz=None, filters: dict | None = None) -> dict:
    """The JSON document. Times stay epoch seconds; each also gets an ISO 8601 twin (`start_iso`, `time_iso`…,
    docs/json-schema.md) in the zone `tz` (default UTC). `filters`: the session filters applied (documented)."""
    doc = _head(analysis, version, show_secrets, tz, filters)
    doc["sessions"] = [_session(s, show_secrets, tz) for s in analysis.sessions]
    return doc


def _head(analysis, version: str, show_secrets: bool, tz, filters: dict | None) -> dict:
    """The document but its sessions (``"sessions": []``), in JSON types."""
    doc = analysis.to_json(version, show_secrets, sessions=False)
    for c in doc["captures"]:
        _add_iso(c, ("first", "last"), tz)
    for f in doc["findings"]:
        _add_iso(f, ("time",), tz)
    if filters:
        doc["filters"] = filters
    return _clean(doc)


def _session(session, show_secrets: bool, tz) -> dict:
    """One session's object of the document, in JSON types."""
    s = session.to_json(show_secrets)
    s["tunnel"].pop("series", None)
    _add_iso(s, ("start", "end"), tz)
    for p in s["phases"]:
        _add_iso(p, ("start", "end"), tz)
    for f in s["findings"]:
        _add_iso(f, ("time",), tz)
    return _clean(s)


#: where the sessions go in the text of `_head`'s document: "sessions" is a key of the top-level object, the only
#: one at that depth (2 spaces) of that name
_SESSIONS_AT = '\n  "sessions": []'


def iter_json(analysis, *, version: str, show_secrets: bool = False, tz=None,
              filters: dict | None = None) -> Iterator[str]:
    """`render_json`'s text in pieces, one session at a time: the same text (a session's object is indented as
    it is inside the whole document), with only one session's JSON form in memory at a time — a gateway capture's
    report of thousands of sessions is written without its whole document, nor its text, held in memory (copies
    of which were most of a big report's peak memory). One difference, in a corner: when orjson cannot encode a
    part (an integer beyond 64 bits) and the standard library writes it, only that part has the standard library's
    float spelling (5e-06 rather than 5e-6; the same numbers), not the whole text."""
    text = dumps(_head(analysis, version, show_secrets, tz, filters))
    at = text.index(_SESSIONS_AT)
    if not analysis.sessions:
        yield text + "\n"
        return
    yield text[:at] + '\n  "sessions": ['
    for n, session in enumerate(analysis.sessions):
        body = dumps(_session(session, show_secrets, tz))
        yield (",\n    " if n else "\n    ") + body.replace("\n", "\n    ")
    yield "\n  ]" + text[at + len(_SESSIONS_AT):] + "\n"


def render_json(analysis, *, version: str, show_secrets: bool = False, tz=None, filters: dict | None = None) -> str:
    return "".join(iter_json(analysis, version=version, show_secrets=show_secrets, tz=tz, filters=filters))
